package provision

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferryci/ferry/pkg/eci"
)

// The image is checked before the pod (Config.ImageCheck): a template's
// image manifest is resolved in its registry, with the template's pull
// secrets, before any agent of the template is made. A missing image
// (404, MANIFEST_UNKNOWN, NAME_UNKNOWN) or a denied pull (401, 403,
// UNAUTHORIZED, DENIED) gives up on the waiting items at once, with the
// reason on the commit — no pod sits in ImagePullBackOff. A registry
// that cannot be reached does not block: the pod's own pull decides.
// Verdicts are cached per template (imageTTL); while a verdict is
// refreshed the old one stands, and only a template never checked waits
// for its first check.

// imageResult is what a check of a template's image found.
type imageResult int

const (
	imageUnchecked imageResult = iota
	imageFound
	imageMissing
	imageDenied
	imageUnreachable
)

var imageResultNames = [...]string{"unchecked", "found", "missing", "denied", "unreachable"}

func (r imageResult) String() string { return imageResultNames[r] }

// blocks reports a verdict that fails the template's items.
func (r imageResult) blocks() bool { return r == imageMissing || r == imageDenied }

// imageCheck is a template's image verdict and when it was found.
type imageCheck struct {
	result  imageResult
	message string
	at      time.Time
}

const (
	// imageTTL is how long a verdict stands before it is refreshed;
	// imageUnreachableTTL for an unreachable registry.
	imageTTL            = time.Minute
	imageUnreachableTTL = 15 * time.Second
	// imageTimeout bounds one check.
	imageTimeout = 10 * time.Second
)

// stale reports whether a verdict should be refreshed at now.
func (c imageCheck) stale(now time.Time) bool {
	ttl := imageTTL
	if c.result == imageUnreachable {
		ttl = imageUnreachableTTL
	}
	return c.result == imageUnchecked || now.Sub(c.at) >= ttl
}

// classifyImageError tells a missing image and a denied pull from a
// registry that merely failed to answer.
func classifyImageError(err error) imageResult {
	if err == nil {
		return imageFound
	}
	var te *transport.Error
	if !errors.As(err, &te) {
		return imageUnreachable
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
			return imageMissing
		case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
			return imageDenied
		}
	}
	switch te.StatusCode {
	case http.StatusNotFound:
		return imageMissing
	case http.StatusUnauthorized, http.StatusForbidden:
		return imageDenied
	}
	return imageUnreachable
}

// imageFailure is the failure an item is given up with.
func imageFailure(image string, c imageCheck) eci.Failure {
	what := "does not exist in its registry"
	if c.result == imageDenied {
		what = "cannot be pulled with the template's pull secrets (access denied)"
	}
	return eci.Failure{Reason: eci.ReasonImagePull, Message: fmt.Sprintf("agent image %s %s: %s", image, what, c.message)}
}

// checkImage resolves a template's image manifest and records the
// verdict.
func (p *Provisioner) checkImage(template string) action {
	return func(ctx context.Context) error {
		t := p.cfg.Templates[template].WithDefaults()
		ctx, cancel := context.WithTimeout(ctx, imageTimeout)
		defer cancel()
		res, msg := p.resolveImage(ctx, t)
		p.m.imageChecks.Add(ctx, 1, metric.WithAttributes(attribute.String("template", template), attribute.String("result", res.String())))
		if res != imageFound {
			p.log.Warn("agent image check", "template", template, "image", t.Image, "result", res.String(), "message", msg)
		}
		p.mu.Lock()
		p.images[template] = imageCheck{result: res, message: msg, at: p.clock.Now()}
		p.mu.Unlock()
		return nil
	}
}

