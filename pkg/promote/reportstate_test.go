package promote_test

import (
	"testing"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// Each phase of an environment shows as one deployment state on the Git
// host; a failed promotion turns what was under way into failure or error.
func TestDeploymentStatusFollowsThePhase(t *testing.T) {
	app := config.PromotionApp{Name: "web", Environments: []config.PromotionEnvironment{{Name: "test", URL: "https://test.web"}}}
	tests := []struct {
		name  string
		env   store.PromotionEnv
		state string // the promotion's
		want  scm.DeploymentStatus
		none  bool
	}{
		{"pending shows nothing", store.PromotionEnv{Phase: store.EnvPending}, store.PromotionRunning, scm.DeploymentStatus{}, true},
		{"awaiting approval", store.PromotionEnv{Phase: store.EnvAwaitingApprove}, store.PromotionWaiting,
			scm.DeploymentStatus{State: scm.DeploymentPending, Description: "waiting for approval"}, false},
		{"approved", store.PromotionEnv{Phase: store.EnvApproved, Approver: "alice"}, store.PromotionRunning,
			scm.DeploymentStatus{State: scm.DeploymentPending, Description: "approved by alice"}, false},
		{"approved, then ferry could not go on", store.PromotionEnv{Phase: store.EnvApproved, Reason: "kube down"}, store.PromotionFailed,
			scm.DeploymentStatus{State: scm.DeploymentError, Description: "kube down"}, false},
		{"rolling", store.PromotionEnv{Phase: store.EnvRolling}, store.PromotionRunning,
			scm.DeploymentStatus{State: scm.DeploymentInProgress, Description: "rolling out sha256:0123456789ab"}, false},
		{"verifying", store.PromotionEnv{Phase: store.EnvVerifying}, store.PromotionRunning,
			scm.DeploymentStatus{State: scm.DeploymentInProgress, Description: "verifying sha256:0123456789ab"}, false},
		{"failed while rolling", store.PromotionEnv{Phase: store.EnvRolling, Reason: "paused"}, store.PromotionFailed,
			scm.DeploymentStatus{State: scm.DeploymentFailure, Description: "paused"}, false},
		{"rolling back", store.PromotionEnv{Phase: store.EnvRollingBack, Reason: "GET failed"}, store.PromotionRunning,
			scm.DeploymentStatus{State: scm.DeploymentFailure, Description: "GET failed; rolled back"}, false},
		{"rolled back, the promotion's reason", store.PromotionEnv{Phase: store.EnvRolledBack}, store.PromotionFailed,
			scm.DeploymentStatus{State: scm.DeploymentFailure, Description: "test: GET failed; rolled back"}, false},
		{"succeeded, with the environment's URL", store.PromotionEnv{Phase: store.EnvSucceeded}, store.PromotionRunning,
			scm.DeploymentStatus{State: scm.DeploymentSuccess, Description: "verified sha256:0123456789ab", EnvironmentURL: "https://test.web"}, false},
		{"rejected", store.PromotionEnv{Phase: store.EnvRejected, Approver: "carol", Reason: "not today"}, store.PromotionRejected,
			scm.DeploymentStatus{State: scm.DeploymentInactive, Description: "rejected by carol: not today"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env.Name = "test"
			pr := promotion(func(p *store.Promotion) {
				p.State, p.Reason, p.Environments = tt.state, "test: GET failed", []store.PromotionEnv{tt.env}
			})
			got, ok := promote.WantedDeployment(app, pr, tt.env)
			if ok == tt.none || got != tt.want {
				t.Errorf("= %+v, %v; want %+v, %v", got, ok, tt.want, !tt.none)
			}
		})
	}
}
