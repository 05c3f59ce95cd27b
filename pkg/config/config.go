// Package config defines ferry's configuration: the YAML schema, its
// defaults, environment and flag overrides (file < env < flags), and
// validation whose errors name the field and say how to fix it.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/imagebuild"
)

// Config is the whole of ferry's configuration.
type Config struct {
	Server    Server    `json:"server"`
	Store     Store     `json:"store"`
	Jenkins   Jenkins   `json:"jenkins"`
	GitHub    GitHub    `json:"github"`
	GitLab    GitLab    `json:"gitlab"`
	Dispatch  Dispatch  `json:"dispatch"`
	Telemetry Telemetry `json:"telemetry"`
	Agents    Agents    `json:"agents"`
	Promotion Promotion `json:"promotion"`
	Images    Images    `json:"images"`
	// Deliveries is the delivery log and missed-delivery recovery
	// (deliveries.go).
	Deliveries Deliveries `json:"deliveries"`
	// UI is the web UI under /ui/ (ui.go).
	UI        UI         `json:"ui"`
	Pipelines []Pipeline `json:"pipelines"`
}

// Promotion configures the promoter: images copied by digest to a release
// repository and rolled through an app's environments.
type Promotion struct {
	// Enabled serves /api/v1/promotions and runs the promoter.
	Enabled bool `json:"enabled"`
	// APIToken is the bearer token of the promotion API; better given
	// through FERRY_PROMOTION_API_TOKEN or APITokenFile.
	APIToken     string `json:"apiToken"`
	APITokenFile string `json:"apiTokenFile"`
	// DockerConfig is a docker config.json with registry credentials (a
	// kubernetes.io/dockerconfigjson Secret's file); it is read again on
	// every registry call, so refreshed short-lived passwords are used.
	// Empty: anonymous, or $DOCKER_CONFIG/config.json.
	DockerConfig string `json:"dockerConfig"`
	// Kubeconfig is a kubeconfig file; empty means the in-cluster service
	// account. Environments may pick one of its contexts.
	Kubeconfig string `json:"kubeconfig"`
	// Resync is how often the promoter looks for promotions to work on
	// when nothing wakes it.
	Resync Duration `json:"resync"`
	// LeaseNamespace holds the Lease of LeaderElection.
	LeaseNamespace string `json:"leaseNamespace"`
	// LeaderElection makes one replica at a time run promotions.
	LeaderElection LeaderElection `json:"leaderElection"`
	// Apps are what can be promoted.
	Apps []PromotionApp `json:"apps"`
	// Auth says who may do what through the promotion API. APIToken is
	// the pipelines' credential: it may create and read promotions only.
	Auth PromotionAuth `json:"auth"`
	// IdempotencyTTL is how long an Idempotency-Key of a create is
	// remembered (default 24h).
	IdempotencyTTL Duration `json:"idempotencyTTL"`
}

// PromotionAuth authenticates and authorizes people on the promotion API.
// Approve, reject and rollback need one of its mechanisms; the audit
// trail records the identity it verified.
type PromotionAuth struct {
	// Kubernetes accepts Kubernetes bearer tokens: authenticated by a
	// TokenReview, authorized by a SubjectAccessReview in the
	// environment's namespace against Group's "promotions" resource.
	Kubernetes KubernetesAuth `json:"kubernetes"`
	// Tokens are per-person (or per-pipeline) tokens with roles, stored
	// as the SHA-256 of the token.
	Tokens []PromotionToken `json:"tokens"`
}

// KubernetesAuth configures TokenReview/SubjectAccessReview checks.
type KubernetesAuth struct {
	Enabled bool `json:"enabled"`
	// Group is the API group of the promotions resource RBAC rules name
	// (default ferry.dev).
	Group string `json:"group"`
	// Audiences the token must be issued for; empty: the API server's.
	Audiences []string `json:"audiences"`
}

// PromotionToken is one holder's token.
type PromotionToken struct {
	// Name is the identity recorded in the audit trail.
	Name string `json:"name"`
	// SHA256 is the hex SHA-256 of the token (e.g. `printf %s "$T" |
	// sha256sum`); the token itself is never configured.
	SHA256 string `json:"sha256"`
	// Roles grant verbs on apps in environments.
	Roles []PromotionRole `json:"roles"`
}

// PromotionRole grants Verbs on Apps in Environments ("*": all).
type PromotionRole struct {
	Apps         []string `json:"apps"`
	Environments []string `json:"environments"`
	// Verbs among create, get, approve, reject, rollback.
	Verbs []string `json:"verbs"`
}

// PromotionApp is an application that can be promoted.
type PromotionApp struct {
	// Name is what promotion requests name.
	Name string `json:"name"`
	// Source is the repository builds push to; requested images must be
	// in it.
	Source string `json:"source"`
	// Target is the repository promoted images are copied to (may be in
	// another registry); every environment runs Target@digest.
	Target string `json:"target"`
	// Tags put on the target for the digest; placeholders {{version}},
	// {{commit}}, {{short_commit}}, {{id}}. Default: {{version}} when a
	// version is given, else {{short_commit}}.
	Tags []string `json:"tags"`
	// Environments in promotion order.
	Environments []PromotionEnvironment `json:"environments"`
	// Provider (github or gitlab) and Repo (GitHub owner/name, GitLab
	// project path) turn on reporting each environment as a deployment of
	// the promotion's commit, with github.token or gitlab.token.
	Provider string `json:"provider"`
	Repo     string `json:"repo"`
	// ProjectID is GitLab's numeric project id, an alternative to Repo.
	ProjectID int64 `json:"projectID"`
	// Ref is the branch or tag promoted commits come from; GitLab requires
	// one for a deployment (default main). GitHub deploys the commit.
	Ref string `json:"ref"`
}

