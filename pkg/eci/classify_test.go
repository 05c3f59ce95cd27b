package eci

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

var (
	t0      = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	podUID  = types.UID("6f1d0c9e-2b7a-4e4f-9a51-0d3c8e7b1a42")
	podName = AgentName(4711, 1)
)

// fixturePod builds an agent pod created at t0 with the given status,
// written as the API server shows it. Fixtures follow what ECI's
// virtual-kubelet and the test bed's kwok stages (test/bed/kwok) write.
func fixturePod(t *testing.T, node, status string) *corev1.Pod {
	t.Helper()
	var st corev1.PodStatus
	if err := yaml.UnmarshalStrict([]byte(status), &st); err != nil {
		t.Fatalf("fixture status: %v\n%s", err, status)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: "ci", UID: podUID, CreationTimestamp: metav1.NewTime(t0)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: ContainerName, Image: DefaultImage}}},
		Status:     st,
	}
}

func warning(reason, msg string, at time.Time) corev1.Event {
	return corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: podName + ".1", Namespace: "ci"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "ci", Name: podName, UID: podUID},
		Reason:         reason, Message: msg, Type: corev1.EventTypeWarning,
		FirstTimestamp: metav1.NewTime(at), LastTimestamp: metav1.NewTime(at),
	}
}

const vnode = "virtual-kubelet-cn-hangzhou-h"

const (
	stPending = `
phase: Pending
conditions:
- {type: PodScheduled, status: "True", lastTransitionTime: "2026-03-01T10:00:00Z"}
`
	stRunning = `
phase: Running
startTime: "2026-03-01T10:00:04Z"
conditions:
- {type: PodScheduled, status: "True", lastTransitionTime: "2026-03-01T10:00:00Z"}
- {type: Ready, status: "True", lastTransitionTime: "2026-03-01T10:00:05Z"}
- {type: ContainerInstanceCreated, status: "True", lastTransitionTime: "2026-03-01T10:00:03Z"}
containerStatuses:
- name: jnlp
  image: jenkins/inbound-agent:3385.vf1123fb_515da_-1-jdk21
  imageID: ""
  ready: true
  restartCount: 0
  started: true
  state:
    running: {startedAt: "2026-03-01T10:00:05Z"}
`
	stImagePull = `
phase: Pending
conditions:
- {type: PodScheduled, status: "True", lastTransitionTime: "2026-03-01T10:00:00Z"}
- {type: Ready, status: "False", reason: ContainersNotReady, message: "containers with unready status: [jnlp]", lastTransitionTime: "2026-03-01T10:00:02Z"}
containerStatuses:
- name: jnlp
  image: ferry/agent:1.0
  imageID: ""
  ready: false
  restartCount: 0
  started: false
  state:
    waiting:
      reason: %s
      message: %s
`
)