func (p *Provisioner) resolveImage(ctx context.Context, t eci.Template) (imageResult, string) {
	ref, err := name.ParseReference(t.Image)
	if err != nil {
		return imageMissing, "not a valid image reference: " + err.Error()
	}
	kc, err := p.pullKeychain(ctx, t.ImagePullSecrets)
	if err != nil {
		return imageUnreachable, err.Error()
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if p.cfg.ImageTransport != nil {
		opts = append(opts, remote.WithTransport(p.cfg.ImageTransport))
	}
	_, err = remote.Head(ref, opts...)
	if err != nil {
		return classifyImageError(err), err.Error()
	}
	return imageFound, ""
}

// pullKeychain reads the template's pull secrets (kubernetes.io/
// dockerconfigjson or dockercfg) as kubelet would; a Secret that is
// missing counts as none, as for kubelet.
func (p *Provisioner) pullKeychain(ctx context.Context, secrets []string) (authn.Keychain, error) {
	kc := dockerKeychain{}
	for _, n := range secrets {
		s, err := p.cfg.Kube.CoreV1().Secrets(p.cfg.Namespace).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			continue
		}
		if err := kc.add(s); err != nil {
			return nil, fmt.Errorf("pull secret %s: %w", n, err)
		}
	}
	return kc, nil
}

// dockerKeychain holds registry credentials by registry host.
type dockerKeychain map[string]authn.AuthConfig

type dockerAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"`
}

func (k dockerKeychain) add(s *corev1.Secret) error {
	var auths map[string]dockerAuth
	switch {
	case len(s.Data[corev1.DockerConfigJsonKey]) > 0:
		var cfg struct {
			Auths map[string]dockerAuth `json:"auths"`
		}
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return errors.New("its .dockerconfigjson is not valid JSON")
		}
		auths = cfg.Auths
	case len(s.Data[corev1.DockerConfigKey]) > 0:
		if err := json.Unmarshal(s.Data[corev1.DockerConfigKey], &auths); err != nil {
			return errors.New("its .dockercfg is not valid JSON")
		}
	}
	for host, a := range auths {
		if a.Auth != "" && a.Username == "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return fmt.Errorf("the auth of %s is not base64", host)
			}
			a.Username, a.Password, _ = strings.Cut(string(raw), ":")
		}
		h := strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
		h, _, _ = strings.Cut(h, "/")
		k[h] = authn.AuthConfig{Username: a.Username, Password: a.Password}
	}
	return nil
}

// Resolve implements authn.Keychain.
func (k dockerKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if a, ok := k[r.RegistryStr()]; ok {
		return authn.FromConfig(a), nil
	}
	return authn.Anonymous, nil
}

// imagesNow returns a copy of the image verdicts.
func (p *Provisioner) imagesNow() map[string]imageCheck {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]imageCheck, len(p.images))
	for k, v := range p.images {
		out[k] = v
	}
	return out
}

// imageBlocks reports a template whose image is known missing or denied.
func (x *decider) imageBlocks(template string) bool {
	return x.r.imageCheck && x.w.images[template].result.blocks()
}

// imageUnchecked reports a template whose image was never checked: its
// items wait for the first check (a refresh of a stale verdict does not
// make them wait). It starts the check at most once a cycle.
func (x *decider) imageUnchecked(template string) bool {
	if !x.r.imageCheck {
		return false
	}
	return x.w.images[template].result == imageUnchecked
}

// checkImage returns the act that checks a template's image, once per
// cycle.
func (x *decider) checkImage(template string) []act {
	if x.checking[template] {
		return nil
	}
	if x.checking == nil {
		x.checking = map[string]bool{}
	}
	x.checking[template] = true
	return []act{{kind: actCheckImage, agent: &agentView{template: template}}}
}

// refreshImages refreshes the stale verdicts of templates with waiting
// items, without making them wait.
func (x *decider) refreshImages() {
	if !x.r.imageCheck {
		return
	}
	for _, wi := range x.w.waiting {
		c := x.w.images[wi.template]
		if c.result != imageUnchecked && c.stale(x.w.now) {
			x.d.acts = append(x.d.acts, x.checkImage(wi.template)...)
		}
	}
}