// Reports reports whether the app's environments are reported as
// deployments.
func (a PromotionApp) Reports() bool {
	return a.Provider != "" && (a.Repo != "" || a.ProjectID != 0)
}

// PromotionEnvironment is one stage an image passes through.
type PromotionEnvironment struct {
	Name string `json:"name"`
	// Namespace holds the Deployments.
	Namespace string `json:"namespace"`
	// Context is a context of promotion.kubeconfig (another cluster);
	// empty: the current one.
	Context string `json:"context"`
	// Deployments are rolled together to the promoted digest.
	Deployments []string `json:"deployments"`
	// KnativeServices are serving.knative.dev/v1 Services rolled instead
	// of Deployments (knative.go): their template's image is set, their
	// traffic split for canary steps.
	KnativeServices []string `json:"knativeServices"`
	// Container is the container whose image is set; default: the only
	// container, or the one named like the Deployment.
	Container string `json:"container"`
	// Approval makes entering this environment wait for an approval.
	Approval bool `json:"approval"`
	// URL is where the environment answers, shown on its GitHub
	// deployment.
	URL string `json:"url"`
	// RolloutTimeout bounds the wait for the rollout (and a rollback).
	RolloutTimeout Duration `json:"rolloutTimeout"`
	// Verify is what must pass before the environment counts as done.
	Verify Verification `json:"verify"`
	// Canary, when it has steps, rolls the environment step by step
	// (canary.go).
	Canary Canary `json:"canary"`
}

// Verification checks an environment after its rollout.
type Verification struct {
	// HTTP, when its URL is set, must answer 2xx Successes times in a row.
	HTTP HTTPCheck `json:"http"`
	// Job, when its template is set, runs a Kubernetes Job that must
	// succeed (its containers get FERRY_IMAGE, FERRY_DIGEST,
	// FERRY_ENVIRONMENT and FERRY_PROMOTION).
	Job JobCheck `json:"job"`
	// Soak is how long the rollout must stay healthy after the checks.
	Soak Duration `json:"soak"`
}

// HTTPCheck is an HTTP GET that must succeed repeatedly.
type HTTPCheck struct {
	URL       string   `json:"url"`
	Successes int      `json:"successes"`
	Interval  Duration `json:"interval"`
	// FailureThreshold consecutive failures end the check as failed.
	FailureThreshold int `json:"failureThreshold"`
	// Timeout bounds the whole check.
	Timeout Duration `json:"timeout"`
}

// JobCheck runs a Job from a template.
type JobCheck struct {
	Template *batchv1.JobSpec `json:"template"`
	Timeout  Duration         `json:"timeout"`
}

// Agents configures the provisioner: one ephemeral agent pod per queued
// Jenkins build, on ECI virtual nodes.
type Agents struct {
	// Enabled turns the provisioner on.
	Enabled bool `json:"enabled"`
	// Namespace holds the agent pods and their Secrets.
	Namespace string `json:"namespace"`
	// Kubeconfig is a kubeconfig file; empty means the in-cluster
	// service account.
	Kubeconfig string `json:"kubeconfig"`
	// JenkinsURL is Jenkins' URL as agent pods reach it; default jenkins.url.
	JenkinsURL string `json:"jenkinsURL"`
	// MaxAgents caps agents in flight across all templates.
	MaxAgents int `json:"maxAgents"`
	// Resync is how often Jenkins' queue and nodes are read when nothing
	// else wakes the provisioner; it bounds how long an agent outlives its
	// build.
	Resync Duration `json:"resync"`
	// GCGrace is how long an orphan (a pod without a Jenkins node, a node
	// without a pod, an agent Secret no pod reads) is left before it is
	// collected.
	GCGrace Duration `json:"gcGrace"`
	// DisableGC turns orphan collection off.
	DisableGC bool `json:"disableGC"`
	// DisableImageCheck stops ferry from resolving each template's image
	// in its registry (with its pull secrets) before making its pods; with
	// the check, a missing image or a denied pull fails the build at once.
	DisableImageCheck bool `json:"disableImageCheck"`
	// QPS and Burst limit ferry's Kubernetes API client.
	QPS   float32 `json:"qps"`
	Burst int     `json:"burst"`
	// LeaderElection makes one replica at a time run the provisioner.
	LeaderElection LeaderElection `json:"leaderElection"`
	// Templates describe the agents; see the eci package's Template.
	Templates []eci.Template `json:"templates"`
}

// LeaderElection configures the Lease that elects the provisioning replica.
type LeaderElection struct {
	Enabled       bool     `json:"enabled"`
	LeaseName     string   `json:"leaseName"`
	LeaseDuration Duration `json:"leaseDuration"`
	RenewDeadline Duration `json:"renewDeadline"`
	RetryPeriod   Duration `json:"retryPeriod"`
}

// Server configures the HTTP listener that serves webhooks, probes and
// metrics.
type Server struct {
	// Listen is the address to listen on, host:port.
	Listen string `json:"listen"`
	// MaxBodyBytes caps a webhook body; larger bodies get 413.
	MaxBodyBytes int64 `json:"maxBodyBytes"`
	// ReadTimeout bounds reading a whole request.
	ReadTimeout Duration `json:"readTimeout"`
	// WriteTimeout bounds writing a response.
	WriteTimeout Duration `json:"writeTimeout"`
	// ShutdownTimeout bounds the graceful drain on stop.
	ShutdownTimeout Duration `json:"shutdownTimeout"`
}

// Store selects and configures the durable state.
type Store struct {
	// Backend is "redis" or "memory". Empty means redis when redis.addr,
	// redis.sentinel.addrs or redis.cluster.addrs is set and memory
	// otherwise.
	Backend string `json:"backend"`
	Redis   Redis  `json:"redis"`
}

