package eci

import (
	"bytes"
	"encoding/base64"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testSecret has the shape of a real JNLP secret (HMAC-SHA256, hex).
const testSecret = "5e0c2b7d4f1a9e3c8b6d2a0f7e4c1b9d3a5f8e2c6b0d4a7f1e9c3b5d8a2f6e0c"

// testSecretName is the Secret the test agents read their secret from.
const testSecretName = "ferry-agent-secrets-x7k2p"

func testAgent(queueID int64, attempt, fallback int) Agent {
	return Agent{
		Name:        AgentName(queueID, attempt),
		Namespace:   "ci",
		QueueID:     queueID,
		Attempt:     attempt,
		Fallback:    fallback,
		JenkinsURL:  "http://jenkins.ci.svc:8080/",
		SecretName:  testSecretName,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Job:         "acme/app",
		Labels:      map[string]string{"app.kubernetes.io/instance": "ferry-prod"},
	}
}

func TestRenderGolden(t *testing.T) {
	m := resolved(t)
	tests := []struct {
		golden   string
		template string
		fallback int
	}{
		{"default", "default", 0},
		{"spot", "spot", 0},
		{"spot-fallback-1", "spot", 1},
		{"spot-fallback-2", "spot", 2},
		{"multi-zone", "multi-zone", 0},
		{"multi-zone-fallback-1", "multi-zone", 1},
		{"inherited-kaniko", "kaniko", 0},
		{"sidecar-postgres", "integration", 0},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			tp, ok := m[tt.template]
			if !ok {
				t.Fatalf("no template %q", tt.template)
			}
			a := testAgent(4711, tt.fallback+1, tt.fallback)
			pod := Render(tp, a)
			secret := RenderSecret(a.Namespace, a.Labels, map[string]string{a.Name: testSecret})
			podYAML, err := yaml.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			secretYAML, err := yaml.Marshal(secret)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(podYAML, []byte(testSecret)) || bytes.Contains(podYAML, []byte(base64.StdEncoding.EncodeToString([]byte(testSecret)))) {
				t.Fatalf("the JNLP secret appears in the pod:\n%s", podYAML)
			}
			got := fmt.Sprintf("# Rendered by TestRenderGolden from template %q at fallback level %d; go test ./pkg/eci -update rewrites it.\n%s---\n%s",
				tt.template, tt.fallback, podYAML, secretYAML)
			compareGolden(t, filepath.Join("testdata", tt.golden+".golden.yaml"), got)
		})
	}
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(name, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/eci -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendered output (go test ./pkg/eci -update rewrites it after review):\n%s", name, lineDiff(string(want), got))
	}
}

// lineDiff shows the first lines that differ; enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}

