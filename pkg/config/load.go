package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// setting is one value that can come from the environment or a flag.
type setting struct {
	env, flag, usage string
	set              func(c *Config, v string) error
	secret           bool
}

func str(dst func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *dst(c) = v; return nil }
}

func list(dst func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*dst(c) = out
		return nil
	}
}

func integer(dst func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*dst(c) = n
		return nil
	}
}

func boolean(dst func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*dst(c) = b
		return nil
	}
}

// settings lists every environment variable and flag ferry reads. Secrets
// have no flag: a flag shows in the process list.
var settings = []setting{
	{env: "FERRY_LISTEN", flag: "listen", usage: "address to serve on (server.listen)", set: str(func(c *Config) *string { return &c.Server.Listen })},
	{env: "FERRY_MAX_BODY_BYTES", flag: "max-body-bytes", usage: "webhook body cap in bytes (server.maxBodyBytes)", set: func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number of bytes", v)
		}
		c.Server.MaxBodyBytes = n
		return nil
	}},
	{env: "FERRY_STORE_BACKEND", flag: "store", usage: "redis or memory (store.backend)", set: str(func(c *Config) *string { return &c.Store.Backend })},
	{env: "FERRY_REDIS_ADDR", flag: "redis-addr", usage: "Redis host:port (store.redis.addr)", set: str(func(c *Config) *string { return &c.Store.Redis.Addr })},
	{env: "FERRY_REDIS_USERNAME", flag: "redis-username", usage: "Redis ACL user (store.redis.username)", set: str(func(c *Config) *string { return &c.Store.Redis.Username })},
	{env: "FERRY_REDIS_PASSWORD", secret: true, set: str(func(c *Config) *string { return &c.Store.Redis.Password })},
	{env: "FERRY_REDIS_DB", flag: "redis-db", usage: "Redis database number (store.redis.db)", set: integer(func(c *Config) *int { return &c.Store.Redis.DB })},
	{env: "FERRY_REDIS_TLS", flag: "redis-tls", usage: "connect to Redis over TLS (store.redis.tls)", set: boolean(func(c *Config) *bool { return &c.Store.Redis.TLS })},
	{env: "FERRY_REDIS_SENTINEL_ADDRS", flag: "redis-sentinel-addrs", usage: "comma-separated Redis Sentinel host:port list (store.redis.sentinel.addrs)", set: list(func(c *Config) *[]string { return &c.Store.Redis.Sentinel.Addrs })},
	{env: "FERRY_REDIS_SENTINEL_MASTER", flag: "redis-sentinel-master", usage: "name of the primary the sentinels monitor (store.redis.sentinel.masterName)", set: str(func(c *Config) *string { return &c.Store.Redis.Sentinel.MasterName })},
	{env: "FERRY_REDIS_SENTINEL_PASSWORD", secret: true, set: str(func(c *Config) *string { return &c.Store.Redis.Sentinel.Password })},
	{env: "FERRY_REDIS_CLUSTER_ADDRS", flag: "redis-cluster-addrs", usage: "comma-separated Redis Cluster node host:port list (store.redis.cluster.addrs)", set: list(func(c *Config) *[]string { return &c.Store.Redis.Cluster.Addrs })},
	{env: "FERRY_REDIS_WAIT_REPLICAS", flag: "redis-wait-replicas", usage: "replicas every accepted event waits for (store.redis.waitReplicas)", set: integer(func(c *Config) *int { return &c.Store.Redis.WaitReplicas })},
	{env: "FERRY_REDIS_PREFIX", flag: "redis-prefix", usage: "prefix of ferry's Redis keys (store.redis.prefix)", set: str(func(c *Config) *string { return &c.Store.Redis.Prefix })},
	{env: "FERRY_JENKINS_URL", flag: "jenkins-url", usage: "Jenkins root URL (jenkins.url)", set: str(func(c *Config) *string { return &c.Jenkins.URL })},
	{env: "FERRY_JENKINS_USER", flag: "jenkins-user", usage: "Jenkins user of the API token (jenkins.user)", set: str(func(c *Config) *string { return &c.Jenkins.User })},
	{env: "FERRY_JENKINS_API_TOKEN", secret: true, set: str(func(c *Config) *string { return &c.Jenkins.APIToken })},
	{env: "FERRY_GITHUB_WEBHOOK_SECRETS", secret: true, set: list(func(c *Config) *[]string { return &c.GitHub.WebhookSecrets })},
	{env: "FERRY_GITHUB_TOKEN", secret: true, set: str(func(c *Config) *string { return &c.GitHub.Token })},
	{env: "FERRY_GITHUB_API_URL", flag: "github-api-url", usage: "GitHub Enterprise API URL (github.apiURL)", set: str(func(c *Config) *string { return &c.GitHub.APIURL })},
	{env: "FERRY_GITLAB_WEBHOOK_TOKENS", secret: true, set: list(func(c *Config) *[]string { return &c.GitLab.WebhookTokens })},
	{env: "FERRY_GITLAB_TOKEN", secret: true, set: str(func(c *Config) *string { return &c.GitLab.Token })},
	{env: "FERRY_GITLAB_BASE_URL", flag: "gitlab-base-url", usage: "GitLab instance URL (gitlab.baseURL)", set: str(func(c *Config) *string { return &c.GitLab.BaseURL })},
	{env: "FERRY_PROMOTION_API_TOKEN", secret: true, set: str(func(c *Config) *string { return &c.Promotion.APIToken })},
	{env: "FERRY_DELIVERIES_API_TOKEN", secret: true, set: str(func(c *Config) *string { return &c.Deliveries.APIToken })},
	{env: "FERRY_UI_SESSION_KEY", secret: true, set: str(func(c *Config) *string { return &c.UI.SessionKey })},
	{env: "FERRY_LOG_LEVEL", flag: "log-level", usage: "debug, info, warn or error (telemetry.logLevel)", set: str(func(c *Config) *string { return &c.Telemetry.LogLevel })},
	{env: "FERRY_LOG_FORMAT", flag: "log-format", usage: "json or text (telemetry.logFormat)", set: str(func(c *Config) *string { return &c.Telemetry.LogFormat })},
	{env: "FERRY_OTLP_ENDPOINT", flag: "otlp-endpoint", usage: "OTLP/HTTP endpoint for traces (telemetry.otlpEndpoint)", set: str(func(c *Config) *string { return &c.Telemetry.OTLPEndpoint })},
}