// Redis configures the Redis store.
type Redis struct {
	// Addr is a single Redis server (host:port). Set exactly one of Addr,
	// Sentinel.Addrs and Cluster.Addrs.
	Addr string `json:"addr"`
	// Sentinel finds the primary through Redis Sentinel and follows its
	// fail-overs.
	Sentinel RedisSentinel `json:"sentinel"`
	// Cluster talks to a Redis Cluster; Prefix must then carry a hash tag
	// such as "{ferry}:" so the queue's keys share one slot.
	Cluster  RedisCluster `json:"cluster"`
	Username string       `json:"username"`
	// Password is better given through FERRY_REDIS_PASSWORD or PasswordFile.
	Password     string `json:"password"`
	PasswordFile string `json:"passwordFile"`
	DB           int    `json:"db"`
	TLS          bool   `json:"tls"`
	// Prefix is put before every key ferry writes.
	Prefix string `json:"prefix"`
	// Group is the consumer group of the dispatchers.
	Group string `json:"group"`
	// DedupTTL is how long a delivery id is remembered (≥ 72h: GitHub
	// allows redelivery for 3 days).
	DedupTTL Duration `json:"dedupTTL"`
	// WaitReplicas, when above 0, makes every accepted event wait until
	// that many Redis replicas have it.
	WaitReplicas int `json:"waitReplicas"`
}

// RedisSentinel configures Redis Sentinel: ferry asks the sentinels which
// server is the primary of MasterName and reconnects to the new one after a
// fail-over. Username, Password and DB of Redis apply to the data servers.
type RedisSentinel struct {
	// MasterName is the name the sentinels monitor (sentinel monitor NAME).
	MasterName string `json:"masterName"`
	// Addrs are the sentinels' host:port.
	Addrs []string `json:"addrs"`
	// Username and Password authenticate to the sentinels themselves
	// (sentinel requirepass / ACL), when they need it. Password is better
	// given through FERRY_REDIS_SENTINEL_PASSWORD or PasswordFile.
	Username     string `json:"username"`
	Password     string `json:"password"`
	PasswordFile string `json:"passwordFile"`
}

// RedisCluster configures Redis Cluster.
type RedisCluster struct {
	// Addrs are some of the cluster's nodes (host:port); the rest are
	// discovered.
	Addrs []string `json:"addrs"`
}

// Jenkins says where Jenkins is and how to authenticate.
type Jenkins struct {
	URL  string `json:"url"`
	User string `json:"user"`
	// APIToken is better given through FERRY_JENKINS_API_TOKEN or
	// APITokenFile. API tokens are exempt from CSRF crumbs.
	APIToken     string   `json:"apiToken"`
	APITokenFile string   `json:"apiTokenFile"`
	Timeout      Duration `json:"timeout"`
}

// GitHub configures GitHub webhooks and commit statuses.
type GitHub struct {
	// WebhookSecrets are accepted signing secrets; several allow rotation.
	WebhookSecrets []string `json:"webhookSecrets"`
	// WebhookSecretsFile holds one secret per line.
	WebhookSecretsFile string `json:"webhookSecretsFile"`
	// Token writes commit statuses (repo:status scope).
	Token     string `json:"token"`
	TokenFile string `json:"tokenFile"`
	// APIURL is GitHub Enterprise's API root, e.g. https://ghe.example.com/api/v3/.
	APIURL string `json:"apiURL"`
	// GitURL is where webhooks' clone URLs point, when that is not the
	// host of APIURL (ferry reaching GitHub Enterprise by an internal
	// name). Deliveries whose clone URL names another host are refused.
	GitURL string `json:"gitURL"`
}

// GitLab configures GitLab webhooks and commit statuses.
type GitLab struct {
	// WebhookTokens are accepted X-Gitlab-Token values; several allow rotation.
	WebhookTokens     []string `json:"webhookTokens"`
	WebhookTokensFile string   `json:"webhookTokensFile"`
	// Token writes commit statuses (api scope).
	Token     string `json:"token"`
	TokenFile string `json:"tokenFile"`
	// BaseURL is the GitLab instance, e.g. https://gitlab.example.com.
	BaseURL string `json:"baseURL"`
	// GitURL is where webhooks' clone URLs point (GitLab's external_url),
	// when ferry reaches the instance by another URL than that.
	GitURL string `json:"gitURL"`
}

// Dispatch tunes the consumer of the event queue.
type Dispatch struct {
	// Workers is how many events one replica works on at once.
	Workers int `json:"workers"`
	// ReclaimAfter is how long an entry may go untouched before another
	// replica takes it over (its consumer is presumed dead).
	ReclaimAfter Duration `json:"reclaimAfter"`
	// RetryInitial and RetryMax bound the exponential backoff while
	// Jenkins is down.
	RetryInitial Duration `json:"retryInitial"`
	RetryMax     Duration `json:"retryMax"`
	// PermanentAttempts is how often a non-retryable answer (unknown job,
	// refused credentials) is retried before the event is given up and the
	// commit marked as errored.
	PermanentAttempts int `json:"permanentAttempts"`
	// RecentBuilds is how many of a job's builds are read per request
	// while the dispatcher searches them for the correlation id, back to
	// its first trigger attempt (1–100: Jenkins' page limit).
	RecentBuilds int `json:"recentBuilds"`
	// StatusInterval is how often triggered builds are polled to report
	// their outcome.
	StatusInterval Duration `json:"statusInterval"`
	// StatusGiveUpAfter is how long a build's known outcome is retried on
	// a failing commit status API (with back-off) before it is dropped
	// with an error log line and ferry_status_given_up.
	StatusGiveUpAfter Duration `json:"statusGiveUpAfter"`
	// StatusContext is the commit status context prefix: "<prefix>/<pipeline>".
	StatusContext string `json:"statusContext"`
	// TrustCacheTTL is how long an answer of the Git host about a user's
	// trust (membership, permission) is reused. Default 5m; at most 1h.
	TrustCacheTTL Duration `json:"trustCacheTTL"`
}

