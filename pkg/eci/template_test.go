package eci

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// loadTemplates reads templates the way ferry's config loader reads YAML
// (goccy/go-yaml, strict, JSON unmarshalers), so embedding Template in the
// config is covered here.
func loadTemplates(t *testing.T, name string) []Template {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Templates []Template `json:"templates"`
	}
	if err := yaml.UnmarshalWithOptions(data, &doc, yaml.Strict(), yaml.UseJSONUnmarshaler()); err != nil {
		t.Fatalf("decode %s: %s", name, yaml.FormatError(err, false, true))
	}
	return doc.Templates
}

func resolved(t *testing.T) map[string]Template {
	t.Helper()
	m, err := Resolve(loadTemplates(t, "testdata/templates.yaml"))
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return m
}

func TestDecodeYAML(t *testing.T) {
	ts := loadTemplates(t, "testdata/templates.yaml")
	byName := map[string]Template{}
	for _, tp := range ts {
		byName[tp.Name] = tp
	}
	spot := byName["spot"]
	if got, want := spot.ECI.SpotPriceLimit, Price("0.068"); got != want {
		t.Errorf("spotPriceLimit = %q, want %q", got, want)
	}
	if spot.ECI.SpotDuration == nil || *spot.ECI.SpotDuration != 0 {
		t.Errorf("spotDuration = %v, want 0 (set, not nil)", spot.ECI.SpotDuration)
	}
	if spot.ECI.SpotFallback == nil || *spot.ECI.SpotFallback {
		t.Errorf("spotFallback = %v, want false (set, not nil)", spot.ECI.SpotFallback)
	}
	if got := spot.Fallbacks; len(got) != 2 || !got[0].OnDemand || got[1].DropSpecs != 1 {
		t.Errorf("fallbacks = %+v", got)
	}
	mz := byName["multi-zone"]
	if got, want := mz.PendingTimeout.Duration, 3*time.Minute; got != want {
		t.Errorf("pendingTimeout = %v, want %v", got, want)
	}
	base := byName["base"]
	if got := base.Resources.Requests[corev1.ResourceCPU]; got.Cmp(resource.MustParse("1")) != 0 {
		t.Errorf("resources.requests.cpu = %s, want 1", got.String())
	}
	k := byName["kaniko"]
	if len(k.Volumes) != 1 || k.Volumes[0].Secret == nil || k.Volumes[0].Secret.SecretName != "acr-push" {
		t.Errorf("volumes = %+v, want the inline secret source decoded", k.Volumes)
	}
	if k.Security.RunAsUser == nil || *k.Security.RunAsUser != 0 {
		t.Errorf("security.runAsUser = %v, want 0", k.Security.RunAsUser)
	}

	t.Run("unknown fields are errors", func(t *testing.T) {
		var doc struct {
			Templates []Template `json:"templates"`
		}
		err := yaml.UnmarshalWithOptions([]byte("templates:\n- name: x\n  eci:\n    spotStratgy: SpotAsPriceGo\n"), &doc, yaml.Strict(), yaml.UseJSONUnmarshaler())
		if err == nil || !strings.Contains(err.Error(), "spotStratgy") {
			t.Errorf("err = %v, want an unknown-field error naming spotStratgy", err)
		}
	})
	t.Run("bad duration", func(t *testing.T) {
		var tp Template
		err := yaml.UnmarshalWithOptions([]byte("name: x\npendingTimeout: 5 minutes\n"), &tp, yaml.Strict(), yaml.UseJSONUnmarshaler())
		if err == nil || !strings.Contains(err.Error(), "not a duration") {
			t.Errorf("err = %v, want a duration error", err)
		}
	})
	t.Run("price as string", func(t *testing.T) {
		var tp Template
		if err := yaml.UnmarshalWithOptions([]byte("name: x\neci:\n  spotPriceLimit: \"0.100\"\n"), &tp, yaml.UseJSONUnmarshaler()); err != nil {
			t.Fatal(err)
		}
		if tp.ECI.SpotPriceLimit != "0.100" {
			t.Errorf("spotPriceLimit = %q, want 0.100 as written", tp.ECI.SpotPriceLimit)
		}
	})
}

