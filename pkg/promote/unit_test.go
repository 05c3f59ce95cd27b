package promote_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/promote"
)

func TestRolloutStatusFollowsKubectl(t *testing.T) {
	three := int32(3)
	dep := func(gen, observed int64, replicas, updated, available int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: &three},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated,
				AvailableReplicas: available, Conditions: conds},
		}
	}
	stuck := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded", Message: "ReplicaSet web-2 has timed out progressing."}
	tests := []struct {
		name    string
		d       *appsv1.Deployment
		done    bool
		wantErr bool
		msg     string
	}{
		{"new generation not observed (the known false success)", dep(2, 1, 3, 3, 3), false, false, "observe"},
		{"progress deadline exceeded", dep(2, 2, 4, 1, 3, stuck), false, true, ""},
		{"updating", dep(2, 2, 4, 1, 3), false, false, "1 of 3 new replicas updated"},
		{"old replicas terminating", dep(2, 2, 4, 3, 3), false, false, "1 old replicas"},
		{"updated not yet available", dep(2, 2, 3, 3, 2), false, false, "2 of 3 updated replicas available"},
		{"rolled out", dep(2, 2, 3, 3, 3), true, false, "rolled out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, msg, err := promote.RolloutStatus(tt.d)
			if done != tt.done || (err != nil) != tt.wantErr || !strings.Contains(msg, tt.msg) {
				t.Errorf("RolloutStatus = %v, %q, %v; want %v, %q, error %v", done, msg, err, tt.done, tt.msg, tt.wantErr)
			}
		})
	}
}

// The keychain reads the file on every lookup, so a refreshed password
// (ACR's temporary ones, rewritten into the mounted Secret) is used at once.
func TestDockerConfigKeychainRefreshes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	write := func(user, pass string) {
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		data, _ := json.Marshal(map[string]any{"auths": map[string]any{"https://registry.example.com/v1/": map[string]string{"auth": auth}}})
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kc := promote.DockerConfigKeychain{Path: path}
	repo, _ := name.NewRepository("registry.example.com/team/web")
	other, _ := name.NewRepository("other.example.com/team/web")
	get := func(r name.Repository) authn.AuthConfig {
		a, err := kc.Resolve(r)
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		c, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		return *c
	}
	write("ferry", "temp-1")
	if c := get(repo); c.Username != "ferry" || c.Password != "temp-1" {
		t.Errorf("first lookup = %s/%s", c.Username, c.Password)
	}
	write("ferry", "temp-2")
	if c := get(repo); c.Password != "temp-2" {
		t.Errorf("after refresh password = %q, want temp-2", c.Password)
	}
	if c := get(other); c.Username != "" || c.Password != "" {
		t.Errorf("registry without entry got credentials %q", c.Username)
	}
	if err := os.WriteFile(path, []byte(`{"auths": "s3cret-not-json`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Resolve(repo); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("broken file: err = %v, want an error without the content", err)
	}
}
