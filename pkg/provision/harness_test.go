package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

const (
	testNS    = "agents"
	testLabel = "ferryeci"
	testJob   = "team/app"
)

// env is a provisioner under test: the Jenkins emulator, a fake clientset
// and the provisioner's failures.
type env struct {
	t    *testing.T
	emu  *jenkinsemu.Server
	jc   *jenkins.Client
	kube kubernetes.Interface
	rec  *record.FakeRecorder

	mu       sync.Mutex
	failures []Failure
	uid      int
}

func testLogger() *slog.Logger {
	if os.Getenv("PROVISION_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newEnv starts the Jenkins emulator in the test's process (an httptest
// server on loopback, like the fakes of GitHub and GitLab): no outside
// server is needed, so these tests run in the fast tier too.
func newEnv(t *testing.T, kube kubernetes.Interface) *env {
	t.Helper()
	emu := jenkinsemu.New(jenkinsemu.Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(emu.Close)
	jc, err := jenkins.New(jenkins.Config{URL: emu.URL(), User: jenkinsemu.DefaultUser.Name,
		APIToken: jenkinsemu.DefaultUser.Token, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, emu: emu, jc: jc, rec: record.NewFakeRecorder(1000)}
	if kube == nil {
		kube = newFakeKube()
	}
	e.kube = kube
	return e
}

// newFakeKube returns a fake clientset that, like an API server, gives
// created objects a UID, a creation time and, for a generateName, a name.
func newFakeKube() *fake.Clientset {
	cs := fake.NewClientset()
	var mu sync.Mutex
	n := 0
	cs.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject()
		if m, ok := obj.(metav1.Object); ok {
			mu.Lock()
			n++
			id := strconv.Itoa(n)
			mu.Unlock()
			m.SetUID(types.UID("uid-" + id))
			m.SetCreationTimestamp(metav1.Now())
			if m.GetName() == "" && m.GetGenerateName() != "" {
				m.SetName(m.GetGenerateName() + id)
			}
		}
		return false, nil, nil
	})
	return cs
}

func testTemplate(mut func(*eci.Template)) map[string]eci.Template {
	t := eci.Template{Name: "linux", Labels: []string{testLabel}}
	t.Retry.Backoff.Duration = 10 * time.Millisecond
	t.Retry.MaxBackoff.Duration = 50 * time.Millisecond
	if mut != nil {
		mut(&t)
	}
	ts, err := eci.Resolve([]eci.Template{t})
	if err != nil {
		panic(err)
	}
	return ts
}

func (e *env) config(mut func(*Config)) Config {
	cfg := Config{
		Jenkins:     e.jc,
		Kube:        e.kube,
		Namespace:   testNS,
		Templates:   testTemplate(nil),
		JenkinsURL:  "http://jenkins.example:8080/",
		Resync:      100 * time.Millisecond,
		MinInterval: 10 * time.Millisecond,
		GCGrace:     time.Hour,
		Recorder:    e.rec,
		Logger:      testLogger(),
		OnFailure: func(_ context.Context, f Failure) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.failures = append(e.failures, f)
		},
	}
	if mut != nil {
		mut(&cfg)
	}
	return cfg
}

// start runs a provisioner until the test ends or stop is called.
func (e *env) start(cfg Config) (stop func()) {
	e.t.Helper()
	_, stop = e.startP(cfg)
	return stop
}

// startP is start that also returns the provisioner, to look at its
// memory.
func (e *env) startP(cfg Config) (*Provisioner, func()) {
	e.t.Helper()
	p, err := New(cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Errorf("Run did not return after its context ended")
			}
		})
	}
	e.t.Cleanup(stop)
	return p, stop
}

func (e *env) addJob(spec jenkinsemu.JobSpec) {
	e.t.Helper()
	if spec.Label == "" {
		spec.Label = testLabel
	}
	spec.Params = []jenkinsemu.Param{{Name: "N"}}
	if err := e.emu.AddJob(testJob, spec); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) trigger(n int) int64 {
	e.t.Helper()
	res, err := e.jc.Trigger(context.Background(), testJob, map[string]string{"N": strconv.Itoa(n)})
	if err != nil {
		e.t.Fatalf("trigger: %v", err)
	}
	return res.QueueID
}