func TestResolveInheritance(t *testing.T) {
	m := resolved(t)
	k := m["kaniko"]
	if got, want := k.Image, "ferry/agent-kaniko:1.23.2"; got != want {
		t.Errorf("image = %q, want the child's %q", got, want)
	}
	if got, want := k.ImagePullSecrets, []string{"agent-pull"}; !reflect.DeepEqual(got, want) {
		t.Errorf("imagePullSecrets = %v, want inherited %v", got, want)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "TZ", Value: "Asia/Shanghai"},
		{Name: "GRADLE_USER_HOME", Value: "/home/jenkins/.gradle"},
		{Name: "DOCKER_CONFIG", Value: "/kaniko/.docker"},
	}
	if !reflect.DeepEqual(k.Env, wantEnv) {
		t.Errorf("env = %+v, want parent order, child override in place, child additions last: %+v", k.Env, wantEnv)
	}
	for _, c := range []struct {
		list corev1.ResourceList
		name corev1.ResourceName
		want string
	}{
		{k.Resources.Requests, corev1.ResourceCPU, "1"},
		{k.Resources.Requests, corev1.ResourceMemory, "4Gi"},
		{k.Resources.Limits, corev1.ResourceCPU, "2"},
		{k.Resources.Limits, corev1.ResourceMemory, "8Gi"},
		{k.Resources.Limits, corev1.ResourceEphemeralStorage, "60Gi"},
	} {
		q, ok := c.list[c.name]
		if !ok || q.Cmp(resource.MustParse(c.want)) != 0 {
			t.Errorf("resources %s = %s (present %v), want %s merged per resource", c.name, q.String(), ok, c.want)
		}
	}
	if got, want := k.PodAnnotations["example.com/team"], "platform"; got != want {
		t.Errorf("podAnnotations inherited = %q, want %q", got, want)
	}
	if got, want := k.ECI.Specs, []string{"4-8Gi"}; !reflect.DeepEqual(got, want) {
		t.Errorf("eci.specs = %v, want the child's list replacing the parent's: %v", got, want)
	}
	if k.ECI.AutoImageCache == nil || !*k.ECI.AutoImageCache {
		t.Errorf("eci.autoImageCache = %v, want inherited true", k.ECI.AutoImageCache)
	}
	if got, want := k.Labels, []string{"kaniko", "image-build"}; !reflect.DeepEqual(got, want) {
		t.Errorf("labels = %v, want %v", got, want)
	}
	if got := m["base"].Labels; got != nil {
		t.Errorf("base labels = %v, want none", got)
	}
	// Defaults fill what neither sets.
	if got, want := k.PendingTimeout.Duration, DefaultPendingTimeout; got != want {
		t.Errorf("pendingTimeout = %v, want default %v", got, want)
	}
	if got, want := k.ActiveDeadline.Duration, time.Hour; got != want {
		t.Errorf("activeDeadline = %v, want %v", got, want)
	}
	if got := m["default"]; got.Image != DefaultImage || *got.VirtualNode != true || *got.AutomountServiceAccountToken {
		t.Errorf("default template = image %q virtualNode %v automount %v, want defaults", got.Image, *got.VirtualNode, *got.AutomountServiceAccountToken)
	}
}

