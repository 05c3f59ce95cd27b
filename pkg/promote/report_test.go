package promote_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/test/scmfake"
	"github.com/ferryci/ferry/test/testbed"
)

// deploymentsOf returns the fake's deployments to env, in order.
func deploymentsOf(ds []scmfake.Deployment, env string) []scmfake.Deployment {
	var out []scmfake.Deployment
	for _, d := range ds {
		if d.Environment == env {
			out = append(out, d)
		}
	}
	return out
}

// Each environment becomes one GitHub deployment of the commit that
// follows it: production waits as pending at the gate and succeeds with
// its URL. A failing GitHub holds nothing up, a restart at the gate creates
// no second deployment, and a refused approval leaves production inactive.
func TestDeploymentsReportedToGitHub(t *testing.T) {
	gh := scmfake.NewGitHub(t)
	gh.AddRepo("acme/web")
	dep, err := scm.NewGitHub(scm.GitHubConfig{Token: scmfake.GitHubToken, BaseURL: gh.EnterpriseURL()})
	if err != nil {
		t.Fatal(err)
	}
	b := newBed(t, memStore(t))
	b.app.Provider, b.app.Repo = "github", "acme/web"
	b.app.Environments[1].URL = "https://web.example.com"
	b.deployer = dep
	digest := push(t, b.source+":v9", image(t, layers(t, 1, 1024)...))
	slow := func(d *appsv1.Deployment) { d.Spec.Template.Annotations[testbed.StartDelayAnnotation] = "2s" }
	b.deploy(b.nsTest, slow)
	b.deploy(b.nsProd, nil)
	gh.FailNext(1, http.StatusBadGateway) // the first report fails: the promotion goes on
	b.start()

	ctx := context.Background()
	p, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + ":v9", Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	p = b.waitFor(p.ID, "production pending at the gate", func(p store.Promotion) bool {
		return p.State == store.PromotionWaiting && p.Environments[1].DeploymentState == "pending" &&
			p.Environments[0].DeploymentState == "success"
	})
	if calls := gh.Calls(); len(calls) == 0 || calls[0].Code != http.StatusBadGateway {
		t.Errorf("first call = %+v, want the injected 502", calls)
	}
	atGate := gh.Deployments()

	b.stop()
	b.start() // a restarted ferry at the gate
	if _, err := b.as("alice").Approve(ctx, p.ID, api.Decision{}); err != nil {
		t.Fatalf("approve: %v", err)
	}
	p = b.waitFor(p.ID, "production reported", func(p store.Promotion) bool {
		return p.State == store.PromotionSucceeded && p.Environments[1].DeploymentState == "success"
	})

	ds := gh.Deployments()
	if len(ds) != 2 || len(atGate) != 2 || ds[1].ID != atGate[1].ID {
		t.Fatalf("deployments = %d (at the gate %d), want one per environment, the same after the restart:\n%s",
			len(ds), len(atGate), scmfake.FormatDeployments(ds))
	}
	target := b.target + "@" + digest.String()
	for i, want := range []struct {
		env    string
		states []string
	}{
		{"test", []string{"in_progress", "success"}},
		{"production", []string{"pending", "in_progress", "success"}},
	} {
		d := ds[i]
		if d.Environment != want.env || !reflect.DeepEqual(d.States(), want.states) {
			t.Errorf("deployment %d: %s %v, want %s %v", i, d.Environment, d.States(), want.env, want.states)
		}
		if d.SHA != commit || d.Ref != commit || d.Payload["promotion"] != p.ID || d.Payload["image"] != target {
			t.Errorf("deployment %d = sha %s ref %s payload %v; want commit %s, promotion %s, image %s", i, d.SHA, d.Ref, d.Payload, commit, p.ID, target)
		}
		if d.AutoMerge == nil || *d.AutoMerge || d.RequiredContexts == nil || len(*d.RequiredContexts) != 0 {
			t.Errorf("deployment %d: auto_merge %v required_contexts %v, want false and []", i, d.AutoMerge, d.RequiredContexts)
		}
		if e := p.Environments[i]; e.DeploymentID != d.ID {
			t.Errorf("%s records deployment %d, GitHub has %d", e.Name, e.DeploymentID, d.ID)
		}
	}
	if last := ds[1].Statuses[2]; last.EnvironmentURL != "https://web.example.com" || !strings.Contains(last.Description, "verified") {
		t.Errorf("production success status = %+v, want the environment URL", last)
	}

	// The same digest again, refused at the gate: production's deployment
	// is called off.
	p2, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + ":v9", Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	b.waitFor(p2.ID, "the gate", func(p store.Promotion) bool { return p.Environments[1].DeploymentState == "pending" })
	if _, err := b.as("carol").Reject(ctx, p2.ID, api.Decision{Reason: "not today"}); err != nil {
		t.Fatalf("reject: %v", err)
	}
	b.waitFor(p2.ID, "production inactive", func(p store.Promotion) bool {
		return p.State == store.PromotionRejected && p.Environments[1].DeploymentState == "inactive"
	})
	prod := deploymentsOf(gh.Deployments(), "production")
	if len(prod) != 2 || !reflect.DeepEqual(prod[1].States(), []string{"pending", "inactive"}) ||
		!strings.Contains(prod[1].Statuses[1].Description, "rejected by carol: not today") {
		t.Errorf("production deployments:\n%s\nwant the second pending then inactive (rejected by carol)", scmfake.FormatDeployments(prod))
	}
}