func (e *env) pods() []corev1.Pod {
	e.t.Helper()
	l, err := e.kube.CoreV1().Pods(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

// agentNodes returns the emulator's ferry agent nodes (anchors excluded).
func (e *env) agentNodes() []jenkinsemu.Node {
	var out []jenkinsemu.Node
	for _, n := range e.emu.Nodes() {
		if _, _, ok := parseAgentName(n.Name); ok {
			out = append(out, n)
		}
	}
	return out
}

func (e *env) failuresSeen() []Failure {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Failure(nil), e.failures...)
}

// waitFor polls cond with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kubelet plays the node and the agent for the fake clientset: pods become
// Running (or whatever status set returns) and their agent connects to the
// emulator with the secret from the pod's Secret.
type kubelet struct {
	e *env
	// status, if set, decides a new pod's status; nil means Running and
	// connected.
	status func(pod *corev1.Pod) *corev1.PodStatus
	// observe is called with the pod list on every pass.
	observe func(pods []corev1.Pod)
	// connectDelay, if set, says how long after its pod runs an agent
	// connects (a JVM starting).
	connectDelay func(pod *corev1.Pod) time.Duration
}

func (k *kubelet) run(ctx context.Context) {
	done := map[types.UID]bool{}
	for ctx.Err() == nil {
		pods := k.e.pods()
		if k.observe != nil {
			k.observe(pods)
		}
		for i := range pods {
			pod := &pods[i]
			if done[pod.UID] || pod.DeletionTimestamp != nil {
				continue
			}
			done[pod.UID] = true
			var st *corev1.PodStatus
			if k.status != nil {
				st = k.status(pod)
			}
			connect := st == nil
			if st == nil {
				st = runningStatus()
			}
			pod.Status = *st
			if _, err := k.e.kube.CoreV1().Pods(testNS).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
				continue
			}
			if connect {
				secret, err := agentSecret(ctx, k.e.kube, pod)
				if err != nil {
					k.e.t.Errorf("agent %s: %v", pod.Name, err)
					continue
				}
				name := pod.Name
				connectAgent := func() {
					err := k.e.emu.ConnectAgent(name, secret)
					if err != nil && k.connectDelay != nil && errors.Is(err, jenkinsemu.ErrNoSuchNode) {
						// Deleted while its JVM started (e.g. its item went
						// to another agent): a real agent fails the same way.
						return
					}
					if err != nil && ctx.Err() == nil {
						k.e.t.Errorf("connect agent %s: %v", name, err)
					}
				}
				if k.connectDelay != nil {
					time.AfterFunc(k.connectDelay(pod), connectAgent)
				} else {
					connectAgent()
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// agentSecret reads an agent pod's JNLP secret as the kubelet would: from
// the key named like the pod in the Secret its env refers to.
func agentSecret(ctx context.Context, kube kubernetes.Interface, pod *corev1.Pod) (string, error) {
	name := eci.SecretNameOf(pod)
	if name == "" {
		return "", errors.New("the pod reads JENKINS_SECRET from no Secret")
	}
	s, err := kube.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read Secret %s: %w", name, err)
	}
	v, ok := s.Data[pod.Name]
	if !ok {
		return "", fmt.Errorf("Secret %s has no key %s", name, pod.Name)
	}
	return string(v), nil
}

func (e *env) startKubelet(k *kubelet) {
	k.e = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

func runningStatus() *corev1.PodStatus {
	now := metav1.Now()
	return &corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: eci.ContainerName, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
}

func providerFailedStatus() *corev1.PodStatus {
	return &corev1.PodStatus{Phase: corev1.PodFailed, Reason: "ProviderFailed",
		Message: "the ECI instance could not be created: InternalError"}
}

func describeNodes(nodes []jenkinsemu.Node) string {
	s := ""
	for _, n := range nodes {
		s += fmt.Sprintf("%s(online=%v running=%v) ", n.Name, n.Online, n.Running)
	}
	return s
}
