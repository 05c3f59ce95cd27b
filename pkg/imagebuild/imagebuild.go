// Package imagebuild builds container images on ECI without Docker: for a
// pipeline's `ferry image build`, ferry runs one kaniko pod on a virtual
// node that builds the commit's Dockerfile from its Git repository at the
// exact SHA and pushes it, and reads the pushed digest back.
//
//	ferry image build ─▶ POST /api/v1/images ─▶ kaniko pod (registry Secret mounted here only)
//	                  ◀─ GET /api/v1/images/ID ◀─ digest from the termination message, checked at the registry
//
// The registry credentials live in a Secret that only the kaniko pod
// mounts: the build agent that asked never sees them. The pod is the whole
// record of a build — its name derives from what is built, so a retried
// request finds the same build, and a restarted ferry (any replica) reads
// the same state — and it is deleted some time after it ends.
package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/eci"
)

// Defaults of a Builder.
const (
	DefaultKanikoImage = "gcr.io/kaniko-project/executor:v1.23.2"
	DefaultTimeout     = 30 * time.Minute
	DefaultKeep        = 10 * time.Minute
	// LabelRole marks ferry's image-build pods.
	LabelRole = "ferry.dev/role"
	RoleBuild = "image-build"
)

// Annotations on a build pod, for people and for Get.
const (
	AnnotationDestination = "ferry.dev/image-destination"
	AnnotationGitURL      = "ferry.dev/git-url"
	AnnotationGitSHA      = "ferry.dev/git-sha"
)

// Config is what a Builder needs.
type Config struct {
	Kube      kubernetes.Interface
	Namespace string
	// PushSecret is a kubernetes.io/dockerconfigjson Secret in Namespace
	// with the credentials to push to the destinations.
	PushSecret string
	// Destinations are the repositories builds may push to, each a
	// repository or a prefix ending in "/*"; nothing else is accepted,
	// since the push credentials are ferry's, not the pipeline's.
	Destinations []string
	KanikoImage  string
	Timeout      time.Duration
	// Keep is how long a finished build's pod (and so its result) stays.
	Keep      time.Duration
	Resources corev1.ResourceRequirements
	ECI       eci.ECI
	// Verify checks that the registry has the pushed digest; nil uses
	// the registry with the push Secret's credentials.
	Verify func(ctx context.Context, ref name.Digest, dockerConfig []byte) error
	Logger *slog.Logger
	Now    func() time.Time
}

// Builder starts image builds and reports on them.
type Builder struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	verified map[string]error // build id → the registry's answer
}