// Telemetry configures logs, traces and metrics.
type Telemetry struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel"`
	// LogFormat is json or text.
	LogFormat string `json:"logFormat"`
	// OTLPEndpoint, when set, sends traces over OTLP/HTTP (host:port or URL).
	OTLPEndpoint string `json:"otlpEndpoint"`
	// OTLPInsecure sends OTLP without TLS.
	OTLPInsecure bool `json:"otlpInsecure"`
	// SampleRatio is the share of new traces kept (0..1).
	SampleRatio float64 `json:"sampleRatio"`
	// ServiceName names ferry in traces.
	ServiceName string `json:"serviceName"`
}

// Event kinds a pipeline can build.
const (
	KindPush        = "push"
	KindTag         = "tag"
	KindPullRequest = "pull_request"
)

// Pipeline maps a repository's changes to a Jenkins job.
type Pipeline struct {
	// Name identifies the pipeline in statuses, logs and the correlation id.
	Name string `json:"name"`
	// Provider limits the pipeline to github or gitlab; empty means both.
	Provider string `json:"provider"`
	// Repo is the repository's full path, "owner/name" ("group/sub/name"
	// on GitLab); "owner/*" matches every repository of an owner.
	Repo string `json:"repo"`
	// Events lists the kinds built: push, tag, pull_request. Default: push, tag.
	Events []string `json:"events"`
	// Branches are glob patterns (path.Match, "**" for any) of branches
	// built on push and of target branches of pull requests. Default: all.
	Branches []string `json:"branches"`
	// Tags are glob patterns of tags built. Default: all.
	Tags []string `json:"tags"`
	// Paths, when set, build only pushes touching a matching file.
	Paths []string `json:"paths"`
	// IgnorePaths skip pushes whose every changed file matches.
	IgnorePaths []string `json:"ignorePaths"`
	// Job is the Jenkins job path, folders separated by "/".
	Job string `json:"job"`
	// Parameters are extra build parameters. Values may use {{sha}},
	// {{ref}}, {{branch}}, {{tag}}, {{repo}}, {{repo_url}}, {{number}},
	// {{event_id}}, {{pipeline}}.
	Parameters map[string]string `json:"parameters"`
	// PullRequests holds the trust gate and the cancellation of
	// superseded builds for pull/merge requests (see PullRequests).
	PullRequests PullRequests `json:"pullRequests"`
	// CancelSupersededPushes, when true, cancels this pipeline's queued
	// and running builds of a branch once a newer push to that branch is
	// built. Default false: every push to a branch is built to its end.
	CancelSupersededPushes bool `json:"cancelSupersededPushes"`
	// Reruns is how many times a build lost to infrastructure (its agent's
	// spot instance reclaimed, its pod evicted or deleted, an ECI system
	// failure, the build vanished with a Jenkins restart) is triggered
	// again on the same commit. Default DefaultReruns; 0 turns re-runs off.
	// A build whose steps failed is never re-run.
	Reruns *int `json:"reruns,omitempty"`
}

// DefaultReruns is Pipeline.Reruns when unset.
const DefaultReruns = 1

// MaxReruns bounds Pipeline.Reruns.
const MaxReruns = 5

// RerunLimit returns how many re-runs after infrastructure loss the
// pipeline allows.
func (p Pipeline) RerunLimit() int {
	if p.Reruns == nil {
		return DefaultReruns
	}
	return *p.Reruns
}

// PullRequests configures how a pipeline builds pull/merge requests.
type PullRequests struct {
	// Trust says whose pull requests build without a go-ahead and whose
	// comment commands (/ok-to-test, /retest, /cancel) are obeyed.
	Trust Trust `json:"trust"`
	// ApproveEachHead, when true, makes an /ok-to-test approve only the
	// head it was given for: every later push to the pull request waits
	// for a new one. Default false: an approved pull request stays
	// approved.
	ApproveEachHead bool `json:"approveEachHead"`
	// CancelSuperseded cancels the pipeline's queued and running builds
	// of a pull request once a newer head of it is built. Default true.
	CancelSuperseded *bool `json:"cancelSuperseded"`
}

// Trust lists who is trusted. Any one rule that holds makes a user
// trusted.
type Trust struct {
	// Members trusts members of the repository's organization (GitHub)
	// and, on GitLab, members of the project with at least Developer
	// access, inherited group membership included. Default true.
	Members *bool `json:"members"`
	// Collaborators trusts GitHub collaborators with write access (write,
	// maintain or admin). Default true.
	Collaborators *bool `json:"collaborators"`
	// Users are logins always trusted.
	Users []string `json:"users"`
	// Teams are GitHub teams, "org/team-slug", whose active members are
	// trusted.
	Teams []string `json:"teams"`
	// Forks is what a pull request from a fork needs: "hold" (default)
	// holds every one until /ok-to-test; "trustedAuthors" builds those
	// whose author is trusted at once.
	Forks string `json:"forks"`
}

// Trust.Forks values.
const (
	ForksHold           = "hold"
	ForksTrustedAuthors = "trustedAuthors"
)

// CancelSupersededPRs reports whether a newer head of a pull request
// cancels the pipeline's older builds of it (default true).
func (p Pipeline) CancelSupersededPRs() bool {
	return p.PullRequests.CancelSuperseded == nil || *p.PullRequests.CancelSuperseded
}

// TrustsMembers reports whether organization/project members are trusted.
func (t Trust) TrustsMembers() bool { return t.Members == nil || *t.Members }

// TrustsCollaborators reports whether collaborators with write access are
// trusted.
func (t Trust) TrustsCollaborators() bool { return t.Collaborators == nil || *t.Collaborators }

