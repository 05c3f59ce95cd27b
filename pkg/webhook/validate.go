package webhook

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/ferryci/ferry/pkg/event"
)

// What a verified event must look like before it is stored. These values
// become Jenkins build parameters that a Jenkinsfile hands to git, so a
// valid signature is not enough: the sender (or whoever holds the secret)
// chooses them.
const (
	// maxRefBytes bounds a ref. Git itself sets no limit, but GitHub and
	// GitLab refuse names over 255 bytes per component, and no sane
	// branch comes near this.
	maxRefBytes = 1024
	// maxRepoBytes bounds a repository path (GitLab namespaces nest).
	maxRepoBytes = 1024
	// maxURLBytes bounds a clone URL.
	maxURLBytes = 2048
)

// origin is a provider's own Git host: where its clone URLs point.
type origin struct {
	scheme string // of the configured URL: https, or http for a plain-http instance
	host   string // lower-case host name, without port
	port   string // of the configured URL, explicit or the scheme's default
	path   string // path prefix of http(s) clone URLs (GitLab's relative URL root), no trailing slash
	from   string // the setting it comes from, for error messages
}

// gitHubOrigin derives GitHub's Git host from its API root: github.com for
// api.github.com or an empty URL, the API's host for GitHub Enterprise
// Server (https://ghe.example.com/api/v3/), and the host without "api."
// for GHE.com (https://api.acme.ghe.com/).
func gitHubOrigin(apiURL string) (origin, error) {
	if apiURL == "" {
		return origin{scheme: "https", host: "github.com", port: "443", from: "github.apiURL"}, nil
	}
	o, err := parseOrigin(apiURL, "github.apiURL")
	if err != nil {
		return origin{}, fmt.Errorf("GitHub API URL: %w", err)
	}
	if o.path == "" || o.path == "/" {
		o.host = strings.TrimPrefix(o.host, "api.")
	}
	o.path = ""
	return o, nil
}

// gitLabOrigin derives GitLab's Git host from the instance URL (empty:
// https://gitlab.com); a relative URL root such as /gitlab is kept, since
// HTTP clone URLs carry it.
func gitLabOrigin(baseURL string) (origin, error) {
	if baseURL == "" {
		baseURL = "https://gitlab.com"
	}
	o, err := parseOrigin(baseURL, "gitlab.baseURL")
	if err != nil {
		return origin{}, fmt.Errorf("GitLab base URL: %w", err)
	}
	return o, nil
}

func parseOrigin(raw, from string) (origin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return origin{}, err
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "https" && scheme != "http") || u.Hostname() == "" {
		return origin{}, fmt.Errorf("%q is not an http(s) URL with a host", raw)
	}
	return origin{scheme: scheme, host: strings.ToLower(u.Hostname()), port: portOf(u),
		path: strings.TrimSuffix(u.Path, "/"), from: from}, nil
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "http") {
		return "80"
	}
	return "443"
}

// cloneURL is the https (or http) clone URL of repo on this host, as the
// answer's example of a right one.
func (o origin) cloneURL(repo string) string {
	host := o.host
	if (o.scheme == "https" && o.port != "443") || (o.scheme == "http" && o.port != "80") {
		host = net.JoinHostPort(o.host, o.port)
	}
	return o.scheme + "://" + host + o.path + "/" + repo + ".git"
}