// New validates cfg and returns a Builder.
func New(cfg Config) (*Builder, error) {
	if cfg.Kube == nil || cfg.Namespace == "" {
		return nil, errors.New("imagebuild: Kube and Namespace are required")
	}
	if cfg.PushSecret == "" {
		return nil, errors.New("imagebuild: PushSecret is required")
	}
	if len(cfg.Destinations) == 0 {
		return nil, errors.New("imagebuild: at least one destination is required")
	}
	if cfg.KanikoImage == "" {
		cfg.KanikoImage = DefaultKanikoImage
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Verify == nil {
		cfg.Verify = verifyAtRegistry
	}
	return &Builder{cfg: cfg, log: cfg.Logger.With("component", "imagebuild"), verified: map[string]error{}}, nil
}

// Request is one image build.
type Request struct {
	// GitURL is the repository's https URL; Ref and SHA the commit.
	GitURL string `json:"gitURL"`
	Ref    string `json:"ref"`
	SHA    string `json:"sha"`
	// ContextPath is the build context within the repository; default
	// its root. Dockerfile is relative to it; default Dockerfile.
	ContextPath string `json:"contextPath,omitempty"`
	Dockerfile  string `json:"dockerfile,omitempty"`
	// Destination is the image to push, repository:tag.
	Destination string `json:"destination"`
	// BuildArgs are passed to the build. They are visible in the pod's
	// spec: never put secrets in them.
	BuildArgs map[string]string `json:"buildArgs,omitempty"`
}

// States of a build.
const (
	StatePending   = "pending"
	StateRunning   = "running"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// Status is what is known of a build.
type Status struct {
	ID          string `json:"id"`
	State       string `json:"state"`
	Destination string `json:"destination"`
	// Digest and Image (destination@digest) once it succeeded.
	Digest string `json:"digest,omitempty"`
	Image  string `json:"image,omitempty"`
	// Reason says why it failed, or what is awaited.
	Reason   string     `json:"reason,omitempty"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
}

// Done reports whether the build ended.
func (s Status) Done() bool { return s.State == StateSucceeded || s.State == StateFailed }

// ErrNotFound is Get's answer for a build ferry does not have (never
// started, or ended longer ago than Keep).
var ErrNotFound = errors.New("no such image build (never started, or ended and removed)")

// ValidationError is a request that cannot be built as it is.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string { return strings.Join(e.Problems, "; ") }

var (
	hexSHA     = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
	refSyntax  = regexp.MustCompile(`^refs/(heads|tags|pull|merge-requests)/[A-Za-z0-9._/-]+$`)
	argName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	digestText = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// Validate checks r against the builder's rules and returns it with
// defaults applied.
func (b *Builder) Validate(r Request) (Request, error) {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	r.SHA = strings.ToLower(strings.TrimSpace(r.SHA))
	if !strings.HasPrefix(r.GitURL, "https://") || strings.ContainsAny(r.GitURL, " #@\n") || len(r.GitURL) > 1024 {
		add("gitURL %q: give the repository's https URL without credentials, e.g. https://github.com/acme/web.git", r.GitURL)
	}
	if !hexSHA.MatchString(r.SHA) {
		add("sha %q: give the full commit SHA (40 or 64 hexadecimal digits), e.g. $FERRY_GIT_SHA", r.SHA)
	}
	if !refSyntax.MatchString(r.Ref) || strings.Contains(r.Ref, "..") {
		add("ref %q: give the full ref the commit is on, e.g. refs/heads/main ($FERRY_GIT_REF)", r.Ref)
	}
	if r.Dockerfile == "" {
		r.Dockerfile = "Dockerfile"
	}
	for _, f := range []struct{ field, v string }{{"dockerfile", r.Dockerfile}, {"contextPath", r.ContextPath}} {
		if f.v != "" && (path.IsAbs(f.v) || slices.Contains(strings.Split(path.Clean(f.v), "/"), "..") || strings.ContainsAny(f.v, "\n#")) {
			add("%s %q: give a path inside the repository, without ..", f.field, f.v)
		}
	}
	if ref, err := name.NewTag(r.Destination, name.StrictValidation); err != nil {
		add("destination %q: give repository:tag, e.g. registry.example.com/ci/web:%s", r.Destination, short(r.SHA))
	} else if !b.allowed(ref.Context().Name()) {
		add("destination %q: ferry pushes only to %s (images.destinations)", r.Destination, strings.Join(b.cfg.Destinations, ", "))
	}
	for k, v := range r.BuildArgs {
		if !argName.MatchString(k) {
			add("buildArgs %q: not a build argument name", k)
		}
		if len(v) > 4096 || strings.ContainsRune(v, '\n') {
			add("buildArgs %s: a value is one line of at most 4096 bytes", k)
		}
	}
	if len(r.BuildArgs) > 64 {
		add("buildArgs: at most 64")
	}
	slices.Sort(p)
	if len(p) > 0 {
		return r, &ValidationError{Problems: p}
	}
	return r, nil
}

func short(sha string) string {
	if len(sha) >= 12 {
		return sha[:12]
	}
	return "TAG"
}

func (b *Builder) allowed(repo string) bool {
	for _, d := range b.cfg.Destinations {
		if prefix, ok := strings.CutSuffix(d, "/*"); ok {
			if strings.HasPrefix(repo, prefix+"/") {
				return true
			}
		} else if repo == d {
			return true
		}
	}
	return false
}

// ID names the build of r: the same request is the same build.
func ID(r Request) string {
	h := sha256.New()
	for _, s := range []string{r.GitURL, r.Ref, r.SHA, r.ContextPath, r.Dockerfile, r.Destination} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, k := range sortedKeys(r.BuildArgs) {
		h.Write([]byte(k + "=" + r.BuildArgs[k]))
		h.Write([]byte{0})
	}
	return "ferry-image-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// Start starts the build of r, or finds the one already started for the
// same request.
func (b *Builder) Start(ctx context.Context, r Request) (Status, error) {
	r, err := b.Validate(r)
	if err != nil {
		return Status{}, err
	}
	pod := b.render(r)
	created, err := b.cfg.Kube.CoreV1().Pods(b.cfg.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return b.Get(ctx, pod.Name)
	case err != nil:
		return Status{}, fmt.Errorf("create image build pod %s: %w", pod.Name, err)
	}
	b.log.Info("image build started", "id", created.Name, "destination", r.Destination, "sha", r.SHA)
	return b.status(ctx, created), nil
}

// Get reports on a build.
func (b *Builder) Get(ctx context.Context, id string) (Status, error) {
	if !strings.HasPrefix(id, "ferry-image-") || len(id) != len("ferry-image-")+16 {
		return Status{}, ErrNotFound
	}
	pod, err := b.cfg.Kube.CoreV1().Pods(b.cfg.Namespace).Get(ctx, id, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Status{}, ErrNotFound
	}
	if err != nil {
		return Status{}, fmt.Errorf("read image build pod %s: %w", id, err)
	}
	if pod.Labels[LabelRole] != RoleBuild {
		return Status{}, ErrNotFound
	}
	return b.status(ctx, pod), nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