// TestRenderContract checks, outside the golden files, what the agent and
// the provisioner rely on.
func TestRenderContract(t *testing.T) {
	m := resolved(t)
	for _, name := range []string{"default", "spot", "multi-zone", "kaniko"} {
		t.Run(name, func(t *testing.T) {
			tp := m[name]
			a := testAgent(99, 2, 1)
			pod := Render(tp, a)

			if pod.Name != a.Name || pod.Namespace != "ci" {
				t.Errorf("name = %s/%s, want ci/%s", pod.Namespace, pod.Name, a.Name)
			}
			wantLabels := map[string]string{
				LabelManagedBy: ManagedBy, LabelAgent: "ferry-agent-99-2", LabelQueueID: "99",
				LabelTemplate: name, LabelAttempt: "2", "app.kubernetes.io/instance": "ferry-prod",
			}
			for k, v := range wantLabels {
				if pod.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, pod.Labels[k], v)
				}
			}
			if pod.Annotations[AnnotationJob] != "acme/app" || pod.Annotations[AnnotationTraceParent] != a.TraceParent {
				t.Errorf("annotations = %v, want job and traceparent", pod.Annotations)
			}

			spec := pod.Spec
			if len(spec.Containers) != 1 {
				t.Fatalf("containers = %d, want 1", len(spec.Containers))
			}
			c := spec.Containers[0]
			env := map[string]corev1.EnvVar{}
			for _, e := range c.Env {
				if _, dup := env[e.Name]; dup {
					t.Errorf("env %s set twice", e.Name)
				}
				env[e.Name] = e
			}
			for k, want := range map[string]string{
				EnvJenkinsURL: a.JenkinsURL, EnvAgentName: a.Name, EnvWebSocket: "true",
				EnvWorkDir: tp.WorkDir, EnvTraceParent: a.TraceParent,
			} {
				if got := env[k]; got.Value != want || got.ValueFrom != nil {
					t.Errorf("env %s = %+v, want value %q", k, got, want)
				}
			}
			s := env[EnvSecret]
			if s.Value != "" || s.ValueFrom == nil || s.ValueFrom.SecretKeyRef == nil ||
				s.ValueFrom.SecretKeyRef.Name != testSecretName || s.ValueFrom.SecretKeyRef.Key != a.Name {
				t.Errorf("env %s = %+v, want a secretKeyRef to %s/%s", EnvSecret, s, testSecretName, a.Name)
			}
			if got := SecretNameOf(pod); got != testSecretName {
				t.Errorf("SecretNameOf = %q, want %q", got, testSecretName)
			}

			if spec.RestartPolicy != corev1.RestartPolicyNever {
				t.Errorf("restartPolicy = %s, want Never", spec.RestartPolicy)
			}
			if spec.ActiveDeadlineSeconds == nil || *spec.ActiveDeadlineSeconds != int64(tp.ActiveDeadline.Seconds()) || *spec.ActiveDeadlineSeconds <= 0 {
				t.Errorf("activeDeadlineSeconds = %v, want %v", spec.ActiveDeadlineSeconds, tp.ActiveDeadline)
			}
			if g := spec.TerminationGracePeriodSeconds; g == nil || *g > 30 {
				t.Errorf("terminationGracePeriodSeconds = %v, want small", g)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("automountServiceAccountToken = %v, want false", spec.AutomountServiceAccountToken)
			}
			psc, csc := spec.SecurityContext, c.SecurityContext
			if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("seccompProfile = %v, want RuntimeDefault", psc.SeccompProfile)
			}
			if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
				t.Error("allowPrivilegeEscalation is not false")
			}
			if csc.Capabilities == nil || !reflect.DeepEqual(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("capabilities = %+v, want drop ALL", csc.Capabilities)
			}
			if name != "kaniko" {
				if *psc.RunAsUser != AgentUID || !*psc.RunAsNonRoot || !*csc.RunAsNonRoot || !*csc.ReadOnlyRootFilesystem {
					t.Errorf("security = pod %+v container %+v, want uid 1000, non-root, read-only root", psc, csc)
				}
			}

			if spec.NodeSelector[VirtualNodeLabel] != VirtualNodeValue {
				t.Errorf("nodeSelector = %v, want type=virtual-kubelet", spec.NodeSelector)
			}
			vk := corev1.Toleration{Key: VirtualNodeTaintKey, Operator: corev1.TolerationOpEqual, Value: VirtualNodeTaintValue, Effect: corev1.TaintEffectNoSchedule}
			if !containsToleration(spec.Tolerations, vk) {
				t.Errorf("tolerations = %+v, want the virtual-kubelet one", spec.Tolerations)
			}
			if pod.Labels[LabelECI] != "true" {
				t.Errorf("label %s = %q, want true", LabelECI, pod.Labels[LabelECI])
			}
			if pod.Annotations["k8s.aliyun.com/eci-fail-strategy"] == "" {
				t.Error("no eci-fail-strategy annotation")
			}
		})
	}
}

func containsToleration(ts []corev1.Toleration, want corev1.Toleration) bool {
	for _, t := range ts {
		if reflect.DeepEqual(t, want) {
			return true
		}
	}
	return false
}