// TrustsForkAuthors reports whether a trusted author's fork PR builds at
// once.
func (t Trust) TrustsForkAuthors() bool { return t.Forks == ForksTrustedAuthors }

// Duration is a time.Duration written as "30s" or "5m" in YAML (or a
// number of seconds). It is the agent templates' type, so one definition
// serves the whole configuration.
type Duration = eci.Duration

// Default returns the configuration ferry runs with when nothing is set.
func Default() Config {
	return Config{
		Server: Server{
			Listen:          ":8080",
			MaxBodyBytes:    25 << 20,
			ReadTimeout:     Duration{Duration: 30 * time.Second},
			WriteTimeout:    Duration{Duration: 30 * time.Second},
			ShutdownTimeout: Duration{Duration: 20 * time.Second},
		},
		Store: Store{Redis: Redis{
			Prefix:   "ferry:",
			Group:    "ferry-dispatch",
			DedupTTL: Duration{Duration: 72 * time.Hour},
		}},
		Jenkins: Jenkins{Timeout: Duration{Duration: 10 * time.Second}},
		Dispatch: Dispatch{
			Workers:           8,
			ReclaimAfter:      Duration{Duration: 60 * time.Second},
			RetryInitial:      Duration{Duration: time.Second},
			RetryMax:          Duration{Duration: 60 * time.Second},
			PermanentAttempts: 5,
			RecentBuilds:      50,
			StatusInterval:    Duration{Duration: 5 * time.Second},
			StatusGiveUpAfter: Duration{Duration: 12 * time.Hour},
			StatusContext:     "ferry",
			TrustCacheTTL:     Duration{Duration: 5 * time.Minute},
		},
		Agents: Agents{
			Namespace: "ferry-agents",
			MaxAgents: 100,
			Resync:    Duration{Duration: 2 * time.Second},
			GCGrace:   Duration{Duration: 30 * time.Second},
			QPS:       50,
			Burst:     100,
			LeaderElection: LeaderElection{
				Enabled:       true,
				LeaseName:     "ferry-provisioner",
				LeaseDuration: Duration{Duration: 15 * time.Second},
				RenewDeadline: Duration{Duration: 10 * time.Second},
				RetryPeriod:   Duration{Duration: 2 * time.Second},
			},
		},
		Images: Images{
			KanikoImage: imagebuild.DefaultKanikoImage,
			Timeout:     Duration{Duration: 30 * time.Minute},
			Keep:        Duration{Duration: 10 * time.Minute},
		},
		Promotion: Promotion{
			Resync:         Duration{Duration: 2 * time.Second},
			IdempotencyTTL: Duration{Duration: 24 * time.Hour},
			Auth:           PromotionAuth{Kubernetes: KubernetesAuth{Group: "ferry.dev"}},
			LeaseNamespace: "ferry",
			LeaderElection: LeaderElection{
				Enabled:       true,
				LeaseName:     "ferry-promoter",
				LeaseDuration: Duration{Duration: 15 * time.Second},
				RenewDeadline: Duration{Duration: 10 * time.Second},
				RetryPeriod:   Duration{Duration: 2 * time.Second},
			},
		},
		Deliveries: defaultDeliveries(),
		UI:         defaultUI(),
		Telemetry: Telemetry{
			LogLevel:    "info",
			LogFormat:   "json",
			SampleRatio: 1,
			ServiceName: "ferry",
		},
	}
}

// Parse reads YAML onto the defaults. Unknown fields are errors, so a typo
// does not silently fall back to a default.
func Parse(data []byte) (Config, error) {
	c := Default()
	if err := yaml.UnmarshalWithOptions(data, &c, yaml.Strict(), yaml.UseJSONUnmarshaler()); err != nil {
		// The YAML decoder misreads some Kubernetes types (an env var's
		// secretKeyRef: "unknown field name"). encoding/json reads them as
		// the API server does; the YAML error, with its line, is kept for
		// what JSON refuses too.
		c = Default()
		if jerr := parseAsJSON(data, &c); jerr != nil {
			return Config{}, fmt.Errorf("parse config: %s", yaml.FormatError(err, false, true))
		}
	}
	for i := range c.Pipelines {
		c.Pipelines[i].applyDefaults()
	}
	c.Promotion.applyDefaults()
	return c, nil
}

// parseAsJSON decodes YAML through its JSON form with encoding/json,
// refusing unknown fields.
func parseAsJSON(data []byte, c *Config) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	return dec.Decode(c)
}