// checkEvent checks the values of a verified event that reach Jenkins and
// normalizes commit ids to lower case. urlRepo is the repository the
// clone URL must name (a fork for a pull request from one), ev.Repo if
// empty. It returns the problems found, each saying what would be right.
func checkEvent(ev *event.Event, home origin, urlRepo string) []string {
	var bad []string
	add := func(err error) {
		if err != nil {
			bad = append(bad, err.Error())
		}
	}
	var err error
	if ev.SHA != "" || ev.Kind != event.Comment { // a GitHub comment names no commit
		ev.SHA, err = checkSHA("sha", ev.SHA)
		add(err)
	}
	if isZeroSHA(ev.SHA) {
		add(fmt.Errorf("sha %s names no commit: the all-zero id stands for a deleted ref", ev.SHA))
	}
	// "before" is all zeros for a new ref.
	if ev.Before != "" {
		ev.Before, err = checkSHA("before", ev.Before)
		add(err)
	}
	add(checkRef("ref", ev.Ref))
	if ev.BaseRef != "" {
		add(checkRef("base branch", "refs/heads/"+ev.BaseRef))
	}
	repoErr := checkRepo("repository", ev.Repo)
	add(repoErr)
	if urlRepo == "" {
		urlRepo = ev.Repo
	} else if repoErr == nil && urlRepo != ev.Repo {
		repoErr = checkRepo("source repository", urlRepo)
		add(repoErr)
	}
	// No clone URL is no change: the Jenkinsfile falls back to its own.
	if ev.RepoURL != "" && repoErr == nil {
		add(home.checkCloneURL(ev.RepoURL, urlRepo))
	}
	return bad
}

// checkSHA accepts a full commit id, 40 (SHA-1) or 64 (SHA-256)
// hexadecimal digits, and returns it in lower case, as git prints it.
func checkSHA(field, s string) (string, error) {
	ok := len(s) == 40 || len(s) == 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
	}
	if !ok {
		return s, fmt.Errorf("%s %q (%d bytes) is not a commit id: want 40 or 64 hexadecimal digits", field, printable(s), len(s))
	}
	return strings.ToLower(s), nil
}

// checkRef applies git's rules for ref names (git check-ref-format) and
// maxRefBytes. Git allows characters a shell treats specially (; $ ` and
// more), so a Jenkinsfile must still quote the value.
func checkRef(field, ref string) error {
	if len(ref) > maxRefBytes {
		return fmt.Errorf("%s %q is %d bytes long; at most %d are accepted", field, printable(ref), len(ref), maxRefBytes)
	}
	if why := refNameProblem(ref); why != "" {
		return fmt.Errorf("%s %q is not a valid git ref name: %s (see git check-ref-format)", field, printable(ref), why)
	}
	return nil
}

