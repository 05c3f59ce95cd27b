package eci

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func limits(cpu, mem string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Limits: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
	}}
}

func TestValidateSidecars(t *testing.T) {
	pg := Sidecar{Name: "postgres", Image: "postgres:16"}
	with := func(sc ...Sidecar) Template { return Template{Name: "a", Sidecars: sc} }
	many := make([]Sidecar, MaxContainers)
	for i := range many {
		many[i] = Sidecar{Name: fmt.Sprintf("s%d", i), Image: "busybox:1"}
	}
	tests := []struct {
		name string
		t    Template
		want []string
	}{
		{"one sidecar", with(pg), nil},
		{"named like the agent", with(Sidecar{Name: "jnlp", Image: "x:1"}), []string{`sidecars[0].name: "jnlp" is the agent container's name`}},
		{"named twice", with(pg, pg), []string{`sidecars[1].name: "postgres" is used by an earlier sidecar`}},
		{"no name", with(Sidecar{Image: "x:1"}), []string{"sidecars[0].name: must be set"}},
		{"bad name", with(Sidecar{Name: "Pg_1", Image: "x:1"}), []string{`sidecars[0].name: "Pg_1" must be lower-case`}},
		{"no image", with(Sidecar{Name: "db"}), []string{"sidecars[0].image: must be set"}},
		{"empty tag", with(Sidecar{Name: "db", Image: "postgres:"}), []string{`sidecars[0].image: "postgres:" has an empty tag`}},
		{"pull policy", with(Sidecar{Name: "db", Image: "x:1", ImagePullPolicy: "Sometimes"}), []string{`sidecars[0].imagePullPolicy: "Sometimes" is not a pull policy`}},
		{"request above limit", with(Sidecar{Name: "db", Image: "x:1", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
		}}), []string{"sidecars[0].resources.requests.cpu: 2 is above the limit 1; raise sidecars[0].resources.limits.cpu"}},
		{"mount of no volume", with(Sidecar{Name: "db", Image: "x:1", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}),
			[]string{`sidecars[0].volumeMounts[0].name: "data" is not a volume of the pod`}},
		{"relative mount", with(Sidecar{Name: "db", Image: "x:1", VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "data"}}}),
			[]string{`sidecars[0].volumeMounts[0].mountPath: "data" must be an absolute path`}},
		{"probe with two handlers", with(Sidecar{Name: "db", Image: "x:1", ReadinessProbe: &Probe{
			Exec: &corev1.ExecAction{Command: []string{"true"}}, TCPSocket: &corev1.TCPSocketAction{},
		}}), []string{"sidecars[0].readinessProbe: set exactly one of exec, httpGet or tcpSocket (found 2)"}},
		{"port", with(Sidecar{Name: "db", Image: "x:1", Ports: []corev1.ContainerPort{{ContainerPort: 70000}}}), []string{"sidecars[0].ports[0].containerPort: 70000 is not a port"}},
		{"more containers than ECI runs", with(many...), []string{"sidecars: the pod would have 21 containers; an ECI instance runs at most 20"}},
		{"above the largest spec", with(Sidecar{Name: "big", Image: "x:1", Resources: limits("63", "8Gi")}),
			[]string{"resources: the containers add up to 65 vCPU and 12 GiB; no ECI instance is that large (at most 64 vCPU and 512 GiB)"}},
		{"off ECI the size is not ECI's", func() Template {
			t := with(Sidecar{Name: "big", Image: "x:1", Resources: limits("63", "8Gi")})
			t.VirtualNode = ptr(false)
			return t
		}(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErrors(t, tt.t.Validate(), tt.want)
		})
	}
}

func wantErrors(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("Validate = %v, want nil", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Validate = nil, want %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate = %v\nwant it to contain %q", err, w)
		}
	}
}

func TestWarningsOnTheSizeECIWillBill(t *testing.T) {
	agent := limits("2", "4Gi")
	tests := []struct {
		name string
		t    Template
		want string // empty: no warning
	}{
		{"agent alone on a spec", Template{Name: "a", Resources: agent}, ""},
		{"defaults", Template{Name: "a"}, ""},
		{"sidecar pushes it off the list", Template{Name: "a", Resources: agent, Sidecars: []Sidecar{{Name: "db", Image: "x:1", Resources: limits("500m", "1Gi")}}},
			"template a: the containers add up to 2.5 vCPU and 5 GiB, not an ECI spec; ECI rounds up to 4-8Gi"},
		{"sum on the list", Template{Name: "a", Resources: agent, Sidecars: []Sidecar{{Name: "db", Image: "x:1", Resources: limits("2", "4Gi")}}}, ""},
		{"sidecar without resources shares", Template{Name: "a", Resources: agent, Sidecars: []Sidecar{{Name: "db", Image: "x:1"}}}, ""},
		{"first spec too small", Template{Name: "a", Resources: agent, ECI: ECI{Specs: []string{"1-2Gi", "2-4Gi"}}},
			"template a: the containers add up to 2 vCPU and 4 GiB, more than eci.specs' first spec 1-2Gi"},
		{"instance types are not judged", Template{Name: "a", Resources: agent, ECI: ECI{Specs: []string{"ecs.c6.large"}}}, ""},
		{"requests count where no limit is set", Template{Name: "a", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("3"), corev1.ResourceMemory: resource.MustParse("6Gi"),
		}}}, "rounds up to 4-8Gi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.t.Warnings()
			switch {
			case tt.want == "" && len(got) > 0:
				t.Fatalf("Warnings = %q, want none", got)
			case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)):
				t.Fatalf("Warnings = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestRoundUp(t *testing.T) {
	for _, tt := range []struct {
		want Spec
		got  string
		ok   bool
	}{
		{Spec{7, 13}, "8-16Gi", true}, // ECI's own example rounds 7 vCPU/13 GiB to 8/16 in every region
		{Spec{0.1, 0.1}, "0.25-0.5Gi", true},
		{Spec{2, 4}, "2-4Gi", true},
		{Spec{2, 17}, "4-32Gi", true},
		{Spec{64, 512}, "64-512Gi", true},
		{Spec{64.5, 1}, "", false},
		{Spec{1, 600}, "", false},
	} {
		s, ok := RoundUp(tt.want)
		if ok != tt.ok || (ok && s.String() != tt.got) {
			t.Errorf("RoundUp(%v) = %v, %v; want %s, %v", tt.want, s, ok, tt.got, tt.ok)
		}
	}
}

