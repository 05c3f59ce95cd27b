package chart

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/ferryci/ferry/test/testbed"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// HelmVar names another helm binary than the one build-tools.sh builds.
const HelmVar = "FERRY_HELM"

// releaseName and releaseNamespace are what the render tests install as.
const (
	releaseName      = "ferry"
	releaseNamespace = "ferry-system"
)

// repoRoot is the directory holding ferry's go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("find the repository: %v", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(data, []byte("module github.com/ferryci/ferry\n")) {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("find the repository: no ferry go.mod above %s", wd)
		}
	}
}

func chartDir(t testing.TB) string { return filepath.Join(repoRoot(t), "charts", "ferry") }

// toolsBin is where the bed's tools are: the bed's env file says, else
// test/tools/bin of this repository.
func toolsBin(t testing.TB) string {
	t.Helper()
	if p, err := testbed.EnvPath(); err == nil {
		if env, err := testbed.LoadEnv(p); err == nil {
			if dir := env.Get("TESTBED_TOOLS_BIN"); dir != "" {
				return dir
			}
		}
	}
	return filepath.Join(repoRoot(t), "test", "tools", "bin")
}

// tool returns the path of a bed tool, or skips (-short) or fails the test.
func tool(t testing.TB, name, envVar string) string {
	t.Helper()
	p := filepath.Join(toolsBin(t), name)
	from := "build it with `test/bed/build-tools.sh " + buildTarget(name) + "` (make testbed-tools)"
	if v := os.Getenv(envVar); envVar != "" && v != "" {
		p, from = v, "set by "+envVar
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		testbed.Unavailable(t, "%s: no executable at %s; %s", name, p, from)
	}
	return p
}

func buildTarget(name string) string {
	if name == "kubectl" {
		return "kube"
	}
	return name
}

func helmBin(t testing.TB) string { return tool(t, "helm", HelmVar) }

// helm runs the helm binary with its state (caches, repositories, plugins)
// in a temporary folder, so the tests neither read nor write the user's.
func helm(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return helmEnv(t, nil, args...)
}

func helmEnv(t testing.TB, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := helmBin(t)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("helm %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), err
}

// manifest is the output of helm template, decoded.
type manifest struct {
	raw     string
	objects []runtime.Object
}

// render runs helm template with the values files and extra arguments and
// decodes every document; a failure of helm fails the test.
func render(t testing.TB, valuesFiles []string, extra ...string) *manifest {
	t.Helper()
	out, stderr, err := renderErr(t, valuesFiles, extra...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	return decode(t, out)
}

func renderErr(t testing.TB, valuesFiles []string, extra ...string) (string, string, error) {
	t.Helper()
	args := []string{"template", releaseName, chartDir(t), "--namespace", releaseNamespace}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	args = append(args, extra...)
	return helm(t, args...)
}

// decode splits a multi-document manifest and decodes each document into
// its typed object (unstructured for kinds client-go does not know, such
// as ServiceMonitor).
func decode(t testing.TB, out string) *manifest {
	t.Helper()
	m := &manifest{raw: out}
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split rendered manifest: %v", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("rendered document is not YAML: %v\n%s", err, doc)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(js, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(js); err != nil {
				t.Fatalf("decode rendered document: %v\n%s", err, doc)
			}
			obj = u
		} else if err != nil {
			t.Fatalf("decode rendered document: %v\n%s", err, doc)
		}
		m.objects = append(m.objects, obj)
	}
	if len(m.objects) == 0 {
		t.Fatalf("helm template rendered no object")
	}
	return m
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// all returns the objects of type T.
func all[T runtime.Object](m *manifest) []T {
	var out []T
	for _, o := range m.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the only object of type T, failing the test when there is
// not exactly one.
func one[T runtime.Object](t testing.TB, m *manifest) T {
	t.Helper()
	got := all[T](m)
	if len(got) != 1 {
		var zero T
		t.Fatalf("rendered %d objects of type %T, want 1", len(got), zero)
	}
	return got[0]
}

// kindsNamed lists "Kind namespace/name" of every object.
func kindsNamed(m *manifest) []string {
	var out []string
	for _, o := range m.objects {
		acc, ok := o.(interface {
			GetName() string
			GetNamespace() string
		})
		if !ok {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s/%s", o.GetObjectKind().GroupVersionKind().Kind, acc.GetNamespace(), acc.GetName()))
	}
	return out
}

// secretData returns the chart's Secret's data as strings.
func secretData(t testing.TB, m *manifest) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, s := range all[*corev1.Secret](m) {
		for k, v := range s.Data {
			out[k] = string(v)
		}
		for k, v := range s.StringData {
			out[k] = v
		}
	}
	return out
}

// writeValues writes values (YAML text) to a file of the test.
func writeValues(t testing.TB, yamlText string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(yamlText), 0o600); err != nil {
		t.Fatalf("write values file: %v", err)
	}
	return p
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t testing.TB, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil { //nolint:gosec // a golden file is meant to be read
			t.Fatalf("update golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(p) //nolint:gosec // a fixed test file
	if err != nil {
		t.Fatalf("read golden file (run go test ./test/chart -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("rendered chart differs from %s; if the change is intended, run go test ./test/chart -update and review the diff\n%s", p, lineDiff(string(want), got))
	}
}

// lineDiff shows the first lines where two texts differ.
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
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}