// refNameProblem says why git would refuse ref as a ref name, "" if it
// would not.
func refNameProblem(ref string) string {
	for _, c := range []byte(ref) {
		switch {
		case c < 0x20 || c == 0x7f:
			return "it contains a control character"
		case c == ' ':
			return "it contains a space"
		case strings.IndexByte(`~^:?*[\`, c) >= 0:
			return fmt.Sprintf("it contains %q", c)
		}
	}
	switch {
	case ref == "":
		return "it is empty"
	case ref == "@":
		return `it is "@"`
	case strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/"):
		return `it begins or ends with "/"`
	case strings.HasSuffix(ref, "."):
		return `it ends with "."`
	case strings.Contains(ref, ".."):
		return `it contains ".."`
	case strings.Contains(ref, "@{"):
		return `it contains "@{"`
	case strings.Contains(ref, "//"):
		return `it contains "//"`
	}
	for _, part := range strings.Split(ref, "/") {
		if strings.HasPrefix(part, ".") {
			return fmt.Sprintf("its component %q begins with \".\"", printable(part))
		}
		if strings.HasSuffix(part, ".lock") {
			return fmt.Sprintf("its component %q ends with \".lock\"", printable(part))
		}
	}
	return ""
}

// checkRepo accepts a repository path as GitHub (owner/name) and GitLab
// (group/…/project) spell them: two or more segments of letters, digits,
// ".", "_" and "-".
func checkRepo(field, repo string) error {
	bad := func(why string) error {
		return fmt.Errorf("%s %q is not a repository path: %s; want owner/name or group/subgroup/project", field, printable(repo), why)
	}
	if len(repo) > maxRepoBytes {
		return bad(fmt.Sprintf("it is %d bytes long; at most %d are accepted", len(repo), maxRepoBytes))
	}
	parts := strings.Split(repo, "/")
	if len(parts) < 2 {
		return bad(`it has no "/"`)
	}
	for _, p := range parts {
		if p == "." || p == ".." || !plainName(p) {
			return bad(fmt.Sprintf("segment %q is not made of letters, digits, \".\", \"_\" and \"-\"", printable(p)))
		}
	}
	return nil
}

// plainName reports whether s is a non-empty run of letters, digits, ".",
// "_" and "-".
func plainName(s string) bool {
	for _, c := range []byte(s) {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (c < '0' || c > '9') && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return s != ""
}

// withoutUserinfo hides an http(s) URL's user and password (a token
// pasted into a clone URL), so the answer and the log never repeat them.
func withoutUserinfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || (u.Scheme != "https" && u.Scheme != "http") {
		return raw
	}
	u.User = url.User("REDACTED")
	return u.String()
}

// checkCloneURL accepts an https URL (http only if the provider's own URL
// is http), an ssh:// URL or an scp-like user@host:path, on the provider's
// host, naming repo (with or without .git). Everything else git can fetch
// from (file://, ext::, local paths, other hosts) is refused.
func (o origin) checkCloneURL(raw, repo string) error {
	bad := func(why string) error {
		return fmt.Errorf("clone URL %q is refused: %s; want %s (or ssh to %s) for repository %s",
			printable(withoutUserinfo(raw)), why, o.cloneURL(repo), o.host, repo)
	}
	if len(raw) > maxURLBytes {
		return bad(fmt.Sprintf("it is %d bytes long; at most %d are accepted", len(raw), maxURLBytes))
	}
	if strings.Contains(raw, "::") {
		return bad("git reads <transport>::<address> as a remote helper, which can run commands")
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return bad("it contains a space or a control character")
	}
	if strings.Contains(raw, "%") {
		return bad("it is percent-encoded")
	}
	var path string
	var err error
	if strings.Contains(raw, "://") {
		path, err = o.urlPath(raw)
	} else {
		path, err = o.scpPath(raw)
	}
	if err != nil {
		return bad(err.Error())
	}
	if named := strings.TrimSuffix(path, ".git"); !strings.EqualFold(named, repo) {
		return bad(fmt.Sprintf("it names repository %q, not %s", printable(named), repo))
	}
	return nil
}

// isZeroSHA reports whether s is the all-zero id with which a push says
// its ref was deleted (or created, for "before").
func isZeroSHA(s string) bool {
	return (len(s) == 40 || len(s) == 64) && strings.Trim(s, "0") == ""
}

// urlPath checks a scheme://host/path URL and returns the path that must
// name the repository.
func (o origin) urlPath(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("it does not parse")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https", scheme == "ssh", scheme == "http" && o.scheme == "http":
	case scheme == "http":
		return "", errors.New("plain http is accepted only when the provider's own URL is http")
	default:
		return "", fmt.Errorf("scheme %q is neither https nor ssh", printable(scheme))
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", errors.New("it has a query or a fragment")
	}
	if err := o.checkHost(u.Hostname()); err != nil {
		return "", err
	}
	if scheme == "ssh" {
		if _, hasPassword := u.User.Password(); hasPassword {
			return "", errors.New("it carries credentials")
		}
		return strings.TrimPrefix(u.Path, "/"), nil
	}
	if u.User != nil {
		return "", errors.New("it carries credentials")
	}
	if portOf(u) != o.port {
		return "", fmt.Errorf("port %s is not %s", portOf(u), o.port)
	}
	path, ok := strings.CutPrefix(u.Path, o.path+"/")
	if !ok {
		return "", fmt.Errorf("its path is not under %s/", o.path)
	}
	return path, nil
}

// scpPath checks an scp-like [user@]host:path and returns the path. Git
// reads a "/" before the first ":" as a local path.
func (o origin) scpPath(raw string) (string, error) {
	host, path, ok := strings.Cut(raw, ":")
	if !ok || strings.Contains(host, "/") {
		return "", errors.New("it is a local path, not a URL")
	}
	if user, h, ok := strings.Cut(host, "@"); ok {
		if !plainName(user) {
			return "", errors.New("its user name is not plain")
		}
		host = h
	}
	return path, o.checkHost(host)
}

func (o origin) checkHost(host string) error {
	if !strings.EqualFold(host, o.host) {
		return fmt.Errorf("host %q is not %s, the Git host of %s", printable(host), o.host, o.from)
	}
	return nil
}
