package kubeplugin

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/eci"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func importFile(t *testing.T, name string) Result {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Import(data)
	if err != nil {
		t.Fatalf("Import(%s): %v", name, err)
	}
	return res
}

func byName(t *testing.T, res Result, name string) Imported {
	t.Helper()
	for _, im := range res.Templates {
		if im.Template.Name == name {
			return im
		}
	}
	t.Fatalf("no imported template %q", name)
	return Imported{}
}

func hasNote(im Imported, sub string) bool {
	return slices.ContainsFunc(im.Notes, func(n string) bool { return strings.Contains(n, sub) })
}

func TestImportGolden(t *testing.T) {
	for _, f := range []string{"jcasc.yaml", "configmap.yaml"} {
		t.Run(f, func(t *testing.T) {
			res := importFile(t, f)
			got, err := Write(res, f)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", strings.TrimSuffix(f, ".yaml")+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./pkg/kubeplugin -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (go test ./pkg/kubeplugin -update rewrites it); got:\n%s", path, got)
			}
		})
	}
}

// The written file is a ferry configuration fragment: loaded by ferry's own
// config loader it gives back the imported templates, valid, rendering.
func TestImportedTemplatesLoadValidateAndRender(t *testing.T) {
	res := importFile(t, "jcasc.yaml")
	out, err := Write(res, "jcasc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(out)
	if err != nil {
		t.Fatalf("ferry cannot read what the importer wrote: %v", err)
	}
	cfg.Agents.Enabled = true
	resolved, err := eci.Resolve(cfg.Agents.Templates)
	if err != nil {
		t.Fatalf("the imported templates do not validate: %v", err)
	}
	if len(resolved) != len(res.Templates) {
		t.Fatalf("%d templates read back, %d imported", len(resolved), len(res.Templates))
	}
	for _, im := range res.Templates {
		if im.Invalid != nil {
			t.Errorf("%s: %v", im.Template.Name, im.Invalid)
		}
		pod := eci.Render(resolved[im.Template.Name], eci.Agent{Name: "ferry-agent-1-1", Namespace: "ci", QueueID: 1, Attempt: 1, SecretName: "s"})
		if pod.Spec.Containers[0].Name != "jnlp" {
			t.Errorf("%s: first container %s", im.Template.Name, pod.Spec.Containers[0].Name)
		}
	}
}

func TestImportFollowsThePluginsInheritance(t *testing.T) {
	res := importFile(t, "jcasc.yaml")
	if got := len(res.Skipped); got != 2 {
		t.Errorf("skipped %d templates, want the two bases without labels: %v", got, res.Skipped)
	}

	maven := byName(t, res, "maven")
	if want := []string{"defaults", "java"}; !slices.Equal(maven.Chain, want) {
		t.Errorf("maven's chain %v, want %v: the defaults template first, then inheritFrom", maven.Chain, want)
	}
	tm := maven.Template
	if !strings.HasPrefix(tm.Image, "registry.example.com/ci/inbound-agent:") {
		t.Errorf("the defaults template's jnlp image should reach maven: %s", tm.Image)
	}
	if tm.MaxAgents != 20 || tm.ConnectTimeout.Seconds() != 300 || tm.ActiveDeadline.Seconds() != 3600 {
		t.Errorf("java's instanceCapStr/slaveConnectTimeoutStr/activeDeadlineSecondsStr not inherited: %d %v %v", tm.MaxAgents, tm.ConnectTimeout, tm.ActiveDeadline)
	}
	if len(tm.Sidecars) != 1 || tm.Sidecars[0].Name != "maven" || !tm.Sidecars[0].TTY || !slices.Equal(tm.Sidecars[0].Command, []string{"/bin/sh", "-c"}) {
		t.Fatalf("maven container: %+v", tm.Sidecars)
	}
	if !hasNote(maven, "only waits") || !hasNote(maven, "podRetention") || !hasNote(maven, "livenessProbe") || !hasNote(maven, "idleMinutes 10") {
		t.Errorf("maven's notes miss the tool-container idiom, podRetention, livenessProbe or idleMinutes: %q", maven.Notes)
	}
	// The pod's variables and volumes reach every container, as in the plugin.
	mc := tm.Sidecars[0]
	if !slices.ContainsFunc(mc.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NEXUS_PASSWORD" && e.ValueFrom.SecretKeyRef.Name == "nexus"
	}) {
		t.Errorf("the pod's secretEnvVar did not reach the maven container: %v", mc.Env)
	}
	if !slices.ContainsFunc(mc.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/home/jenkins/.m2" }) {
		t.Errorf("the pod's volume did not reach the maven container: %v", mc.VolumeMounts)
	}
	if tm.ECI.SpotStrategy != eci.SpotAsPriceGo || !slices.Equal(tm.ECI.Specs, []string{"2-4Gi", "4-8Gi"}) {
		t.Errorf("ECI annotations should become eci settings: %+v", tm.ECI)
	}
	if _, ok := tm.PodAnnotations["k8s.aliyun.com/eci-use-specs"]; ok {
		t.Error("an ECI annotation was also kept as a pod annotation")
	}
}