// LoadFile reads a YAML file; an empty name gives the defaults.
func LoadFile(name string) (Config, error) {
	if name == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(name) //nolint:gosec // the operator names the config file
	if err != nil {
		return Config{}, fmt.Errorf("read config file: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

func (p *Pipeline) applyDefaults() {
	if len(p.Events) == 0 {
		p.Events = []string{KindPush, KindTag}
	}
}

// BackendName returns the store backend that will be used.
func (c Config) BackendName() string {
	if c.Store.Backend != "" {
		return c.Store.Backend
	}
	r := c.Store.Redis
	if r.Addr != "" || len(r.Sentinel.Addrs) > 0 || len(r.Cluster.Addrs) > 0 {
		return "redis"
	}
	return "memory"
}

// hasHashTag reports whether a Redis key prefix has a non-empty hash tag
// ("{...}"), which Redis Cluster needs to keep ferry's keys in one slot.
func hasHashTag(prefix string) bool {
	open := strings.IndexByte(prefix, '{')
	return open >= 0 && strings.IndexByte(prefix[open:], '}') > 1
}

// validateTopology checks that exactly one way to reach Redis is given and
// that it is complete.
func (r Redis) validateTopology() []error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	var set []string
	if r.Addr != "" {
		set = append(set, "store.redis.addr")
	}
	if len(r.Sentinel.Addrs) > 0 {
		set = append(set, "store.redis.sentinel.addrs")
	}
	if len(r.Cluster.Addrs) > 0 {
		set = append(set, "store.redis.cluster.addrs")
	}
	switch {
	case len(set) == 0:
		add("store.redis.addr", "must be set when store.backend is redis, e.g. redis:6379 (or set store.redis.sentinel.addrs or store.redis.cluster.addrs)")
	case len(set) > 1:
		add(set[0], "set only one of %s", strings.Join(set, ", "))
	}
	addrs := func(field string, list []string) {
		for i, a := range list {
			if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
				add(fmt.Sprintf("%s[%d]", field, i), "%q is not host:port, e.g. redis-sentinel:26379", a)
			}
		}
	}
	s := r.Sentinel
	addrs("store.redis.sentinel.addrs", s.Addrs)
	if len(s.Addrs) > 0 && s.MasterName == "" {
		add("store.redis.sentinel.masterName", "must be set with sentinel.addrs: the name the sentinels monitor, e.g. mymaster")
	}
	// The password alone is allowed: the chart passes the Secret's key
	// whether or not Sentinel is used.
	if len(s.Addrs) == 0 && (s.MasterName != "" || s.Username != "" || s.PasswordFile != "") {
		add("store.redis.sentinel.addrs", "must list the sentinels (host:port) when other sentinel settings are given")
	}
	if s.Password != "" && s.PasswordFile != "" {
		add("store.redis.sentinel.password", "set password or passwordFile, not both")
	}
	addrs("store.redis.cluster.addrs", r.Cluster.Addrs)
	if len(r.Cluster.Addrs) > 0 {
		if !hasHashTag(r.Prefix) {
			add("store.redis.prefix", "%q has no hash tag; Redis Cluster needs one such as \"{ferry}:\" so the queue's keys share a slot", r.Prefix)
		}
		if r.DB != 0 {
			add("store.redis.db", "must be 0 with store.redis.cluster: Redis Cluster has only database 0")
		}
		if r.WaitReplicas > 0 {
			add("store.redis.waitReplicas", "is for a single primary (addr or sentinel), not store.redis.cluster; set it to 0")
		}
	}
	if r.WaitReplicas < 0 {
		add("store.redis.waitReplicas", "must not be negative")
	}
	return errs
}

var (
	pipelineName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)
	paramName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate checks the whole configuration and reports every problem at
// once, each naming the field and the fix.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Server.Listen == "" {
		add("server.listen", "must be set, e.g. \":8080\"")
	}
	if c.Server.MaxBodyBytes <= 0 {
		add("server.maxBodyBytes", "must be positive; GitHub sends at most 25 MiB (26214400)")
	}
	for f, d := range map[string]Duration{
		"server.readTimeout": c.Server.ReadTimeout, "server.writeTimeout": c.Server.WriteTimeout,
		"server.shutdownTimeout": c.Server.ShutdownTimeout, "jenkins.timeout": c.Jenkins.Timeout,
		"dispatch.reclaimAfter": c.Dispatch.ReclaimAfter, "dispatch.retryInitial": c.Dispatch.RetryInitial,
		"dispatch.retryMax": c.Dispatch.RetryMax, "dispatch.statusInterval": c.Dispatch.StatusInterval,
		"dispatch.statusGiveUpAfter": c.Dispatch.StatusGiveUpAfter,
	} {
		if d.Duration <= 0 {
			add(f, "must be a positive duration such as 10s")
		}
	}
	switch c.BackendName() {
	case "memory":
	case "redis":
		errs = append(errs, c.Store.Redis.validateTopology()...)
		if c.Store.Redis.Password != "" && c.Store.Redis.PasswordFile != "" {
			add("store.redis.password", "set password or passwordFile, not both")
		}
		if c.Store.Redis.DedupTTL.Duration < 72*time.Hour {
			add("store.redis.dedupTTL", "must be at least 72h: GitHub lets a delivery be redelivered for 3 days")
		}
		if c.Store.Redis.Prefix == "" {
			add("store.redis.prefix", "must not be empty, e.g. \"ferry:\"")
		}
		if c.Store.Redis.Group == "" {
			add("store.redis.group", "must not be empty, e.g. ferry-dispatch")
		}
	default:
		add("store.backend", "%q is not a backend: use redis or memory", c.Store.Backend)
	}
	if c.Jenkins.URL == "" {
		add("jenkins.url", "must be set to Jenkins' root URL, e.g. https://jenkins.example.com/")
	} else if err := checkURL(c.Jenkins.URL); err != nil {
		add("jenkins.url", "%v", err)
	}
	if c.Jenkins.APIToken != "" && c.Jenkins.APITokenFile != "" {
		add("jenkins.apiToken", "set apiToken or apiTokenFile, not both")
	}
	if (c.Jenkins.APIToken != "" || c.Jenkins.APITokenFile != "") && c.Jenkins.User == "" {
		add("jenkins.user", "must be set with an API token: the token belongs to a user")
	}
	if c.GitHub.APIURL != "" {
		if err := checkURL(c.GitHub.APIURL); err != nil {
			add("github.apiURL", "%v", err)
		}
	}
	if c.GitLab.BaseURL != "" {
		if err := checkURL(c.GitLab.BaseURL); err != nil {
			add("gitlab.baseURL", "%v", err)
		}
	}
	for field, u := range map[string]string{"github.gitURL": c.GitHub.GitURL, "gitlab.gitURL": c.GitLab.GitURL} {
		if u != "" {
			if err := checkURL(u); err != nil {
				add(field, "%v (the web address clone URLs in webhooks start with, e.g. https://git.example.com)", err)
			}
		}
	}
	if c.GitHub.Token != "" && c.GitHub.TokenFile != "" {
		add("github.token", "set token or tokenFile, not both")
	}
	if c.GitLab.Token != "" && c.GitLab.TokenFile != "" {
		add("gitlab.token", "set token or tokenFile, not both")
	}
	for i, s := range c.GitHub.WebhookSecrets {
		if s == "" {
			add(fmt.Sprintf("github.webhookSecrets[%d]", i), "must not be empty")
		}
	}
	for i, s := range c.GitLab.WebhookTokens {
		if s == "" {
			add(fmt.Sprintf("gitlab.webhookTokens[%d]", i), "must not be empty")
		}
	}
	if c.Dispatch.Workers < 1 {
		add("dispatch.workers", "must be at least 1")
	}
	if c.Dispatch.RetryMax.Duration < c.Dispatch.RetryInitial.Duration {
		add("dispatch.retryMax", "must not be below dispatch.retryInitial")
	}
	if c.Dispatch.PermanentAttempts < 1 {
		add("dispatch.permanentAttempts", "must be at least 1")
	}
	if c.Dispatch.RecentBuilds < 1 || c.Dispatch.RecentBuilds > 100 {
		add("dispatch.recentBuilds", "is %d, must be between 1 and 100: it is the page size of the build search, and Jenkins pages at most 100 builds (the search itself goes back to the first trigger attempt, however many builds that takes)", c.Dispatch.RecentBuilds)
	}
	if c.Dispatch.StatusContext == "" {
		add("dispatch.statusContext", "must not be empty, e.g. ferry")
	}
	if d := c.Dispatch.TrustCacheTTL.Duration; d < 0 || d > time.Hour {
		add("dispatch.trustCacheTTL", "is %s, must be between 0 (ask the Git host every time) and 1h: a removed member keeps their trust for this long", d)
	}
	switch c.Telemetry.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("telemetry.logLevel", "%q is not a level: use debug, info, warn or error", c.Telemetry.LogLevel)
	}
	switch c.Telemetry.LogFormat {
	case "json", "text":
	default:
		add("telemetry.logFormat", "%q is not a format: use json or text", c.Telemetry.LogFormat)
	}
	if c.Telemetry.SampleRatio < 0 || c.Telemetry.SampleRatio > 1 {
		add("telemetry.sampleRatio", "must be between 0 and 1")
	}
	errs = append(errs, c.Agents.validate()...)
	errs = append(errs, c.Images.validate(c)...)
	errs = append(errs, c.Promotion.validate()...)
	errs = append(errs, c.Deliveries.validate(c)...)
	errs = append(errs, c.UI.validate()...)
	errs = append(errs, c.Promotion.validateReporting(c.GitHub.Token != "" || c.GitHub.TokenFile != "",
		c.GitLab.Token != "" || c.GitLab.TokenFile != "")...)
	seen := map[string]bool{}
	for i, p := range c.Pipelines {
		errs = append(errs, p.validate(fmt.Sprintf("pipelines[%d]", i), seen)...)
	}
	return errors.Join(errs...)
}

