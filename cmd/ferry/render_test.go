package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/ferry -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what was rendered (go test ./cmd/ferry -update rewrites it); got:\n%s", path, got)
	}
}

func TestRenderPodOfTheExample(t *testing.T) {
	example := filepath.Join("..", "..", "examples", "ferry.yaml")
	for _, tt := range []struct{ template, golden string }{
		{"integration", "render-pod-integration.golden.yaml"},
		{"kaniko", "render-pod-kaniko.golden.yaml"},
	} {
		t.Run(tt.template, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"render-pod", "--config", example, "--template", tt.template, "--queue-id", "42", "--job", "acme/web"}, &out, &errOut)
			if err != nil {
				t.Fatalf("render-pod: %v (%s)", err, errOut.String())
			}
			golden(t, tt.golden, out.Bytes())
			var pod corev1.Pod
			if err := yaml.UnmarshalStrict(out.Bytes(), &pod); err != nil {
				t.Fatalf("the output is not a pod: %v", err)
			}
			if pod.Name != "ferry-agent-42-1" || pod.Spec.Containers[0].Name != "jnlp" {
				t.Errorf("pod %s, first container %s", pod.Name, pod.Spec.Containers[0].Name)
			}
		})
	}
}

func TestRenderPodRefusesWhatItCannotRender(t *testing.T) {
	example := filepath.Join("..", "..", "examples", "ferry.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("agents:\n  templates:\n  - {name: a, labels: [x], sidecars: [{name: jnlp, image: 'busybox:1'}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no config", []string{"--template", "x"}, "--config is required"},
		{"no template", []string{"--config", example}, "--template is required; the configuration has: base, integration, kaniko"},
		{"unknown template", []string{"--config", example, "--template", "web"}, `no agent template "web"; the configuration has: base, integration, kaniko`},
		{"bad attempt", []string{"--config", example, "--template", "kaniko", "--attempt", "0"}, "--attempt must be at least 1"},
		{"invalid template", []string{"--config", bad, "--template", "a"}, `sidecars[0].name: "jnlp" is the agent container's name`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FERRY_CONFIG", "")
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"render-pod"}, tt.args...), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("render-pod %v = %v, want an error containing %q", tt.args, err, tt.want)
			}
			if out.Len() > 0 {
				t.Errorf("printed a pod anyway:\n%s", out.String())
			}
		})
	}
}
