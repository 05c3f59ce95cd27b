package api_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote/api"
)

// Tokens are known by their hash; their roles grant verbs on apps in
// environments, "*" for all; the pipeline token creates and reads only.
func TestTokenRoles(t *testing.T) {
	auth, err := api.NewAuth(api.AuthConfig{PipelineToken: token, Auth: config.PromotionAuth{Tokens: []config.PromotionToken{
		{Name: "alice", SHA256: sha(aliceToken), Roles: []config.PromotionRole{
			{Apps: []string{"web"}, Environments: []string{"production"}, Verbs: []string{"approve", "reject"}},
			{Apps: []string{"*"}, Environments: []string{"*"}, Verbs: []string{"get"}},
		}},
		{Name: "bob", SHA256: sha(bobToken), Roles: []config.PromotionRole{
			{Apps: []string{"web", "api"}, Environments: []string{"test"}, Verbs: []string{"approve", "rollback"}},
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		token          string
		verb, app, env string
		want           bool
	}{
		{aliceToken, "approve", "web", "production", true},
		{aliceToken, "reject", "web", "production", true},
		{aliceToken, "approve", "web", "test", false},
		{aliceToken, "approve", "api", "production", false},
		{aliceToken, "rollback", "web", "production", false},
		{aliceToken, "get", "api", "", true},
		{aliceToken, "create", "web", "", false},
		{bobToken, "approve", "api", "test", true},
		{bobToken, "rollback", "web", "test", true},
		{bobToken, "approve", "web", "production", false},
		{bobToken, "get", "web", "", false},
		{token, "create", "web", "", true},
		{token, "get", "api", "", true},
		{token, "approve", "web", "test", false},
		{token, "reject", "web", "test", false},
		{token, "rollback", "web", "test", false},
	}
	ctx := context.Background()
	for _, tt := range tests {
		id, err := auth.Authenticate(ctx, tt.token)
		if err != nil {
			t.Fatalf("authenticate %s: %v", tt.token[:4], err)
		}
		got, err := auth.Authorize(ctx, id, api.Access{Verb: tt.verb, App: tt.app, Environment: tt.env})
		if err != nil || got != tt.want {
			t.Errorf("%s may %s %s in %q = %v, %v; want %v", id.Name, tt.verb, tt.app, tt.env, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "nope", aliceToken + " ", aliceToken[:len(aliceToken)-1]} {
		if id, err := auth.Authenticate(ctx, bad); err == nil {
			t.Errorf("token %q authenticated as %s", bad, id.Name)
		}
	}
	if _, err := api.NewAuth(api.AuthConfig{Auth: config.PromotionAuth{Kubernetes: config.KubernetesAuth{Enabled: true}}}); err == nil ||
		errors.Is(err, context.Canceled) {
		t.Errorf("kubernetes auth without a client: err = %v, want a refusal", err)
	}
}