func (p Pipeline) validate(field string, seen map[string]bool) []error {
	var errs []error
	add := func(sub, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, a...)))
	}
	switch {
	case p.Name == "":
		add("name", "must be set: it names the commit status and the correlation id")
	case !pipelineName.MatchString(p.Name):
		add("name", "%q must be lower-case letters, digits, '.', '_' or '-' (at most 63)", p.Name)
	case seen[p.Name]:
		add("name", "%q is used by another pipeline; names must be unique", p.Name)
	}
	seen[p.Name] = true
	switch p.Provider {
	case "", "github", "gitlab":
	default:
		add("provider", "%q is not a provider: use github, gitlab or leave it empty for both", p.Provider)
	}
	if p.Repo == "" || !strings.Contains(p.Repo, "/") {
		add("repo", "%q must be the repository's full path, e.g. acme/app", p.Repo)
	} else if _, err := path.Match(p.Repo, ""); err != nil {
		add("repo", "%q is not a valid pattern: %v", p.Repo, err)
	}
	if p.Reruns != nil && (*p.Reruns < 0 || *p.Reruns > MaxReruns) {
		add("reruns", "%d must be between 0 (no re-run after infrastructure loss) and %d", *p.Reruns, MaxReruns)
	}
	if p.Job == "" {
		add("job", "must name the Jenkins job, e.g. app or folder/app")
	} else if strings.HasPrefix(p.Job, "/") || strings.HasSuffix(p.Job, "/") || strings.Contains(p.Job, "//") {
		add("job", "%q must be a job path like folder/app, without leading, trailing or double slashes", p.Job)
	}
	for _, k := range p.Events {
		switch k {
		case KindPush, KindTag, KindPullRequest:
		default:
			add("events", "%q is not an event kind: use push, tag or pull_request", k)
		}
	}
	for name, pats := range map[string][]string{"branches": p.Branches, "tags": p.Tags, "paths": p.Paths, "ignorePaths": p.IgnorePaths} {
		for _, pat := range pats {
			if err := ValidPattern(pat); err != nil {
				add(name, "%q: %v", pat, err)
			}
		}
	}
	errs = append(errs, p.PullRequests.Trust.validate(field+".pullRequests.trust")...)
	if p.CancelSupersededPushes && !contains(p.Events, KindPush) {
		add("cancelSupersededPushes", "is set but the pipeline does not build push events; add push to events or remove it")
	}
	keys := make([]string, 0, len(p.Parameters))
	for k := range p.Parameters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !paramName.MatchString(k) {
			add("parameters", "%q is not a Jenkins parameter name (letters, digits, _)", k)
		}
		if IsReservedParam(k) {
			add("parameters", "%q is set by ferry itself; choose another name", k)
		}
		if err := checkTemplate(p.Parameters[k]); err != nil {
			add("parameters."+k, "%v", err)
		}
	}
	return errs
}

