package app

import (
	"context"
	"fmt"

	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/promote/api"
	"github.com/ferryci/ferry/pkg/ui"
)

// newUI builds the web UI over the same delivery code, promotion API and
// authorization as the JSON endpoints.
func (a *App) newUI(ds *deliveries.Server) (*ui.Server, error) {
	cfg := a.opts.Config
	key, err := cfg.UI.UISessionKey()
	if err != nil {
		return nil, err
	}
	uc := ui.Config{Deliveries: ds, Key: key, TTL: cfg.UI.SessionTTL.Duration, Refresh: cfg.UI.Refresh.Duration,
		AnonymousRead: cfg.UI.AnonymousRead, SecureCookie: cfg.UI.SecureCookie, Logger: a.tel.Logger}
	if a.promoter != nil {
		uc.Promotions, uc.Auth = a.promoter.api, a.promoter.api
		uc.Canary = ui.ConfiguredCanary(cfg.Promotion.Apps)
	} else if pa := cfg.Promotion.Auth; len(pa.Tokens) > 0 || pa.Kubernetes.Enabled {
		ac := api.AuthConfig{Auth: pa}
		if pa.Kubernetes.Enabled {
			if ac.Kube, err = newKube(kubeSource{Kubeconfig: cfg.Promotion.Kubeconfig, Setting: "promotion.kubeconfig", UserAgent: "ferry-ui"}); err != nil {
				return nil, fmt.Errorf("ui sign-in (promotion.auth.kubernetes): %w", err)
			}
		}
		auth, err := api.NewAuth(ac)
		if err != nil {
			return nil, err
		}
		uc.Auth = authOnly{auth}
	}
	if a.agents != nil {
		uc.Agents = ui.KubeAgents{Kube: a.agents.kube, Namespace: cfg.Agents.Namespace, Jenkins: a.jenkins, Usage: a.store,
			Warm: a.agents.provisioner}
	}
	return ui.New(uc)
}

// authOnly lets people sign in to the UI when promotions are off.
type authOnly struct{ *api.Auth }

func (o authOnly) Allowed(ctx context.Context, id api.Identity, verb, app, env string) (bool, error) {
	return o.Authorize(ctx, id, api.Access{Verb: verb, App: app, Environment: env})
}