// On GitLab a failing verification in test shows as a failed deployment,
// production gets none; a promotion mid-rollout that is restarted keeps
// its one deployment.
func TestDeploymentsReportedToGitLab(t *testing.T) {
	gl := scmfake.NewGitLab(t)
	gl.AddProject(31, "grp/web")
	dep, err := scm.NewGitLab(scm.GitLabConfig{Token: scmfake.GitLabToken, BaseURL: gl.BaseURL()})
	if err != nil {
		t.Fatal(err)
	}
	b := newBed(t, redisStore(t))
	b.app.Provider, b.app.ProjectID, b.app.Ref = "gitlab", 31, "main"
	b.deployer = dep
	digest := push(t, b.source+":v4", image(t, layers(t, 1, 1024)...))
	slow := func(d *appsv1.Deployment) { d.Spec.Template.Annotations[testbed.StartDelayAnnotation] = "3s" }
	b.deploy(b.nsTest, slow)
	b.deploy(b.nsProd, nil)
	b.health["test"].Store(http.StatusInternalServerError)
	b.start()

	ctx := context.Background()
	p, err := b.client().Create(ctx, promote.Request{App: "web", Image: b.source + "@" + digest.String(), Commit: commit})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	b.waitFor(p.ID, "test rolling, reported", func(p store.Promotion) bool {
		return p.Environments[0].Phase == store.EnvRolling && p.Environments[0].DeploymentState == "in_progress"
	})
	b.stop()
	b.start() // restarted mid-rollout

	p = b.waitFor(p.ID, "test failure reported", func(p store.Promotion) bool {
		return p.State == store.PromotionFailed && p.Environments[0].DeploymentState == "failure"
	})
	ds := gl.Deployments()
	if len(ds) != 1 {
		t.Fatalf("deployments = %d, want one (test's, not repeated by the restart):\n%s", len(ds), scmfake.FormatDeployments(ds))
	}
	d := ds[0]
	if d.Environment != "test" || d.ProjectID != 31 || d.SHA != commit || d.Ref != "main" || d.Tag ||
		!reflect.DeepEqual(d.States(), []string{"running", "failed"}) {
		t.Errorf("deployment = %+v, want test of %s from main: running, failed", d, commit)
	}
	if p.Environments[1].DeploymentID != 0 {
		t.Errorf("production has deployment %d, want none", p.Environments[1].DeploymentID)
	}
}