var (
	loginRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,254})$`)
	teamRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
)

func (t Trust) validate(field string) []error {
	var errs []error
	switch t.Forks {
	case "", ForksHold, ForksTrustedAuthors:
	default:
		errs = append(errs, fmt.Errorf("%s.forks: %q is not a choice: use hold (every fork PR waits for /ok-to-test) or trustedAuthors", field, t.Forks))
	}
	for _, u := range t.Users {
		if !loginRE.MatchString(u) {
			errs = append(errs, fmt.Errorf("%s.users: %q is not a user login (letters, digits, '.', '_', '-')", field, u))
		}
	}
	for _, team := range t.Teams {
		if !teamRE.MatchString(team) {
			errs = append(errs, fmt.Errorf("%s.teams: %q must be a GitHub team as org/team-slug, e.g. acme/release", field, team))
		}
	}
	return errs
}

// Build parameters ferry always sends.
const (
	ParamSHA         = "FERRY_GIT_SHA"
	ParamRef         = "FERRY_GIT_REF"
	ParamRepoURL     = "FERRY_GIT_URL"
	ParamEventID     = "FERRY_EVENT_ID"
	ParamTriggerID   = "FERRY_TRIGGER_ID"
	ParamPipeline    = "FERRY_PIPELINE"
	ParamTraceParent = "TRACEPARENT"
)

// ReservedParams lists the parameters ferry always sets.
var ReservedParams = []string{ParamSHA, ParamRef, ParamRepoURL, ParamEventID, ParamTriggerID, ParamPipeline, ParamTraceParent}

// IsReservedParam reports whether name is set by ferry.
func IsReservedParam(name string) bool {
	for _, r := range ReservedParams {
		if r == name {
			return true
		}
	}
	return false
}

var templateVar = regexp.MustCompile(`\{\{\s*([a-z_]+)\s*\}\}`)

// TemplateVars are the names usable in parameter values.
var TemplateVars = []string{"sha", "ref", "branch", "tag", "repo", "repo_url", "number", "event_id", "pipeline"}

func checkTemplate(v string) error {
	for _, m := range templateVar.FindAllStringSubmatch(v, -1) {
		ok := false
		for _, n := range TemplateVars {
			ok = ok || n == m[1]
		}
		if !ok {
			return fmt.Errorf("unknown placeholder {{%s}}: use one of %s", m[1], strings.Join(TemplateVars, ", "))
		}
	}
	return nil
}

// Expand fills the placeholders of a parameter value.
func Expand(v string, vars map[string]string) string {
	return templateVar.ReplaceAllStringFunc(v, func(m string) string {
		return vars[templateVar.FindStringSubmatch(m)[1]]
	})
}

func checkURL(u string) error {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return fmt.Errorf("%q must start with http:// or https://", redactURL(u))
	}
	return nil
}

// redactURL drops user info from a URL so a password never reaches an error.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		rest, scheme = u, ""
	}
	if at := strings.LastIndex(strings.SplitN(rest, "/", 2)[0], "@"); at >= 0 {
		rest = "xxx@" + rest[at+1:]
	}
	if scheme == "" {
		return rest
	}
	return scheme + "://" + rest
}

// ValidPattern checks a glob pattern: path.Match syntax, plus "**" matching
// any number of path segments.
func ValidPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("bad pattern: %w", err)
		}
	}
	return nil
}

// MatchPattern matches a slash-separated name against a pattern in which
// "**" stands for any number of segments and other segments use
// path.Match syntax.
func MatchPattern(pattern, name string) bool {
	return matchSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			if len(pat) == 1 {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

func (a Agents) validate() []error {
	if !a.Enabled {
		return nil
	}
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("agents.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if a.Namespace == "" {
		add("namespace", "must be set when agents are enabled, e.g. ferry-agents")
	}
	if a.JenkinsURL != "" {
		if err := checkURL(a.JenkinsURL); err != nil {
			add("jenkinsURL", "%v", err)
		}
	}
	if a.MaxAgents < 1 {
		add("maxAgents", "must be at least 1")
	}
	if a.Resync.Duration <= 0 {
		add("resync", "must be a positive duration such as 2s")
	}
	if a.GCGrace.Duration <= 0 {
		add("gcGrace", "must be a positive duration such as 30s")
	}
	if a.QPS <= 0 || a.Burst < 1 {
		add("qps", "qps must be positive and burst at least 1")
	}
	if le := a.LeaderElection; le.Enabled {
		if le.LeaseName == "" {
			add("leaderElection.leaseName", "must be set, e.g. ferry-provisioner")
		}
		if le.RetryPeriod.Duration <= 0 || le.RenewDeadline.Duration <= le.RetryPeriod.Duration ||
			le.LeaseDuration.Duration <= le.RenewDeadline.Duration {
			add("leaderElection", "needs leaseDuration > renewDeadline > retryPeriod > 0 (defaults 15s, 10s, 2s)")
		}
	}
	if len(a.Templates) == 0 {
		add("templates", "at least one agent template is needed when agents are enabled")
	} else if _, err := eci.Resolve(a.Templates); err != nil {
		add("templates", "%v", err)
	}
	return errs
}

// Warnings lists what is valid but probably not meant (an agent template
// whose containers ECI rounds up to a dearer spec, say), for check-config
// and start-up to print. It assumes a validated configuration.
func (c Config) Warnings() []string {
	if !c.Agents.Enabled {
		return c.UI.warnings()
	}
	templates, err := eci.Resolve(c.Agents.Templates)
	if err != nil {
		return nil
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(templates)) {
		out = append(out, templates[name].Warnings()...)
	}
	return append(out, c.UI.warnings()...)
}
