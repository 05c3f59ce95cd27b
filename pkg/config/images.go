package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ferryci/ferry/pkg/eci"
)

// Images configures image builds on ECI: `ferry image build` asks ferry to
// run a kaniko pod that builds a commit's Dockerfile and pushes it with
// credentials only that pod mounts.
type Images struct {
	// Enabled serves /api/v1/images (with the promotion API's token).
	Enabled bool `json:"enabled"`
	// Namespace holds the build pods; default agents.namespace.
	Namespace string `json:"namespace"`
	// Kubeconfig is a kubeconfig file; default agents.kubeconfig.
	Kubeconfig string `json:"kubeconfig"`
	// PushSecret is a kubernetes.io/dockerconfigjson Secret in Namespace
	// with push rights to the destinations.
	PushSecret string `json:"pushSecret"`
	// Destinations are the repositories builds may push to: a repository,
	// or a prefix ending in /* ("registry.example.com/ci/*").
	Destinations []string `json:"destinations"`
	// KanikoImage is the executor image; pin a release (or mirror it).
	KanikoImage string `json:"kanikoImage"`
	// Timeout bounds one build (the pod's activeDeadlineSeconds).
	Timeout Duration `json:"timeout"`
	// Keep is how long a finished build's pod, and so its result, stays.
	Keep Duration `json:"keep"`
	// Resources of the kaniko container; default ECI's 2 vCPU / 4 GiB.
	Resources corev1.ResourceRequirements `json:"resources"`
	// ECI settings of the build pods (specs, spot, vSwitches, …).
	ECI eci.ECI `json:"eci"`
}

var destinationPrefix = regexp.MustCompile(`^[^*]+/\*$`)

func (im Images) validate(c Config) []error {
	if !im.Enabled {
		return nil
	}
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("images.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if !c.Promotion.Enabled {
		add("enabled", "image builds take the promotion API's token: enable promotion (with promotion.apiToken) too")
	}
	if im.PushSecret == "" {
		add("pushSecret", "name the kubernetes.io/dockerconfigjson Secret with push rights, e.g. registry-push")
	} else if len(validation.IsDNS1123Subdomain(im.PushSecret)) > 0 {
		add("pushSecret", "%q is not a Secret name", im.PushSecret)
	}
	if len(im.Destinations) == 0 {
		add("destinations", "list the repositories builds may push to, e.g. [registry.example.com/ci/*]: ferry's credentials push nowhere else")
	}
	for i, d := range im.Destinations {
		repo, wild := strings.CutSuffix(d, "/*")
		if wild && !destinationPrefix.MatchString(d) {
			add(fmt.Sprintf("destinations[%d]", i), "%q: a prefix is written registry/path/*", d)
			continue
		}
		if _, err := name.NewRepository(repo, name.StrictValidation); err != nil && !wild {
			add(fmt.Sprintf("destinations[%d]", i), "%q is not a repository (registry/path, no tag)", d)
		} else if wild && !strings.Contains(repo, ".") && !strings.Contains(repo, ":") {
			add(fmt.Sprintf("destinations[%d]", i), "%q: name the registry host, e.g. registry.example.com/ci/*", d)
		}
	}
	if _, err := name.ParseReference(im.KanikoImage, name.StrictValidation); err != nil {
		add("kanikoImage", "%q is not an image reference", im.KanikoImage)
	}
	if im.Timeout.Duration < time.Minute || im.Timeout.Duration > 24*time.Hour {
		add("timeout", "must be between 1m and 24h")
	}
	if im.Keep.Duration < time.Minute {
		add("keep", "must be at least 1m: the pipeline reads the result from the pod")
	}
	t := eci.Template{Name: "image-build", Resources: im.Resources, ECI: im.ECI}
	if err := t.Validate(); err != nil {
		for _, e := range unjoin(err) {
			add(strings.SplitN(e.Error(), ":", 2)[0], "%s", strings.TrimSpace(strings.SplitN(e.Error(), ":", 2)[1]))
		}
	}
	return errs
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
