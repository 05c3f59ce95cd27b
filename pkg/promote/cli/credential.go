package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ferryci/ferry/pkg/promote/api"
)

// credential finds the caller's credential: FERRY_TOKEN (a person's
// token), FERRY_PROMOTION_API_TOKEN (the pipelines' token), else the
// kubeconfig's context (kubeContext, default the current one) the way
// kubectl does — its bearer token, token file or exec credential plugin.
// The kubeconfig's cluster (server, CA) is not used: only its credential
// is sent, to ferry.
func credential(getenv func(string) string, kubeContext string) (*api.Client, error) {
	for _, v := range []string{"FERRY_TOKEN", "FERRY_PROMOTION_API_TOKEN"} {
		if t := getenv(v); t != "" {
			return &api.Client{Token: t}, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k := getenv("KUBECONFIG"); k != "" {
		rules.Precedence = filepath.SplitList(k)
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no credential: set FERRY_TOKEN (or FERRY_PROMOTION_API_TOKEN in pipelines), or use a kubeconfig with a token: %w", err)
	}
	if cfg.BearerToken == "" && cfg.BearerTokenFile == "" && cfg.ExecProvider == nil && cfg.AuthProvider == nil {
		return nil, errors.New("the kubeconfig context has no bearer token, token file or exec plugin (client certificates cannot be verified by ferry): set FERRY_TOKEN or pick another --context")
	}
	rt, err := rest.HTTPWrappersForConfig(credentialOnly(cfg), http.DefaultTransport)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig credential: %w", err)
	}
	return &api.Client{HTTP: &http.Client{Timeout: 30 * time.Second, Transport: rt}}, nil
}

// credentialOnly keeps what authenticates the caller and drops what
// belongs to the cluster's API server (its TLS, impersonation).
func credentialOnly(cfg *rest.Config) *rest.Config {
	return &rest.Config{
		BearerToken: cfg.BearerToken, BearerTokenFile: cfg.BearerTokenFile,
		ExecProvider: cfg.ExecProvider, AuthProvider: cfg.AuthProvider, AuthConfigPersister: cfg.AuthConfigPersister,
		UserAgent: "ferry-promote",
	}
}

// IdempotencyKey derives a create's Idempotency-Key from the build: the
// same Jenkins build asking for the same image of the same app gets the
// same key, however often it retries. Without a build URL there is no
// build to tie a retry to, and no key.
func IdempotencyKey(buildURL, app, image string) string {
	if buildURL == "" {
		return ""
	}
	h := sha256.Sum256([]byte(buildURL + "\n" + app + "\n" + image))
	return "ferry-build-" + hex.EncodeToString(h[:16])
}