func TestMergeDoesNotAlias(t *testing.T) {
	parent := Template{
		Name:         "p",
		Env:          []corev1.EnvVar{{Name: "A", Value: "1"}},
		NodeSelector: map[string]string{"zone": "h"},
		ECI:          ECI{Specs: []string{"2-4Gi"}},
	}
	child := Template{
		Name: "c", Inherits: "p",
		Env:          []corev1.EnvVar{{Name: "A", Value: "2"}},
		NodeSelector: map[string]string{"disk": "ssd"},
	}
	got := Merge(parent, child)
	got.ECI.Specs[0] = "changed"
	if parent.Env[0].Value != "1" || len(parent.NodeSelector) != 1 || parent.ECI.Specs[0] != "2-4Gi" {
		t.Errorf("Merge modified the parent: %+v", parent)
	}
	if want := map[string]string{"zone": "h", "disk": "ssd"}; !reflect.DeepEqual(got.NodeSelector, want) {
		t.Errorf("nodeSelector = %v, want %v", got.NodeSelector, want)
	}
	d := parent.WithDefaults()
	d.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("9")
	if again := parent.WithDefaults(); again.Resources.Requests.Cpu().String() != "2" {
		t.Errorf("WithDefaults shares default resources between calls: cpu %s", again.Resources.Requests.Cpu())
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name      string
		templates []Template
		want      []string
	}{
		{"cycle", []Template{{Name: "a", Inherits: "b"}, {Name: "b", Inherits: "c"}, {Name: "c", Inherits: "a"}},
			[]string{`inherits: "a" closes the cycle a -> b -> c -> a`}},
		{"self", []Template{{Name: "a", Inherits: "a"}}, []string{`template "a": inherits: "a" closes the cycle a -> a`}},
		{"unknown parent", []Template{{Name: "a", Inherits: "nope"}, {Name: "b"}},
			[]string{`template "a": inherits: "nope" is not a template (known: a, b)`}},
		{"child of a broken parent reports the parent's error once",
			[]Template{{Name: "c", Inherits: "b"}, {Name: "b", Inherits: "nope"}},
			[]string{`template "b": inherits: "nope" is not a template`}},
		{"no name", []Template{{Labels: []string{"x"}}}, []string{"templates[0].name: must be set"}},
		{"duplicate name", []Template{{Name: "a"}, {Name: "a"}}, []string{`templates[1].name: "a" is used by another template`}},
		{"label served twice", []Template{{Name: "a", Labels: []string{"linux"}}, {Name: "b", Labels: []string{"linux"}}},
			[]string{`template "b": labels: "linux" is already served by template "a"`}},
		{"invalid field after merge", []Template{{Name: "p", ECI: ECI{SpotStrategy: SpotWithPriceLimit}}, {Name: "c", Inherits: "p"}},
			[]string{`template "p": eci.spotPriceLimit: must be set`, `template "c": eci.spotPriceLimit: must be set`}},
		{"every problem names its template", []Template{{Name: "a", MaxAgents: -1, ECI: ECI{FailStrategy: "x"}}},
			[]string{`template "a": maxAgents: must not be negative`, `template "a": eci.failStrategy: "x" is not a fail strategy`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.templates)
			if err == nil {
				t.Fatalf("Resolve = %v, nil; want an error", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
				if n := strings.Count(err.Error(), w); n > 1 {
					t.Errorf("error %q says %q %d times", err, w, n)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	spot := func(e ECI) ECI {
		e.SpotStrategy = SpotWithPriceLimit
		if e.SpotPriceLimit == "" {
			e.SpotPriceLimit = "0.05"
		}
		return e
	}
	tests := []struct {
		name string
		t    Template
		want []string // empty: valid
	}{
		{"defaults are valid", Template{Name: "linux", Labels: []string{"linux", "x86"}}, nil},
		{"every eci setting", Template{Name: "full", ECI: ECI{
			Specs: []string{"0.5-1Gi", "2-4Gi", "ecs.c6.xlarge", "ecs.gn6i-c4g1.xlarge"}, SpotStrategy: SpotAsPriceGo,
			SpotDuration: ptr(1), SpotFallback: ptr(true), ImageCacheID: "imc-abc", VSwitches: []string{"vsw-a", "vsw-b"},
			ScheduleStrategy: VSwitchRandom, SecurityGroup: "sg-1", RAMRoleName: "ci-role", ExtraEphemeralStorage: "50Gi",
			FailStrategy: FailBack, ACRInstanceID: "cri-x", WithEIP: ptr(true),
		}}, nil},
		{"bad name", Template{Name: "Linux_Agents"}, []string{`name: "Linux_Agents" must be lower-case`}},
		{"label with space", Template{Name: "a", Labels: []string{"linux && docker"}}, []string{`labels[0]: "linux && docker" is not a Jenkins label`}},
		{"label twice", Template{Name: "a", Labels: []string{"x", "x"}}, []string{`labels[1]: "x" is listed twice`}},
		{"spec memory unit", Template{Name: "a", ECI: ECI{Specs: []string{"2-4G"}}}, []string{`eci.specs[0]: "2-4G" is not a spec: write vCPU-memory like 2-4Gi or an ECS instance type like ecs.c6.xlarge`}},
		{"spec ecs typo", Template{Name: "a", ECI: ECI{Specs: []string{"ecs-c6-xlarge"}}}, []string{`eci.specs[0]: "ecs-c6-xlarge" is not a spec`}},
		{"spec cpu out of range", Template{Name: "a", ECI: ECI{Specs: []string{"128-256Gi"}}}, []string{`eci.specs[0]: "128-256Gi" asks for 128 vCPU; ECI offers 0.25 to 64`}},
		{"too many specs", Template{Name: "a", ECI: ECI{Specs: []string{"1-2Gi", "2-4Gi", "4-8Gi", "8-16Gi", "16-32Gi", "32-64Gi"}}}, []string{"eci.specs: lists 6 specs; ECI accepts at most 5"}},
		{"spec twice", Template{Name: "a", ECI: ECI{Specs: []string{"2-4Gi", "2-4Gi"}}}, []string{`eci.specs[1]: "2-4Gi" is listed twice`}},
		{"price 4 decimals", Template{Name: "a", ECI: spot(ECI{SpotPriceLimit: "0.0685"})}, []string{`eci.spotPriceLimit: "0.0685" must be a decimal price with at most 3 decimals`}},
		{"price zero", Template{Name: "a", ECI: spot(ECI{SpotPriceLimit: "0"})}, []string{"eci.spotPriceLimit: must be above 0"}},
		{"price negative", Template{Name: "a", ECI: spot(ECI{SpotPriceLimit: "-1"})}, []string{`"-1" must be a decimal price`}},
		{"price without limit strategy", Template{Name: "a", ECI: ECI{SpotStrategy: SpotAsPriceGo, SpotPriceLimit: "0.1"}}, []string{"eci.spotPriceLimit: applies only to spotStrategy SpotWithPriceLimit"}},
		{"limit strategy without price", Template{Name: "a", ECI: ECI{SpotStrategy: SpotWithPriceLimit}}, []string{"eci.spotPriceLimit: must be set with spotStrategy SpotWithPriceLimit"}},
		{"unknown spot strategy", Template{Name: "a", ECI: ECI{SpotStrategy: "Spot"}}, []string{`eci.spotStrategy: "Spot" is not a spot strategy: use SpotAsPriceGo, SpotWithPriceLimit`}},
		{"spot settings without spot", Template{Name: "a", ECI: ECI{SpotDuration: ptr(0), SpotFallback: ptr(true)}},
			[]string{"eci.spotDuration: applies only to spot instances", "eci.spotFallback: applies only to spot instances"}},
		{"spot duration out of range", Template{Name: "a", ECI: ECI{SpotStrategy: SpotAsPriceGo, SpotDuration: ptr(-1)}}, []string{"eci.spotDuration: -1 must be a number of protected hours"}},
		{"image cache id", Template{Name: "a", ECI: ECI{ImageCacheID: "cache-1"}}, []string{`eci.imageCacheID: "cache-1" is not an image cache id (imc-…)`}},
		{"image cache id and auto", Template{Name: "a", ECI: ECI{ImageCacheID: "imc-1", AutoImageCache: ptr(true)}}, []string{"eci.autoImageCache: set imageCacheID or autoImageCache, not both"}},
		{"vswitch id", Template{Name: "a", ECI: ECI{VSwitches: []string{"vsw-ok", "subnet-1"}}}, []string{`eci.vSwitches[1]: "subnet-1" is not a vSwitch id (vsw-…)`}},
		{"schedule strategy", Template{Name: "a", ECI: ECI{VSwitches: []string{"vsw-a", "vsw-b"}, ScheduleStrategy: "Ordered"}}, []string{`eci.scheduleStrategy: "Ordered" is not a schedule strategy: use VSwitchOrdered or VSwitchRandom`}},
		{"schedule strategy one vswitch", Template{Name: "a", ECI: ECI{VSwitches: []string{"vsw-a"}, ScheduleStrategy: VSwitchOrdered}}, []string{"eci.scheduleStrategy: chooses among several vSwitches"}},
		{"security group", Template{Name: "a", ECI: ECI{SecurityGroup: "default"}}, []string{`eci.securityGroup: "default" is not a security group id (sg-…)`}},
		{"ram role", Template{Name: "a", ECI: ECI{RAMRoleName: "acs:ram::1:role/x"}}, []string{`eci.ramRoleName: "acs:ram::1:role/x" is not a RAM role name`}},
		{"extra storage", Template{Name: "a", ECI: ECI{ExtraEphemeralStorage: "50 GB"}}, []string{`eci.extraEphemeralStorage: "50 GB" must be a positive size, e.g. 50Gi`}},
		{"fail strategy", Template{Name: "a", ECI: ECI{FailStrategy: "failfast"}}, []string{`eci.failStrategy: "failfast" is not a fail strategy: use fail-fast, fail-back or fail-over`}},
		{"acr instance", Template{Name: "a", ECI: ECI{ACRInstanceID: "registry-1"}}, []string{`eci.acrInstanceID: "registry-1" is not an ACR Enterprise instance id (cri-…)`}},
		{"negative durations", Template{Name: "a", PendingTimeout: Duration{-time.Second}, ConnectTimeout: Duration{-time.Second}, Retry: Retry{Backoff: Duration{-time.Second}}},
			[]string{"pendingTimeout: must not be negative", "connectTimeout: must not be negative", "retry.backoff: must not be negative"}},
		{"sub-second deadline", Template{Name: "a", ActiveDeadline: Duration{time.Millisecond}, PendingTimeout: Duration{time.Microsecond}}, []string{"activeDeadline: must be at least 1s"}},
		{"pending beyond deadline", Template{Name: "a", ActiveDeadline: Duration{time.Minute}, PendingTimeout: Duration{time.Hour}}, []string{"pendingTimeout: 1h0m0s must be below activeDeadline (1m0s)"}},
		{"retry bounds", Template{Name: "a", Retry: Retry{MaxAttempts: -1, Backoff: Duration{time.Minute}, MaxBackoff: Duration{time.Second}}},
			[]string{"retry.maxAttempts: must be at least 1", "retry.maxBackoff: must not be below retry.backoff"}},
		{"negative max agents", Template{Name: "a", MaxAgents: -1}, []string{"maxAgents: must not be negative"}},
		{"reserved env", Template{Name: "a", Env: []corev1.EnvVar{{Name: "JENKINS_SECRET", Value: "x"}}}, []string{"env[0].name: JENKINS_SECRET is set by ferry itself"}},
		{"env twice", Template{Name: "a", Env: []corev1.EnvVar{{Name: "A"}, {Name: "A"}}}, []string{"env[1].name: A is set twice"}},
		{"requests above limits", Template{Name: "a", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("8Gi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")},
		}}, []string{"resources.requests.memory: 8Gi is above the limit 4Gi"}},
		{"pull policy", Template{Name: "a", ImagePullPolicy: "Sometimes"}, []string{`imagePullPolicy: "Sometimes" is not a pull policy`}},
		{"image whitespace", Template{Name: "a", Image: "jenkins/inbound-agent: latest"}, []string{"image: \"jenkins/inbound-agent: latest\" must not contain whitespace"}},
		{"hostPath on ECI", Template{Name: "a", Volumes: []Volume{{Name: "docker", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run/docker.sock"}}}}},
			[]string{"volumes[0].hostPath: ECI does not support hostPath volumes"}},
		{"hostPath off ECI", Template{Name: "a", VirtualNode: ptr(false), Volumes: []Volume{{Name: "docker", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}}}}, nil},
		{"volume without source", Template{Name: "a", Volumes: []Volume{{Name: "cache"}}}, []string{`volumes[0]: "cache" has no source`}},
		{"mount of unknown volume", Template{Name: "a", VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}}, []string{`volumeMounts[0].name: "cache" is not a volume`}},
		{"relative mount", Template{Name: "a", VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "cache"}}}, []string{`volumeMounts[0].mountPath: "cache" must be an absolute path`}},
		{"workDir on read-only root", Template{Name: "a", WorkDir: "/agent"}, []string{`workDir: "/agent" is on the read-only root filesystem`}},
		{"workDir on read-only mount", Template{Name: "a", WorkDir: "/cfg/agent", Volumes: []Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			VolumeMounts: []corev1.VolumeMount{{Name: "cfg", MountPath: "/cfg", ReadOnly: true}}}, []string{`workDir: "/cfg/agent" is on the read-only root filesystem`}},
		{"workDir writable root", Template{Name: "a", WorkDir: "/agent", Security: Security{ReadOnlyRootFilesystem: ptr(false)}}, nil},
		{"workDir relative", Template{Name: "a", WorkDir: "agent"}, []string{`workDir: "agent" must be an absolute path`}},
		{"root with runAsNonRoot", Template{Name: "a", Security: Security{RunAsUser: ptr(int64(0)), RunAsNonRoot: ptr(true)}}, []string{"security.runAsUser: 0 (root) contradicts runAsNonRoot"}},
		{"root defaults runAsNonRoot off", Template{Name: "a", Security: Security{RunAsUser: ptr(int64(0))}}, nil},
		{"capability", Template{Name: "a", Security: Security{AddCapabilities: []corev1.Capability{"ALL", "chown"}}},
			[]string{`security.addCapabilities[0]: "ALL" must name one capability`, `security.addCapabilities[1]: "chown" must name one capability`}},
		{"node selector against virtual node", Template{Name: "a", NodeSelector: map[string]string{"type": "ecs"}}, []string{"nodeSelector.type: conflicts with virtualNode"}},
		{"toleration operator", Template{Name: "a", Tolerations: []corev1.Toleration{{Key: "k", Operator: "In"}}}, []string{`tolerations[0].operator: "In" is not an operator`}},
		{"ferry labels reserved", Template{Name: "a", PodLabels: map[string]string{"ferry.dev/agent": "x", LabelManagedBy: "helm"}},
			[]string{"podLabels.ferry.dev/agent: is set by ferry itself", "podLabels.app.kubernetes.io/managed-by: is set by ferry itself"}},
		{"eci annotation reserved", Template{Name: "a", PodAnnotations: map[string]string{"k8s.aliyun.com/eci-use-specs": "2-4Gi", "k8s.aliyun.com/eci-image-snapshot-id": "x"}},
			[]string{"podAnnotations.k8s.aliyun.com/eci-use-specs: is rendered from the eci settings"}},
		{"bad label value", Template{Name: "a", PodLabels: map[string]string{"team": "platform team"}}, []string{`podLabels.team: "platform team" is not a label value`}},
		{"fallback drops every spec", Template{Name: "a", ECI: ECI{Specs: []string{"2-4Gi", "4-8Gi"}}, Fallbacks: []Fallback{{DropSpecs: 1}, {DropSpecs: 1}}},
			[]string{"fallbacks[1].dropSpecs: drops 1 of 1 specs and would leave none"}},
		{"fallback on-demand twice", Template{Name: "a", ECI: spot(ECI{}), Fallbacks: []Fallback{{OnDemand: true}, {OnDemand: true}}},
			[]string{"fallbacks[1].onDemand: agents are already on-demand at this level", "fallbacks[1]: changes nothing at fallback level 2"}},
		{"fallback rotate one vswitch", Template{Name: "a", ECI: ECI{VSwitches: []string{"vsw-a"}}, Fallbacks: []Fallback{{RotateVSwitches: 1}}},
			[]string{"fallbacks[0].rotateVSwitches: needs at least two vSwitches"}},
		{"fallback bad spec", Template{Name: "a", Fallbacks: []Fallback{{Specs: []string{"4-8"}}}}, []string{`fallbacks[0].specs[0]: "4-8" is not a spec`}},
		{"fallback bad vswitch", Template{Name: "a", Fallbacks: []Fallback{{VSwitches: []string{"zone-b"}}}}, []string{`fallbacks[0].vSwitches[0]: "zone-b" is not a vSwitch id`}},
		{"empty fallback", Template{Name: "a", Fallbacks: []Fallback{{}}}, []string{"fallbacks[0]: changes nothing at fallback level 1"}},
		{"fallback negative", Template{Name: "a", ECI: ECI{Specs: []string{"2-4Gi"}}, Fallbacks: []Fallback{{DropSpecs: -1, Specs: []string{"4-8Gi"}}}}, []string{"fallbacks[0].dropSpecs: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.t.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error\n%v\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	r := Template{}.WithDefaults().Retry
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{{0, 0}, {1, 0}, {2, 5 * time.Second}, {3, 10 * time.Second}, {4, 20 * time.Second}, {5, 40 * time.Second}, {6, time.Minute}, {60, time.Minute}} {
		if got := r.Delay(c.attempt); got != c.want {
			t.Errorf("Delay(%d) = %v, want %v", c.attempt, got, c.want)
		}
	}
}

func TestAtFallback(t *testing.T) {
	tp := Template{
		Name: "spot",
		ECI: ECI{
			Specs:        []string{"2-4Gi", "4-8Gi", "8-16Gi"},
			SpotStrategy: SpotWithPriceLimit, SpotPriceLimit: "0.1", SpotDuration: ptr(0), SpotFallback: ptr(true),
			VSwitches: []string{"vsw-h", "vsw-i", "vsw-j"},
		},
		Fallbacks: []Fallback{{OnDemand: true}, {DropSpecs: 1, RotateVSwitches: 1}, {Specs: []string{"ecs.c6.2xlarge"}, VSwitches: []string{"vsw-k", "vsw-l"}}},
	}
	tests := []struct {
		level     int
		specs     []string
		spot      bool
		vswitches []string
	}{
		{0, []string{"2-4Gi", "4-8Gi", "8-16Gi"}, true, []string{"vsw-h", "vsw-i", "vsw-j"}},
		{1, []string{"2-4Gi", "4-8Gi", "8-16Gi"}, false, []string{"vsw-h", "vsw-i", "vsw-j"}},
		{2, []string{"4-8Gi", "8-16Gi"}, false, []string{"vsw-i", "vsw-j", "vsw-h"}},
		{3, []string{"ecs.c6.2xlarge"}, false, []string{"vsw-k", "vsw-l"}},
		{9, []string{"ecs.c6.2xlarge"}, false, []string{"vsw-k", "vsw-l"}},
		{-1, []string{"2-4Gi", "4-8Gi", "8-16Gi"}, true, []string{"vsw-h", "vsw-i", "vsw-j"}},
	}
	for _, tt := range tests {
		got := tp.AtFallback(tt.level).ECI
		if !reflect.DeepEqual(got.Specs, tt.specs) || !reflect.DeepEqual(got.VSwitches, tt.vswitches) {
			t.Errorf("level %d: specs %v vSwitches %v, want %v %v", tt.level, got.Specs, got.VSwitches, tt.specs, tt.vswitches)
		}
		if spot := got.SpotStrategy != ""; spot != tt.spot {
			t.Errorf("level %d: spot %v, want %v", tt.level, spot, tt.spot)
		}
		if !tt.spot && (got.SpotPriceLimit != "" || got.SpotDuration != nil || got.SpotFallback != nil) {
			t.Errorf("level %d: on-demand keeps spot settings: %+v", tt.level, got)
		}
	}
	if tp.ECI.SpotStrategy == "" || len(tp.ECI.Specs) != 3 || tp.ECI.VSwitches[0] != "vsw-h" {
		t.Errorf("AtFallback modified the template: %+v", tp.ECI)
	}
	if err := tp.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if got := tp.FallbackLevels(); got != 3 {
		t.Errorf("FallbackLevels = %d, want 3", got)
	}
}

func TestServes(t *testing.T) {
	tp := Template{Name: "a", Labels: []string{"linux", "docker"}}
	if !tp.Serves("docker") || tp.Serves("windows") || tp.Serves("") {
		t.Errorf("Serves: docker %v windows %v empty %v", tp.Serves("docker"), tp.Serves("windows"), tp.Serves(""))
	}
}