func TestClassify(t *testing.T) {
	later := func(d time.Duration) time.Time { return t0.Add(d) }
	opts := func(now time.Time, connected bool) ClassifyOptions {
		return ClassifyOptions{Now: now, PendingTimeout: 5 * time.Minute, ConnectTimeout: 2 * time.Minute, Connected: connected}
	}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		events    []corev1.Event
		opts      ClassifyOptions
		want      Reason
		retryable bool
		fallback  bool
		msg       string // a part of the message
	}{
		{name: "just created", pod: fixturePod(t, "", "phase: Pending\n"), opts: opts(later(time.Second), false), want: ReasonNone},
		{name: "ECI instance being created", pod: fixturePod(t, vnode, stPending+`
- {type: ContainerInstanceCreated, status: "False", reason: Creating, lastTransitionTime: "2026-03-01T10:00:01Z"}
`), opts: opts(later(30*time.Second), false), want: ReasonNone},
		{name: "running, connected", pod: fixturePod(t, vnode, stRunning), opts: opts(later(time.Hour), true), want: ReasonNone},
		{name: "running, not connected yet", pod: fixturePod(t, vnode, stRunning), opts: opts(later(time.Minute), false), want: ReasonNone},
		{name: "succeeded", pod: fixturePod(t, vnode, `
phase: Succeeded
containerStatuses:
- name: jnlp
  image: jenkins/inbound-agent:3385.vf1123fb_515da_-1-jdk21
  imageID: ""
  ready: false
  restartCount: 0
  state:
    terminated: {exitCode: 0, reason: Completed, startedAt: "2026-03-01T10:00:05Z", finishedAt: "2026-03-01T10:09:00Z"}
`), events: []corev1.Event{warning("SpotToBeReleased", "Spot ECI will be released in 3 minutes", later(8*time.Minute))},
			opts: opts(later(10*time.Minute), true), want: ReasonNone},

		{name: "ErrImagePull transient", pod: fixturePod(t, vnode, imagePull("ErrImagePull",
			`failed to pull and unpack image "ferry/agent:1.0": failed to copy: read tcp 10.0.0.5:443: i/o timeout`)),
			opts: opts(later(20*time.Second), false), want: ReasonImagePull, retryable: true, msg: "image ferry/agent:1.0 of container jnlp cannot be pulled (ErrImagePull): failed to pull"},
		{name: "ErrImagePull not found (test bed)", pod: fixturePod(t, vnode, imagePull("ErrImagePull",
			`failed to pull and unpack image "ferry/agent:1.0": not found (simulated by the ferry test bed)`)),
			opts: opts(later(3*time.Second), false), want: ReasonImagePull, retryable: false, msg: "not found"},
		{name: "ImagePullBackOff unauthorized", pod: fixturePod(t, vnode, imagePull("ImagePullBackOff",
			`Back-off pulling image "ferry/agent:1.0": pull access denied, repository does not exist or may require authorization: authorization failed`)),
			opts: opts(later(time.Minute), false), want: ReasonImagePull, retryable: false, msg: "ImagePullBackOff"},
		{name: "ImagePullBackOff transient", pod: fixturePod(t, vnode, imagePull("ImagePullBackOff", `Back-off pulling image "ferry/agent:1.0"`)),
			opts: opts(later(time.Minute), false), want: ReasonImagePull, retryable: true},
		{name: "InvalidImageName", pod: fixturePod(t, vnode, imagePull("InvalidImageName", `Failed to apply default image tag "Ferry/Agent:1.0": couldn't parse image name`)),
			opts: opts(later(3*time.Second), false), want: ReasonImagePull, retryable: false, msg: "InvalidImageName"},
		{name: "CreateContainerConfigError", pod: fixturePod(t, vnode, imagePull("CreateContainerConfigError", `secret "ferry-agent-4711-1" not found`)),
			opts: opts(later(3*time.Second), false), want: ReasonContainerConfig, retryable: true, msg: `secret "ferry-agent-4711-1" not found`},

		{name: "ProviderFailed (test bed)", pod: fixturePod(t, vnode, `
phase: Failed
reason: ProviderFailed
message: 'CreateContainerGroup failed: simulated provider failure (ferry test bed)'
conditions:
- {type: Ready, status: "False", reason: ProviderFailed, message: 'CreateContainerGroup failed: simulated provider failure (ferry test bed)', lastTransitionTime: "2026-03-01T10:00:02Z"}
`), events: []corev1.Event{warning("ProviderCreateFailed", "CreateContainerGroup failed: simulated provider failure (ferry test bed)", later(2*time.Second))},
			opts: opts(later(3*time.Second), false), want: ReasonProviderFailed, retryable: true, fallback: true, msg: "ECI could not create the container instance: CreateContainerGroup failed"},
		{name: "ProviderFailed caused by no stock", pod: fixturePod(t, vnode, `
phase: Failed
reason: ProviderFailed
message: 'CreateContainerGroup failed: Code: RecommendEmpty.InstanceTypeNoStock, the specified instance types are out of stock'
`), opts: opts(later(3*time.Second), false), want: ReasonNoStock, retryable: true, fallback: true},
		{name: "ProviderFailed with a NoStock event", pod: fixturePod(t, vnode, `
phase: Failed
reason: ProviderFailed
message: 'CreateContainerGroup failed'
`), events: []corev1.Event{warning("ProviderCreateFailed", "NoStock: the requested resource is sold out in the specified zone", later(2*time.Second))},
			opts: opts(later(3*time.Second), false), want: ReasonNoStock, retryable: true, fallback: true, msg: "sold out"},
		{name: "NoStock condition, pod pending (test bed)", pod: fixturePod(t, vnode, stPending+`
- type: ContainerInstanceCreated
  status: "False"
  reason: NoStock
  message: 'the requested resource is sold out in the specified zone (simulated by the ferry test bed)'
  lastProbeTime: "2026-03-01T10:00:02Z"
  lastTransitionTime: "2026-03-01T10:00:02Z"
`), events: []corev1.Event{warning("ProviderCreateFailed", "NoStock: the requested resource is sold out in the specified zone; retrying (simulated by the ferry test bed)", later(2*time.Second))},
			opts: opts(later(3*time.Second), false), want: ReasonNoStock, retryable: true, fallback: true, msg: "ECI has no stock for the requested specs (NoStock): the requested resource is sold out"},
		{name: "StockExhaust condition", pod: fixturePod(t, vnode, stPending+`
- {type: ContainerInstanceCreated, status: "False", reason: StockExhaust, message: "ecs.c6.xlarge stock exhausted in cn-hangzhou-h", lastTransitionTime: "2026-03-01T10:00:02Z"}
`), opts: opts(later(3*time.Second), false), want: ReasonNoStock, retryable: true, fallback: true, msg: "StockExhaust"},
		{name: "FailedScheduling condition", pod: fixturePod(t, vnode, stPending+`
- {type: ContainerInstanceCreated, status: "False", reason: FailedScheduling, message: "no vSwitch can place the instance", lastTransitionTime: "2026-03-01T10:00:02Z"}
`), opts: opts(later(3*time.Second), false), want: ReasonScheduleFailed, retryable: true, fallback: true, msg: "no vSwitch"},
		{name: "UnknownError condition", pod: fixturePod(t, vnode, stPending+`
- {type: ContainerInstanceCreated, status: "False", reason: UnknownError, message: "InternalError", lastTransitionTime: "2026-03-01T10:00:02Z"}
`), opts: opts(later(3*time.Second), false), want: ReasonProviderFailed, retryable: true, fallback: true},
		{name: "ContainerInstanceScheduleFailed", pod: fixturePod(t, vnode, `
phase: Failed
reason: ContainerInstanceScheduleFailed
message: 'the vSwitch vsw-hzh0001 has no available IP address'
`), opts: opts(later(3*time.Second), false), want: ReasonScheduleFailed, retryable: true, fallback: true, msg: "no available IP"},
		{name: "ContainerInstanceScheduleFailed from no stock", pod: fixturePod(t, vnode, `
phase: Failed
reason: ContainerInstanceScheduleFailed
message: 'create eci failed: NoStock'
conditions:
- {type: ContainerInstanceCreated, status: "False", reason: NoStock, message: "sold out", lastTransitionTime: "2026-03-01T10:00:02Z"}
`), opts: opts(later(3*time.Second), false), want: ReasonNoStock, retryable: true, fallback: true},
		{name: "ProviderCreateFailed event while pending (fail-back)", pod: fixturePod(t, vnode, stPending),
			events: []corev1.Event{warning("ProviderCreateFailed", "NoStock: the requested resource is sold out; retrying", later(2*time.Second))},
			opts:   opts(later(3*time.Second), false), want: ReasonNoStock, retryable: true, fallback: true},
		{name: "ProviderCreateFailed event for a quota", pod: fixturePod(t, vnode, stPending),
			events: []corev1.Event{warning("ProviderCreateFailed", "QuotaExceed.ElasticQuota: the vCPU quota is exceeded", later(2*time.Second))},
			opts:   opts(later(3*time.Second), false), want: ReasonProviderFailed, retryable: true, fallback: true, msg: "QuotaExceed"},

		{name: "Unschedulable", pod: fixturePod(t, "", `
phase: Pending
conditions:
- type: PodScheduled
  status: "False"
  reason: Unschedulable
  message: '0/3 nodes are available: 3 node(s) didn''t match Pod''s node affinity/selector.'
  lastTransitionTime: "2026-03-01T10:00:00Z"
`), opts: opts(later(2*time.Minute), false), want: ReasonUnschedulable, retryable: true, msg: "no node could take the pod for 2m0s: 0/3 nodes are available"},
		// A passing state (a node not ready yet) is not a failure: the
		// scheduler retries it.
		{name: "Unschedulable for a moment", pod: fixturePod(t, "", `
phase: Pending
conditions:
- type: PodScheduled
  status: "False"
  reason: Unschedulable
  message: '0/2 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.'
  lastTransitionTime: "2026-03-01T10:00:00Z"
`), opts: opts(later(5*time.Second), false), want: ReasonNone},
		{name: "pending too long", pod: fixturePod(t, vnode, stPending+`
- {type: ContainerInstanceCreated, status: "False", reason: Creating, message: "waiting for the container group", lastTransitionTime: "2026-03-01T10:00:01Z"}
`), opts: opts(later(5*time.Minute+time.Second), false), want: ReasonPendingTimeout, retryable: true, fallback: true,
			msg: "pending for 5m1s, longer than the template's pendingTimeout of 5m0s: ContainerInstanceCreated Creating: waiting for the container group"},
		{name: "pending too long, not even scheduled", pod: fixturePod(t, "", "phase: Pending\n"), opts: opts(later(6*time.Minute), false),
			want: ReasonPendingTimeout, retryable: true, fallback: true, msg: "not scheduled yet"},
		{name: "pending timeout off", pod: fixturePod(t, vnode, stPending), opts: ClassifyOptions{Now: later(24 * time.Hour)}, want: ReasonNone},

		{name: "spot to be released (test bed)", pod: fixturePod(t, vnode, `
phase: Running
startTime: "2026-03-01T10:00:04Z"
containerStatuses:
- name: jnlp
  image: jenkins/inbound-agent:3385.vf1123fb_515da_-1-jdk21
  imageID: ""
  ready: true
  restartCount: 0
  state:
    running: {startedAt: "2026-03-01T10:00:05Z"}
conditions:
- {type: Ready, status: "True", lastTransitionTime: "2026-03-01T10:00:05Z"}
- type: ContainerInstanceCreated
  status: "True"
  reason: SpotToBeReleased
  message: 'Spot ECI will be released in 3 minutes (simulated by the ferry test bed)'
  lastProbeTime: "2026-03-01T10:00:07Z"
  lastTransitionTime: "2026-03-01T10:00:07Z"
`), events: []corev1.Event{warning("SpotToBeReleased", "Spot ECI will be released in 3 minutes (simulated by the ferry test bed)", later(7*time.Second))},
			opts: opts(later(8*time.Second), true), want: ReasonSpotReclaimed, retryable: true, fallback: true, msg: "about to be reclaimed: Spot ECI will be released in 3 minutes"},
		{name: "spot warning event only", pod: fixturePod(t, vnode, stRunning),
			events: []corev1.Event{warning("SpotToBeReleased", "Spot ECI will be released in 3 minutes", later(time.Minute))},
			opts:   opts(later(time.Minute), true), want: ReasonSpotReclaimed, retryable: true, fallback: true},
		{name: "spot released (test bed)", pod: fixturePod(t, vnode, `
phase: Failed
reason: Expired
message: 'Spot ECI was released (simulated by the ferry test bed)'
containerStatuses:
- name: jnlp
  image: jenkins/inbound-agent:3385.vf1123fb_515da_-1-jdk21
  imageID: ""
  ready: false
  restartCount: 0
  state:
    terminated: {exitCode: 137, reason: Error, message: 'Spot ECI was released', startedAt: "2026-03-01T10:00:05Z", finishedAt: "2026-03-01T10:00:10Z"}
`), opts: opts(later(11*time.Second), true), want: ReasonSpotReclaimed, retryable: true, fallback: true, msg: "the spot instance was reclaimed: Spot ECI was released"},
		{name: "spot event of another pod is ignored", pod: fixturePod(t, vnode, stRunning), events: func() []corev1.Event {
			e := warning("SpotToBeReleased", "Spot ECI will be released in 3 minutes", later(time.Minute))
			e.InvolvedObject.Name, e.InvolvedObject.UID = AgentName(4712, 1), "other-uid"
			return []corev1.Event{e}
		}(), opts: opts(later(time.Minute), true), want: ReasonNone},
		{name: "spot event of an earlier pod of the same name is ignored", pod: fixturePod(t, vnode, stRunning), events: func() []corev1.Event {
			e := warning("SpotToBeReleased", "Spot ECI will be released in 3 minutes", later(time.Minute))
			e.InvolvedObject.UID = "earlier-uid"
			return []corev1.Event{e}
		}(), opts: opts(later(time.Minute), true), want: ReasonNone},
		{name: "normal events are ignored", pod: fixturePod(t, vnode, stRunning), events: func() []corev1.Event {
			e := warning("SpotToBeReleased", "x", later(time.Minute))
			e.Type = corev1.EventTypeNormal
			return []corev1.Event{e}
		}(), opts: opts(later(time.Minute), true), want: ReasonNone},

		{name: "agent never connected", pod: fixturePod(t, vnode, stRunning), opts: opts(later(5*time.Second+2*time.Minute+time.Second), false),
			want: ReasonAgentNeverConnected, retryable: true, msg: "the agent has run for 2m1s without connecting to Jenkins"},
		{name: "connect timeout off", pod: fixturePod(t, vnode, stRunning), opts: ClassifyOptions{Now: later(time.Hour), PendingTimeout: time.Minute}, want: ReasonNone},

		{name: "agent exited 1 (test bed)", pod: fixturePod(t, vnode, `
phase: Failed
conditions:
- {type: Ready, status: "False", reason: PodFailed, lastTransitionTime: "2026-03-01T10:03:00Z"}
containerStatuses:
- name: jnlp
  image: jenkins/inbound-agent:3385.vf1123fb_515da_-1-jdk21
  imageID: ""
  ready: false
  restartCount: 0
  state:
    terminated: {exitCode: 1, reason: Error, startedAt: "2026-03-01T10:00:05Z", finishedAt: "2026-03-01T10:03:00Z"}
`), opts: opts(later(3*time.Minute), true), want: ReasonContainerFailed, retryable: true, msg: "container jnlp exited with code 1"},
		{name: "container ended while the phase says Running", pod: fixturePod(t, vnode, `
phase: Running
containerStatuses:
- name: jnlp
  image: jenkins/inbound-agent:3385.vf1123fb_515da_-1-jdk21
  imageID: ""
  ready: false
  restartCount: 0
  state:
    terminated: {exitCode: 255, reason: Error, startedAt: "2026-03-01T10:00:05Z", finishedAt: "2026-03-01T10:00:20Z"}
`), opts: opts(later(time.Minute), false), want: ReasonContainerFailed, retryable: true, msg: "code 255"},
		{name: "OOMKilled", pod: fixturePod(t, vnode, `
phase: Failed
containerStatuses:
- name: jnlp
  image: jenkins/inbound-agent:3385.vf1123fb_515da_-1-jdk21
  imageID: ""
  ready: false
  restartCount: 0
  state:
    terminated: {exitCode: 137, reason: OOMKilled, startedAt: "2026-03-01T10:00:05Z", finishedAt: "2026-03-01T10:20:00Z"}
`), opts: opts(later(20*time.Minute), true), want: ReasonOOMKilled, retryable: true, fallback: true, msg: "container jnlp ran out of memory"},
		{name: "Evicted", pod: fixturePod(t, vnode, `
phase: Failed
reason: Evicted
message: 'Pod ephemeral local storage usage exceeds the total limit of containers 30Gi.'
`), opts: opts(later(30*time.Minute), true), want: ReasonEvicted, retryable: true, msg: "ephemeral local storage"},
		{name: "DeadlineExceeded", pod: fixturePod(t, vnode, `
phase: Failed
reason: DeadlineExceeded
message: 'Pod was active on the node longer than the specified deadline'
`), opts: opts(later(2*time.Hour), true), want: ReasonDeadlineExceeded, retryable: false, msg: "outlived the template's activeDeadline"},
		{name: "node lost", pod: fixturePod(t, vnode, "phase: Unknown\nmessage: node virtual-kubelet-cn-hangzhou-h is not ready\n"),
			opts: opts(later(time.Hour), true), want: ReasonNodeLost, retryable: true, msg: "is not ready"},
		{name: "unknown failure (test bed typo)", pod: fixturePod(t, vnode, `
phase: Failed
reason: TestbedUnknownSimulation
message: 'unknown testbed.ferry.dev/simulate value "no-stok"'
`), opts: opts(later(time.Second), false), want: ReasonUnknown, retryable: true, msg: `the pod failed (TestbedUnknownSimulation): unknown testbed.ferry.dev/simulate value "no-stok"`},
		{name: "pod gone", pod: nil, opts: opts(later(time.Second), false), want: ReasonPodGone, retryable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.pod, tt.events, tt.opts)
			if got.Reason != tt.want || got.Retryable != tt.retryable || got.Fallback != tt.fallback {
				t.Errorf("Classify = %s retryable=%v fallback=%v (%q), want %s retryable=%v fallback=%v",
					got.Reason, got.Retryable, got.Fallback, got.Message, tt.want, tt.retryable, tt.fallback)
			}
			if !strings.Contains(got.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", got.Message, tt.msg)
			}
			if got.Failed() != (tt.want != ReasonNone) {
				t.Errorf("Failed() = %v for %s", got.Failed(), got.Reason)
			}
			if tt.want != ReasonNone && got.Message == "" {
				t.Error("a failure without a message")
			}
		})
	}
}