func TestRenderOptions(t *testing.T) {
	t.Run("virtual node off", func(t *testing.T) {
		pod := Render(Template{Name: "plain", VirtualNode: ptr(false), NodeSelector: map[string]string{"pool": "ci"}}, testAgent(1, 1, 0))
		if _, ok := pod.Labels[LabelECI]; ok {
			t.Errorf("labels = %v, want no %s", pod.Labels, LabelECI)
		}
		if !reflect.DeepEqual(pod.Spec.NodeSelector, map[string]string{"pool": "ci"}) || len(pod.Spec.Tolerations) != 0 {
			t.Errorf("nodeSelector %v tolerations %v, want only the template's", pod.Spec.NodeSelector, pod.Spec.Tolerations)
		}
	})
	t.Run("template toleration equal to the default is not doubled", func(t *testing.T) {
		vk := corev1.Toleration{Key: VirtualNodeTaintKey, Operator: corev1.TolerationOpEqual, Value: VirtualNodeTaintValue, Effect: corev1.TaintEffectNoSchedule}
		pod := Render(Template{Name: "a", Tolerations: []corev1.Toleration{vk}}, testAgent(1, 1, 0))
		if len(pod.Spec.Tolerations) != 1 {
			t.Errorf("tolerations = %+v, want one", pod.Spec.Tolerations)
		}
	})
	t.Run("workspace volume replaced", func(t *testing.T) {
		tp := Template{Name: "a", Volumes: []Volume{{Name: VolumeWorkspace, VolumeSource: corev1.VolumeSource{
			Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{}},
		}}}}
		if err := tp.Validate(); err != nil {
			t.Fatal(err)
		}
		pod := Render(tp, testAgent(1, 1, 0))
		if n := len(pod.Spec.Volumes); n != 2 || pod.Spec.Volumes[0].Ephemeral == nil || pod.Spec.Volumes[0].EmptyDir != nil {
			t.Errorf("volumes = %+v, want the template's workspace in place of the emptyDir", pod.Spec.Volumes)
		}
	})
	t.Run("no trace parent, no job", func(t *testing.T) {
		a := testAgent(1, 1, 0)
		a.TraceParent, a.Job = "", ""
		pod := Render(Template{Name: "a"}, a)
		for _, e := range pod.Spec.Containers[0].Env {
			if e.Name == EnvTraceParent {
				t.Errorf("env %s set without a trace parent", EnvTraceParent)
			}
		}
		if _, ok := pod.Annotations[AnnotationTraceParent]; ok {
			t.Error("traceparent annotation without a trace parent")
		}
		if _, ok := pod.Annotations[AnnotationJob]; ok {
			t.Error("job annotation without a job")
		}
	})
	t.Run("fallback level beyond the list is clamped", func(t *testing.T) {
		tp := Template{Name: "a", ECI: ECI{Specs: []string{"2-4Gi", "4-8Gi"}}, Fallbacks: []Fallback{{DropSpecs: 1}}}
		pod := Render(tp, testAgent(1, 5, 7))
		if got := pod.Annotations[AnnotationFallback]; got != "1" {
			t.Errorf("fallback annotation = %q, want 1", got)
		}
		if got := pod.Annotations["k8s.aliyun.com/eci-use-specs"]; got != "4-8Gi" {
			t.Errorf("eci-use-specs = %q, want 4-8Gi", got)
		}
	})
	t.Run("owner labels cannot override ferry's", func(t *testing.T) {
		a := testAgent(1, 1, 0)
		a.Labels = map[string]string{LabelQueueID: "666", LabelManagedBy: "someone"}
		pod := Render(Template{Name: "a"}, a)
		secret := RenderSecret("ci", a.Labels, nil)
		if pod.Labels[LabelQueueID] != "1" || pod.Labels[LabelManagedBy] != ManagedBy || secret.Labels[LabelManagedBy] != ManagedBy {
			t.Errorf("labels = %v, want ferry's values", pod.Labels)
		}
	})
	t.Run("render does not modify the template", func(t *testing.T) {
		tp := Template{Name: "a", PodLabels: map[string]string{"x": "y"}, NodeSelector: map[string]string{"a": "b"}, Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}
		pod := Render(tp, testAgent(1, 1, 0))
		pod.Spec.Containers[0].Env[len(pod.Spec.Containers[0].Env)-1].Value = "changed"
		if len(tp.PodLabels) != 1 || len(tp.NodeSelector) != 1 || tp.Env[0].Value != "1" {
			t.Errorf("template modified: %+v", tp)
		}
	})
}