func TestImportYAMLMergeStrategies(t *testing.T) {
	res := importFile(t, "jcasc.yaml")
	merged := byName(t, res, "integration")
	if merged.Strategy != "merge" {
		t.Fatalf("strategy %q", merged.Strategy)
	}
	mt := merged.Template
	if !slices.ContainsFunc(mt.Tolerations, func(t corev1.Toleration) bool { return t.Key == "dedicated" }) {
		t.Errorf("merge keeps the parent's yaml (its toleration): %v", mt.Tolerations)
	}
	if mt.PodLabels["cost-center"] != "ci" || mt.Security.FSGroup == nil || *mt.Security.FSGroup != 1000 {
		t.Errorf("merge keeps the parent's yaml labels and securityContext: %v %+v", mt.PodLabels, mt.Security)
	}
	if len(mt.Sidecars) != 1 || mt.Sidecars[0].Name != "postgres" || mt.Sidecars[0].ReadinessProbe == nil || *mt.Sidecars[0].Security.RunAsUser != 70 {
		t.Errorf("the container declared in yaml must not be lost (plugin issue 2830): %+v", mt.Sidecars)
	}
	if !hasNote(merged, "spec.affinity left out") {
		t.Errorf("affinity should be reported: %q", merged.Notes)
	}
	// Two parents: java's fields and base-yaml's yaml both arrive.
	if mt.ServiceAccountName != "ci-builder" {
		t.Errorf("java, the first parent, lost: serviceAccount %q", mt.ServiceAccountName)
	}

	over := byName(t, res, "integration-override")
	ot := over.Template
	if len(ot.Tolerations) != 0 || ot.PodLabels["cost-center"] != "" {
		t.Errorf("override drops the parent's yaml: tolerations %v labels %v", ot.Tolerations, ot.PodLabels)
	}
	if len(ot.Sidecars) != 1 || ot.Sidecars[0].Name != "redis" {
		t.Errorf("the child's own yaml counts: %+v", ot.Sidecars)
	}
	if !hasNote(over, "only the last of 2 yaml documents") {
		t.Errorf("override should say the parent's yaml was dropped: %q", over.Notes)
	}
}

func TestImportSaysWhatECICannotDo(t *testing.T) {
	im := byName(t, importFile(t, "jcasc.yaml"), "docker")
	for _, want := range []string{"hostPathVolume /var/run/docker.sock", "privileged left out", "hostPort 2375", "hostNetwork left out",
		"dynamicPVC became a generic ephemeral volume", "nodeUsageMode NORMAL", "someFutureField: not a field the importer knows"} {
		if !hasNote(im, want) {
			t.Errorf("no note containing %q in %q", want, im.Notes)
		}
	}
	for _, v := range im.Template.Volumes {
		if v.HostPath != nil {
			t.Errorf("a hostPath volume was carried over: %+v", v)
		}
		if v.Name == eci.VolumeWorkspace && (v.Ephemeral == nil || v.Ephemeral.VolumeClaimTemplate.Spec.Resources.Requests.Storage().String() != "20Gi") {
			t.Errorf("the dynamic PVC workspace: %+v", v)
		}
	}
	if im.Template.Sidecars[0].Name != "dind" || len(im.Template.Sidecars[0].VolumeMounts) != 1 {
		t.Errorf("dind keeps the /cache mount and loses the docker socket: %+v", im.Template.Sidecars[0].VolumeMounts)
	}
}

func TestImportChartConfigMap(t *testing.T) {
	res := importFile(t, "configmap.yaml")
	im := byName(t, res, "default")
	if slices.ContainsFunc(im.Template.Env, func(e corev1.EnvVar) bool { return e.Name == "JENKINS_URL" }) || !hasNote(im, "env JENKINS_URL") {
		t.Errorf("JENKINS_URL is ferry's to set: env %v notes %q", im.Template.Env, im.Notes)
	}
	if im.Template.WorkDir != "" {
		t.Errorf("the plugin's default working directory is ferry's default too: %q", im.Template.WorkDir)
	}
	if !hasNote(im, "rounds up to 1-2Gi") {
		t.Errorf("512m/512Mi is not an ECI spec; the import should say what ECI bills: %q", im.Notes)
	}
}

func TestImportRefusesWhatIsNotAPluginConfig(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"empty", "", "no jenkins.clouds[].kubernetes"},
		{"a deployment", "apiVersion: apps/v1\nkind: Deployment\n", "a Deployment is not a JCasC file"},
		{"configmap without jcasc", "kind: ConfigMap\ndata:\n  a.yaml: 'jenkins: {systemMessage: hi}'\n", "holds no JCasC document"},
		{"not yaml", "jenkins: [", "not YAML"},
		{"missing parent", cloudWith("- {name: a, label: a, inheritFrom: b}"), `inherits from "b", which the file does not define`},
		{"cycle", cloudWith("- {name: a, label: a, inheritFrom: b}\n          - {name: b, inheritFrom: a}"), "inherits from itself: a → b → a"},
		{"two of a name", cloudWith("- {name: a, label: a}\n          - {name: a, label: b}"), `two templates are named "a"`},
		{"no name", cloudWith("- {label: a}"), "templates[0] has no name"},
		{"same ferry name", cloudWith("- {name: Web_App, label: a}\n          - {name: web-app, label: b}"), `both become ferry template "web-app"`},
		{"bad strategy", cloudWith("- {name: a, label: a, yaml: 'spec: {}', yamlMergeStrategy: replace}"), "the plugin knows override and merge"},
		{"bad number", cloudWith("- {name: a, label: a, instanceCap: lots}"), "is not a whole number"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Import([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Import = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func cloudWith(templates string) string {
	return "jenkins:\n  clouds:\n    - kubernetes:\n        name: k\n        templates:\n          " + templates + "\n"
}

func TestSplitCommandLine(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"cat", []string{"cat"}},
		{"/bin/sh -c", []string{"/bin/sh", "-c"}},
		{`sh -c "sleep 99d"`, []string{"sh", "-c", "sleep 99d"}},
		{`echo 'a "b"' c`, []string{"echo", `a "b"`, "c"}},
		{`  spaced   out  `, []string{"spaced", "out"}},
		{`""`, []string{""}},
	} {
		got, err := splitCommandLine(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("splitCommandLine(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := splitCommandLine(`sh -c "unclosed`); err == nil {
		t.Error("unbalanced quotes accepted")
	}
}