// EnvVars returns the environment variables ferry reads, sorted.
func EnvVars() []string {
	out := make([]string, 0, len(settings))
	for _, s := range settings {
		out = append(out, s.env)
	}
	sort.Strings(out)
	return out
}

// Flags holds the values given on the command line, by flag name.
type Flags map[string]string

// RegisterFlags adds ferry's configuration flags to fs; the values given
// are collected into the returned Flags when fs is parsed.
func RegisterFlags(fs *flag.FlagSet) Flags {
	got := Flags{}
	for _, s := range settings {
		if s.flag == "" {
			continue
		}
		name := s.flag
		fs.Func(name, s.usage+" [env "+s.env+"]", func(v string) error {
			got[name] = v
			return nil
		})
	}
	return got
}

// Sources are the places a configuration is read from, lowest precedence
// first: the file, then the environment, then flags.
type Sources struct {
	File   string
	Lookup func(string) (string, bool) // os.LookupEnv when nil
	Flags  Flags
}

// Load reads the file, applies environment and flag overrides, reads the
// secret files, and validates the result.
func Load(src Sources) (Config, error) {
	c, err := LoadFile(src.File)
	if err != nil {
		return Config{}, err
	}
	lookup := src.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var errs []error
	for _, s := range settings {
		if v, ok := lookup(s.env); ok && v != "" {
			if err := s.set(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", s.env, redactIf(err, s.secret)))
			}
		}
	}
	for _, s := range settings {
		if v, ok := src.Flags[s.flag]; ok && s.flag != "" {
			if err := s.set(&c, v); err != nil {
				errs = append(errs, fmt.Errorf("flag --%s: %w", s.flag, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	// Validate before reading secret files: it checks that a secret is not
	// given both as a value and as a file.
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if err := c.ResolveSecrets(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func redactIf(err error, secret bool) error {
	if secret {
		return errors.New("invalid value (not shown: it is a secret)")
	}
	return err
}

// ResolveSecrets reads every *File field into its value field, so the rest
// of ferry sees secrets in one place. A value and a file for the same
// secret is an error found by Validate, which Load calls first.
func (c *Config) ResolveSecrets() error {
	var errs []error
	one := func(field, file string, dst *string) {
		if file == "" || *dst != "" {
			return
		}
		v, err := readSecretFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			return
		}
		*dst = v
	}
	lines := func(field, file string, dst *[]string) {
		if file == "" {
			return
		}
		v, err := readSecretFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			return
		}
		for _, l := range strings.Split(v, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				*dst = append(*dst, l)
			}
		}
	}
	one("store.redis.passwordFile", c.Store.Redis.PasswordFile, &c.Store.Redis.Password)
	one("store.redis.sentinel.passwordFile", c.Store.Redis.Sentinel.PasswordFile, &c.Store.Redis.Sentinel.Password)
	one("jenkins.apiTokenFile", c.Jenkins.APITokenFile, &c.Jenkins.APIToken)
	one("github.tokenFile", c.GitHub.TokenFile, &c.GitHub.Token)
	one("gitlab.tokenFile", c.GitLab.TokenFile, &c.GitLab.Token)
	one("promotion.apiTokenFile", c.Promotion.APITokenFile, &c.Promotion.APIToken)
	one("deliveries.apiTokenFile", c.Deliveries.APITokenFile, &c.Deliveries.APIToken)
	one("ui.sessionKeyFile", c.UI.SessionKeyFile, &c.UI.SessionKey)
	lines("github.webhookSecretsFile", c.GitHub.WebhookSecretsFile, &c.GitHub.WebhookSecrets)
	lines("gitlab.webhookTokensFile", c.GitLab.WebhookTokensFile, &c.GitLab.WebhookTokens)
	return errors.Join(errs...)
}

func readSecretFile(name string) (string, error) {
	b, err := os.ReadFile(name) //nolint:gosec // the operator names the secret file
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", name)
	}
	return v, nil
}