func TestECIAnnotations(t *testing.T) {
	e := ECI{
		Specs: []string{"2-4Gi", "ecs.c6.xlarge"}, SpotStrategy: SpotWithPriceLimit, SpotPriceLimit: "0.068",
		SpotDuration: ptr(0), SpotFallback: ptr(true), AutoImageCache: ptr(false), ImageCacheID: "imc-1",
		VSwitches: []string{"vsw-a", "vsw-b"}, ScheduleStrategy: VSwitchRandom, SecurityGroup: "sg-1",
		RAMRoleName: "role", ExtraEphemeralStorage: "50Gi", FailStrategy: FailFast, ACRInstanceID: "cri-1", WithEIP: ptr(true),
	}
	want := map[string]string{
		"k8s.aliyun.com/eci-use-specs":               "2-4Gi,ecs.c6.xlarge",
		"k8s.aliyun.com/eci-spot-strategy":           "SpotWithPriceLimit",
		"k8s.aliyun.com/eci-spot-price-limit":        "0.068",
		"k8s.aliyun.com/eci-spot-duration":           "0",
		"k8s.aliyun.com/eci-spot-fallback":           "true",
		"k8s.aliyun.com/eci-auto-imc":                "false",
		"k8s.aliyun.com/eci-imc-id":                  "imc-1",
		"k8s.aliyun.com/eci-vswitch":                 "vsw-a,vsw-b",
		"k8s.aliyun.com/eci-schedule-strategy":       "VSwitchRandom",
		"k8s.aliyun.com/eci-security-group":          "sg-1",
		"k8s.aliyun.com/eci-ram-role-name":           "role",
		"k8s.aliyun.com/eci-extra-ephemeral-storage": "50Gi",
		"k8s.aliyun.com/eci-fail-strategy":           "fail-fast",
		"k8s.aliyun.com/acr-instance-id":             "cri-1",
		"k8s.aliyun.com/eci-with-eip":                "true",
	}
	if got := e.annotations(); !reflect.DeepEqual(got, want) {
		t.Errorf("annotations =\n%v\nwant\n%v", got, want)
	}
	if len(ECIAnnotations) != len(want) {
		t.Errorf("ECIAnnotations lists %d keys, rendering knows %d", len(ECIAnnotations), len(want))
	}
	for _, k := range ECIAnnotations {
		if _, ok := want[k]; !ok {
			t.Errorf("ECIAnnotations has %s, which is never rendered", k)
		}
	}
	if got := (ECI{}).annotations(); len(got) != 0 {
		t.Errorf("empty ECI renders %v, want nothing (ECI's own defaults)", got)
	}
}

func TestRenderSecret(t *testing.T) {
	secrets := map[string]string{AgentName(1, 1): "s-1", AgentName(2, 1): "s-2"}
	s := RenderSecret("ci", map[string]string{"app.kubernetes.io/instance": "ferry-prod", LabelManagedBy: "someone"}, secrets)
	if s.Name != "" || s.GenerateName != SecretGenerateName || s.Namespace != "ci" {
		t.Errorf("name = %q/%q generate %q, want a generated name in ci", s.Namespace, s.Name, s.GenerateName)
	}
	for k, v := range map[string]string{LabelManagedBy: ManagedBy, LabelRole: RoleAgentSecrets, "app.kubernetes.io/instance": "ferry-prod"} {
		if s.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, s.Labels[k], v)
		}
	}
	if len(s.Data) != 2 || string(s.Data[AgentName(1, 1)]) != "s-1" || string(s.Data[AgentName(2, 1)]) != "s-2" {
		t.Errorf("data = %v, want one key per agent", s.Data)
	}
	if s.Immutable == nil || !*s.Immutable {
		t.Error("secret is not immutable")
	}
}

func TestOwnSecret(t *testing.T) {
	a1, a2 := testAgent(3, 1, 0), testAgent(4, 1, 0)
	p1, p2 := Render(Template{Name: "a"}, a1), Render(Template{Name: "a"}, a2)
	secret := RenderSecret("ci", nil, map[string]string{a1.Name: "x", a2.Name: "y"})
	if err := OwnSecret(secret, p1); err == nil {
		t.Fatal("OwnSecret accepted a pod without UID")
	}
	p1.UID, p2.UID = types.UID("0b7c5d1e-uid"), types.UID("9f3a-uid")
	for range 2 { // idempotent
		if err := OwnSecret(secret, p1, p2); err != nil {
			t.Fatal(err)
		}
	}
	if len(secret.OwnerReferences) != 2 {
		t.Fatalf("ownerReferences = %+v, want two", secret.OwnerReferences)
	}
	for i, p := range []*corev1.Pod{p1, p2} {
		r := secret.OwnerReferences[i]
		if r.APIVersion != "v1" || r.Kind != "Pod" || r.Name != p.Name || r.UID != p.UID || r.Controller != nil {
			t.Errorf("ownerReference %d = %+v, want pod %s, not the controller", i, r, p.Name)
		}
	}
	other := p1.DeepCopy()
	other.Namespace = "elsewhere"
	if err := OwnSecret(secret, other); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("OwnSecret across namespaces = %v, want an error", err)
	}
}

func TestAgentLogValue(t *testing.T) {
	a := testAgent(12, 1, 0)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("creating", "agent", a)
	for _, want := range []string{`"queue_id":12`, `"name":"ferry-agent-12-1"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log = %s, want %s", logs.String(), want)
		}
	}
	if got, want := fmt.Sprintf("%#v", a), "agent ferry-agent-12-1 (queue item 12, attempt 1)"; got != want {
		t.Errorf("%%#v = %q, want %q", got, want)
	}
	if got, want := AgentName(12, 3), "ferry-agent-12-3"; got != want {
		t.Errorf("AgentName = %q, want %q", got, want)
	}
}