func TestSidecarsMergeByNameAndShareTheWorkspace(t *testing.T) {
	m, err := Resolve([]Template{
		{Name: "base", Sidecars: []Sidecar{
			{Name: "postgres", Image: "postgres:15", Env: []corev1.EnvVar{{Name: "POSTGRES_PASSWORD", Value: "test"}}},
			{Name: "redis", Image: "redis:7"},
		}},
		{Name: "child", Inherits: "base", Labels: []string{"it"}, Sidecars: []Sidecar{
			{Name: "postgres", Image: "postgres:16"},
			{Name: "buildkitd", Image: "moby/buildkit:v0.16.0", Security: ContainerSecurity{RunAsUser: ptr[int64](0)}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	pod := Render(m["child"], testAgent(7, 1, 0))
	var names, images []string
	for _, c := range pod.Spec.Containers {
		names, images = append(names, c.Name), append(images, c.Image)
	}
	if want := []string{"jnlp", "postgres", "redis", "buildkitd"}; !slices.Equal(names, want) {
		t.Fatalf("containers %v, want %v", names, want)
	}
	if images[1] != "postgres:16" {
		t.Errorf("the child's postgres should replace the parent's whole: image %s", images[1])
	}
	pg := pod.Spec.Containers[1]
	if len(pg.Env) != 0 {
		t.Errorf("a replaced sidecar keeps nothing of the parent's: env %v", pg.Env)
	}
	for _, c := range pod.Spec.Containers[1:] {
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == VolumeWorkspace && m.MountPath == AgentHome
		}) {
			t.Errorf("%s does not see the workspace at %s: %v", c.Name, AgentHome, c.VolumeMounts)
		}
		for _, e := range c.Env {
			if slices.Contains(ReservedEnv, e.Name) {
				t.Errorf("%s gets the agent's %s", c.Name, e.Name)
			}
		}
	}
	bk := pod.Spec.Containers[3].SecurityContext
	if *bk.RunAsUser != 0 || *bk.RunAsGroup != 0 || *bk.RunAsNonRoot {
		t.Errorf("buildkitd asked for root: %+v", bk)
	}
	if pod.Spec.Containers[2].SecurityContext.RunAsUser == nil || *pod.Spec.Containers[2].SecurityContext.RunAsUser != AgentUID {
		t.Errorf("redis should run as the template's user %d", AgentUID)
	}
}

func TestSetAnnotationReadsBackWhatRenderWrites(t *testing.T) {
	want := ECI{
		Specs: []string{"2-4Gi", "ecs.c6.large"}, SpotStrategy: SpotWithPriceLimit, SpotPriceLimit: "0.068",
		SpotDuration: ptr(0), SpotFallback: ptr(true), AutoImageCache: ptr(false), ImageCacheID: "imc-1",
		VSwitches: []string{"vsw-a", "vsw-b"}, ScheduleStrategy: VSwitchRandom, SecurityGroup: "sg-1",
		RAMRoleName: "role", ExtraEphemeralStorage: "50Gi", FailStrategy: FailFast, ACRInstanceID: "cri-1", WithEIP: ptr(false),
	}
	var got ECI
	for k, v := range want.annotations() {
		if ok, err := got.SetAnnotation(k, v); !ok || err != nil {
			t.Fatalf("SetAnnotation(%s, %s) = %v, %v", k, v, ok, err)
		}
	}
	if fmt.Sprint(got.annotations()) != fmt.Sprint(want.annotations()) {
		t.Fatalf("round trip:\n got %v\nwant %v", got.annotations(), want.annotations())
	}
	if ok, _ := got.SetAnnotation("example.com/team", "x"); ok {
		t.Error("a key that is not ECI's was taken")
	}
	if _, err := got.SetAnnotation(annotationSpotFallback, "yes"); err == nil {
		t.Error("a bad boolean was taken")
	}
}
