package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

var (
	objectName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	envName    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// repoRef is a repository reference without tag or digest:
	// [host[:port]/]path, lower-case path components.
	repoRef = regexp.MustCompile(`^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)
)

// TagVars are the placeholders usable in promotion.apps[].tags.
var TagVars = []string{"version", "commit", "short_commit", "id"}

func (p *Promotion) applyDefaults() {
	for i := range p.Apps {
		if a := &p.Apps[i]; a.Provider == "gitlab" && a.Ref == "" {
			a.Ref = "main"
		}
		for j := range p.Apps[i].Environments {
			e := &p.Apps[i].Environments[j]
			if e.RolloutTimeout.Duration == 0 {
				e.RolloutTimeout = Duration{Duration: 5 * time.Minute}
			}
			h := &e.Verify.HTTP
			if h.URL != "" {
				if h.Successes == 0 {
					h.Successes = 3
				}
				if h.Interval.Duration == 0 {
					h.Interval = Duration{Duration: 2 * time.Second}
				}
				if h.FailureThreshold == 0 {
					h.FailureThreshold = 3
				}
				if h.Timeout.Duration == 0 {
					h.Timeout = Duration{Duration: 2 * time.Minute}
				}
			}
			if e.Verify.Job.Template != nil && e.Verify.Job.Timeout.Duration == 0 {
				e.Verify.Job.Timeout = Duration{Duration: 10 * time.Minute}
			}
			e.Canary.applyDefaults()
		}
	}
}

// App returns the promotion app named name.
func (p Promotion) App(name string) (PromotionApp, bool) {
	for _, a := range p.Apps {
		if a.Name == name {
			return a, true
		}
	}
	return PromotionApp{}, false
}

func (p Promotion) validate() []error {
	if !p.Enabled {
		return nil
	}
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("promotion.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if p.APIToken == "" && p.APITokenFile == "" && len(p.Auth.Tokens) == 0 && !p.Auth.Kubernetes.Enabled {
		add("apiTokenFile", "must be set when promotion is enabled (or auth.tokens or auth.kubernetes): the API refuses every request without a credential (or set FERRY_PROMOTION_API_TOKEN)")
	}
	if p.IdempotencyTTL.Duration < time.Minute {
		add("idempotencyTTL", "must be at least 1m (default 24h): a retried create within it returns the first promotion")
	}
	errs = append(errs, p.Auth.validate()...)
	if p.APIToken != "" && p.APITokenFile != "" {
		add("apiToken", "set apiToken or apiTokenFile, not both")
	}
	if p.Resync.Duration <= 0 {
		add("resync", "must be a positive duration such as 2s")
	}
	if le := p.LeaderElection; le.Enabled {
		if le.LeaseName == "" {
			add("leaderElection.leaseName", "must be set, e.g. ferry-promoter")
		}
		if p.LeaseNamespace == "" {
			add("leaseNamespace", "must be set with leader election, e.g. ferry")
		}
		if le.RetryPeriod.Duration <= 0 || le.RenewDeadline.Duration <= le.RetryPeriod.Duration ||
			le.LeaseDuration.Duration <= le.RenewDeadline.Duration {
			add("leaderElection", "needs leaseDuration > renewDeadline > retryPeriod > 0 (defaults 15s, 10s, 2s)")
		}
	}
	if len(p.Apps) == 0 {
		add("apps", "at least one app is needed when promotion is enabled")
	}
	seen := map[string]bool{}
	for i, a := range p.Apps {
		f := fmt.Sprintf("apps[%d]", i)
		switch {
		case !pipelineName.MatchString(a.Name):
			add(f+".name", "%q must be lower-case letters, digits, '.', '_' or '-' (at most 63)", a.Name)
		case seen[a.Name]:
			add(f+".name", "%q is used by another app; names must be unique", a.Name)
		}
		seen[a.Name] = true
		for k, v := range map[string]string{"source": a.Source, "target": a.Target} {
			if !repoRef.MatchString(v) {
				add(f+"."+k, "%q must be a repository without tag or digest, e.g. registry.example.com/team/app", v)
			}
		}
		for j, t := range a.Tags {
			if err := checkVars(t, TagVars); err != nil {
				add(fmt.Sprintf("%s.tags[%d]", f, j), "%v", err)
			}
		}
		if len(a.Environments) == 0 {
			add(f+".environments", "list at least one environment, e.g. test then production")
		}
		envs := map[string]bool{}
		for j, e := range a.Environments {
			errs = append(errs, e.validate(fmt.Sprintf("promotion.%s.environments[%d]", f, j), envs)...)
		}
	}
	return errs
}

// PromotionVerbs are the verbs a PromotionRole may grant (and the verbs of
// the SubjectAccessReviews of auth.kubernetes).
var PromotionVerbs = []string{"create", "get", "approve", "reject", "rollback"}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (a PromotionAuth) validate() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("promotion.auth.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if a.Kubernetes.Enabled && !dnsSubdomain.MatchString(a.Kubernetes.Group) {
		add("kubernetes.group", "%q must be an API group name such as ferry.dev", a.Kubernetes.Group)
	}
	names, hashes := map[string]bool{}, map[string]bool{}
	for i, t := range a.Tokens {
		f := fmt.Sprintf("tokens[%d]", i)
		switch {
		case strings.TrimSpace(t.Name) == "" || strings.ContainsAny(t.Name, "\n\r\t"):
			add(f+".name", "must name the token's holder (recorded in the audit trail)")
		case strings.HasPrefix(t.Name, "system:"):
			add(f+".name", "%q must not start with system: (reserved for Kubernetes identities)", t.Name)
		case names[t.Name]:
			add(f+".name", "%q is used by another token", t.Name)
		}
		names[t.Name] = true
		switch {
		case !sha256Hex.MatchString(t.SHA256):
			add(f+".sha256", "must be the lower-case hex SHA-256 of the token (printf %%s \"$TOKEN\" | sha256sum), not the token")
		case hashes[t.SHA256]:
			add(f+".sha256", "is the hash of another token too; each holder needs an own token")
		}
		hashes[t.SHA256] = true
		if len(t.Roles) == 0 {
			add(f+".roles", "list at least one role (apps, environments, verbs)")
		}
		for j, r := range t.Roles {
			rf := fmt.Sprintf("%s.roles[%d]", f, j)
			if len(r.Apps) == 0 || len(r.Environments) == 0 || len(r.Verbs) == 0 {
				add(rf, "needs apps, environments and verbs (\"*\" for all apps or environments)")
			}
			for _, v := range r.Verbs {
				if !slices.Contains(PromotionVerbs, v) {
					add(rf+".verbs", "%q is not a verb: use %s", v, strings.Join(PromotionVerbs, ", "))
				}
			}
		}
	}
	return errs
}

var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)

// ghRepo is a GitHub owner/name.
var ghRepo = regexp.MustCompile(`^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$`)

// validateReporting checks the deployment reporting of each app: a known
// provider whose token is configured, and a repository in its form.
func (p Promotion) validateReporting(githubToken, gitlabToken bool) []error {
	if !p.Enabled {
		return nil
	}
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("promotion.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	for i, a := range p.Apps {
		f := fmt.Sprintf("apps[%d]", i)
		if a.Provider == "" {
			if a.Repo != "" || a.ProjectID != 0 {
				add(f+".provider", "must be github or gitlab when repo or projectID is set (deployments are reported there)")
			}
			continue
		}
		switch a.Provider {
		case "github":
			if !githubToken {
				add(f+".provider", "github needs github.token or github.tokenFile (a token allowed to write deployments)")
			}
			if !ghRepo.MatchString(a.Repo) {
				add(f+".repo", "%q must be the GitHub repository as owner/name, e.g. acme/web", a.Repo)
			}
			if a.ProjectID != 0 {
				add(f+".projectID", "is GitLab's; remove it for github")
			}
		case "gitlab":
			if !gitlabToken {
				add(f+".provider", "gitlab needs gitlab.token or gitlab.tokenFile (a token with the api scope)")
			}
			if a.ProjectID < 0 || (a.ProjectID == 0 && (a.Repo == "" || strings.HasPrefix(a.Repo, "/") || strings.HasSuffix(a.Repo, "/") || !strings.Contains(a.Repo, "/"))) {
				add(f+".repo", "%q must be the GitLab project path, e.g. group/web, or set projectID", a.Repo)
			}
		default:
			add(f+".provider", "%q is not a provider: use github or gitlab", a.Provider)
		}
	}
	return errs
}

func (e PromotionEnvironment) validate(field string, seen map[string]bool) []error {
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, args...)))
	}
	switch {
	case !envName.MatchString(e.Name):
		add("name", "%q must be lower-case letters, digits or '-', e.g. test or production", e.Name)
	case seen[e.Name]:
		add("name", "%q is listed twice; environment names must be unique within an app", e.Name)
	}
	seen[e.Name] = true
	if e.Namespace == "" {
		add("namespace", "must name the namespace holding the Deployments")
	}
	switch {
	case len(e.Deployments) == 0 && len(e.KnativeServices) == 0:
		add("deployments", "list at least one Deployment to roll (or knativeServices)")
	case len(e.Deployments) > 0 && len(e.KnativeServices) > 0:
		add("knativeServices", "set deployments or knativeServices, not both: an environment is rolled one way")
	}
	if len(e.Deployments)+len(e.KnativeServices) > 1 && e.Container == "" {
		add("container", "must be set when several Deployments or Services are rolled, so the same container is changed in each")
	}
	for i, n := range e.Deployments {
		if !objectName.MatchString(n) || len(n) > 253-len("-canary") {
			add(fmt.Sprintf("deployments[%d]", i), "%q is not a Deployment name (lower-case letters, digits, '-' and '.', at most 246 so <name>-canary fits)", n)
		}
	}
	for i, n := range e.KnativeServices {
		if !envName.MatchString(n) {
			add(fmt.Sprintf("knativeServices[%d]", i), "%q is not a Knative Service name (lower-case letters, digits and '-', at most 63)", n)
		}
	}
	errs = append(errs, e.Canary.validate(field)...)
	if e.URL != "" {
		if err := checkURL(e.URL); err != nil {
			add("url", "%v", err)
		}
	}
	if e.RolloutTimeout.Duration <= 0 {
		add("rolloutTimeout", "must be a positive duration such as 5m")
	}
	if h := e.Verify.HTTP; h.URL != "" {
		if err := checkURL(h.URL); err != nil {
			add("verify.http.url", "%v", err)
		}
		if h.Successes < 1 || h.FailureThreshold < 1 {
			add("verify.http", "successes and failureThreshold must be at least 1")
		}
		if h.Interval.Duration <= 0 || h.Timeout.Duration <= 0 {
			add("verify.http", "interval and timeout must be positive durations such as 2s and 2m")
		}
	}
	if j := e.Verify.Job; j.Template != nil {
		if len(j.Template.Template.Spec.Containers) == 0 {
			add("verify.job.template", "needs template.spec.containers: the Job's pod")
		}
		if j.Timeout.Duration <= 0 {
			add("verify.job.timeout", "must be a positive duration such as 10m")
		}
	}
	if e.Verify.Soak.Duration < 0 {
		add("verify.soak", "must not be negative")
	}
	return errs
}

func checkVars(v string, names []string) error {
	for _, m := range templateVar.FindAllStringSubmatch(v, -1) {
		ok := false
		for _, n := range names {
			ok = ok || n == m[1]
		}
		if !ok {
			return fmt.Errorf("unknown placeholder {{%s}}: use one of %s", m[1], strings.Join(names, ", "))
		}
	}
	return nil
}
