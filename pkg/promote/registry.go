package promote

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Registry copies images between repositories by digest with
// go-containerregistry. Blobs the target already has are skipped (HEAD),
// blobs in another repository of the same registry are mounted (no bytes
// move), and only the rest are streamed.
type Registry struct {
	keychain  authn.Keychain
	transport http.RoundTripper
}

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// Keychain gives credentials per registry; it is asked on every call,
	// so a keychain that refreshes short-lived tokens (ACR's temporary
	// passwords) is used as is. Default: authn.DefaultKeychain.
	Keychain authn.Keychain
	// Transport carries the registry calls; default remote.DefaultTransport.
	Transport http.RoundTripper
}

// NewRegistry returns a Registry.
func NewRegistry(cfg RegistryConfig) *Registry {
	if cfg.Keychain == nil {
		cfg.Keychain = authn.DefaultKeychain
	}
	if cfg.Transport == nil {
		cfg.Transport = remote.DefaultTransport
	}
	return &Registry{keychain: cfg.Keychain, transport: cfg.Transport}
}

func (r *Registry) options(ctx context.Context) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(r.keychain), remote.WithTransport(r.transport)}
}

// Resolve returns the digest an image reference (tag or digest) points at
// now. Callers resolve once and use the digest from then on.
func (r *Registry) Resolve(ctx context.Context, ref name.Reference) (name.Digest, error) {
	desc, err := remote.Head(ref, r.options(ctx)...)
	if err != nil {
		// Some registries do not answer HEAD for manifests; GET does.
		d, gerr := remote.Get(ref, r.options(ctx)...)
		if gerr != nil {
			return name.Digest{}, fmt.Errorf("resolve %s: %w", ref, gerr)
		}
		desc = &d.Descriptor
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

// Copy copies the manifest or index src and everything it references to
// the repository dst, keeping the manifest bytes (so the digest stays the
// same), then points tags at it. It returns dst@digest.
func (r *Registry) Copy(ctx context.Context, src name.Digest, dst name.Repository, tags []string) (name.Digest, error) {
	opts := r.options(ctx)
	desc, err := remote.Get(src, opts...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("read %s: %w", src, err)
	}
	if desc.Digest.String() != src.DigestStr() {
		return name.Digest{}, fmt.Errorf("read %s: the registry served digest %s", src, desc.Digest)
	}
	target := dst.Digest(desc.Digest.String())
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return name.Digest{}, fmt.Errorf("read index %s: %w", src, err)
		}
		if err := remote.WriteIndex(target, idx, opts...); err != nil {
			return name.Digest{}, fmt.Errorf("copy index %s to %s: %w", src, dst, err)
		}
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return name.Digest{}, fmt.Errorf("read image %s: %w", src, err)
		}
		if err := remote.Write(target, img, opts...); err != nil {
			return name.Digest{}, fmt.Errorf("copy image %s to %s: %w", src, dst, err)
		}
	default:
		return name.Digest{}, fmt.Errorf("copy %s: media type %s is neither an image nor an index", src, desc.MediaType)
	}
	for _, t := range tags {
		tag := dst.Tag(t)
		if err := remote.Tag(tag, desc, opts...); err != nil {
			return name.Digest{}, fmt.Errorf("tag %s: %w", tag, err)
		}
	}
	return target, nil
}

// permanent reports whether a registry error will not go away by retrying
// (the image or repository does not exist, access is denied).
func permanent(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode >= 400 && terr.StatusCode < 500 && terr.StatusCode != http.StatusTooManyRequests &&
			terr.StatusCode != http.StatusRequestTimeout
	}
	return false
}

// DockerConfigKeychain reads registry credentials from a docker
// config.json ("auths" entries) on every lookup, so credentials that a
// Kubernetes Secret mount or a token refresher rewrites are used at once.
// Registries without an entry are accessed anonymously.
type DockerConfigKeychain struct {
	// Path is the config.json; empty means $DOCKER_CONFIG/config.json or
	// ~/.docker/config.json.
	Path string
}

type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

func (k DockerConfigKeychain) path() string {
	if k.Path != "" {
		return k.Path
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".docker", "config.json")
}

// Resolve implements authn.Keychain. Errors never include credentials.
func (k DockerConfigKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	p := k.path()
	data, err := os.ReadFile(p) //nolint:gosec // the operator names the credentials file
	if errors.Is(err, os.ErrNotExist) && k.Path == "" {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registry credentials: %w", err)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("registry credentials %s are not a docker config.json (content not shown)", p)
	}
	host := res.RegistryStr()
	for key, a := range cfg.Auths {
		if authHost(key) != host && (host != name.DefaultRegistry || authHost(key) != "index.docker.io") {
			continue
		}
		ac := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("registry credentials for %s: the auth field is not base64 (content not shown)", host)
			}
			ac.Username, ac.Password, _ = strings.Cut(string(raw), ":")
		}
		return authn.FromConfig(ac), nil
	}
	return authn.Anonymous, nil
}

// authHost turns a config.json key ("https://host/v1/", "host:5000") into
// the registry host.
func authHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	host, _, _ := strings.Cut(key, "/")
	return host
}