// imagePull is a pending pod whose agent container waits with reason and
// message.
func imagePull(reason, msg string) string {
	return fmt.Sprintf(stImagePull, reason, quoteYAML(msg))
}

func quoteYAML(s string) string {
	b, _ := yaml.Marshal(s)
	return strings.TrimSpace(string(b))
}

func TestClassifyMessages(t *testing.T) {
	now := t0.Add(time.Minute)
	t.Run("secrets are redacted, digests kept", func(t *testing.T) {
		pod := fixturePod(t, vnode, `
phase: Failed
reason: ProviderFailed
message: 'agent -secret 5e0c2b7d4f1a9e3c8b6d2a0f7e4c1b9d3a5f8e2c6b0d4a7f1e9c3b5d8a2f6e0c failed; image ferry/agent@sha256:0000000000000000000000000000000000000000000000000000000000000abc'
`)
		got := Classify(pod, nil, ClassifyOptions{Now: now})
		if strings.Contains(got.Message, testSecret) || !strings.Contains(got.Message, "-secret [redacted] failed") {
			t.Errorf("message %q, want the secret redacted", got.Message)
		}
		if !strings.Contains(got.Message, "sha256:0000000000000000000000000000000000000000000000000000000000000abc") {
			t.Errorf("message %q, want the digest kept", got.Message)
		}
	})
	t.Run("long messages are cut", func(t *testing.T) {
		pod := fixturePod(t, vnode, "phase: Failed\nreason: ProviderFailed\nmessage: '"+strings.Repeat("very long ", 200)+"'\n")
		got := Classify(pod, nil, ClassifyOptions{Now: now})
		if n := len([]rune(got.Message)); n > MaxMessage || !strings.HasSuffix(got.Message, "…") {
			t.Errorf("message of %d runes ending %q, want at most %d ending in …", n, got.Message[len(got.Message)-8:], MaxMessage)
		}
	})
	t.Run("the latest event wins", func(t *testing.T) {
		pod := fixturePod(t, vnode, stPending)
		events := []corev1.Event{
			warning("ProviderCreateFailed", "second: NoStock", t0.Add(20*time.Second)),
			warning("ProviderCreateFailed", "first: InvalidParameter", t0.Add(10*time.Second)),
		}
		got := Classify(pod, events, ClassifyOptions{Now: now})
		if got.Reason != ReasonNoStock || !strings.Contains(got.Message, "second") {
			t.Errorf("Classify = %v, want the later NoStock event", got)
		}
	})
	t.Run("String", func(t *testing.T) {
		if got := (Failure{}).String(); got != "None" {
			t.Errorf("zero Failure = %q, want None", got)
		}
		if got := (Failure{Reason: ReasonNoStock, Message: "sold out"}).String(); got != "NoStock: sold out" {
			t.Errorf("String = %q", got)
		}
	})
}

func TestTemplateClassifyOptions(t *testing.T) {
	o := Template{Name: "a", PendingTimeout: Duration{time.Minute}}.ClassifyOptions(t0, true)
	if o.PendingTimeout != time.Minute || o.ConnectTimeout != DefaultConnectTimeout || !o.Now.Equal(t0) || !o.Connected {
		t.Errorf("ClassifyOptions = %+v", o)
	}
}

func TestReasonsListed(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range Reasons {
		if seen[r] || r == "" {
			t.Errorf("Reasons has %q twice or empty", r)
		}
		seen[r] = true
	}
	if len(Reasons) != 17 {
		t.Errorf("Reasons lists %d, want 17 (update the list with the constants)", len(Reasons))
	}
}
