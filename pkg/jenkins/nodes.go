package jenkins

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

// NodeMode says which builds Jenkins may run on a node.
type NodeMode string

const (
	// ModeExclusive: only builds whose label expression matches the node
	// (Jenkins' "Only build jobs with label expressions matching this
	// node"). The default: an ephemeral agent made for one queue item must
	// not be taken by a label-less build.
	ModeExclusive NodeMode = "EXCLUSIVE"
	// ModeNormal: any build that fits.
	ModeNormal NodeMode = "NORMAL"
)

// DefaultRemoteFS is the agent work directory of the jenkins/inbound-agent
// image.
const DefaultRemoteFS = "/home/jenkins/agent"

// NodeSpec describes a permanent inbound (JNLP/WebSocket) agent node.
type NodeSpec struct {
	Name        string
	Description string
	Labels      []string
	// RemoteFS defaults to DefaultRemoteFS.
	RemoteFS string
	// NumExecutors defaults to 1.
	NumExecutors int
	// Mode defaults to ModeExclusive.
	Mode NodeMode
	// WebSocket makes the agent connect over HTTP(S) WebSocket instead of
	// the TCP agent port: all a serverless pod can usually reach.
	WebSocket bool
}

// createNodeForm renders the form ComputerSet.doCreateItem reads.
func createNodeForm(spec NodeSpec) (url.Values, error) {
	if spec.Name == "" {
		return nil, errors.New("jenkins: node name is required")
	}
	if spec.RemoteFS == "" {
		spec.RemoteFS = DefaultRemoteFS
	}
	if spec.NumExecutors <= 0 {
		spec.NumExecutors = 1
	}
	switch spec.Mode {
	case "":
		spec.Mode = ModeExclusive
	case ModeExclusive, ModeNormal:
	default:
		return nil, fmt.Errorf("jenkins: invalid node mode %q", spec.Mode)
	}
	for _, l := range spec.Labels {
		if l == "" || strings.ContainsAny(l, " \t\n") {
			return nil, fmt.Errorf("jenkins: invalid node label %q", l)
		}
	}
	const nodeType = "hudson.slaves.DumbSlave"
	// stapler-class is what Stapler binds by; $class is its newer spelling.
	body, err := json.Marshal(map[string]any{
		"name":            spec.Name,
		"nodeDescription": spec.Description,
		"numExecutors":    spec.NumExecutors,
		"remoteFS":        spec.RemoteFS,
		"labelString":     strings.Join(spec.Labels, " "),
		"mode":            string(spec.Mode),
		"type":            nodeType,
		"retentionStrategy": map[string]any{
			"stapler-class": "hudson.slaves.RetentionStrategy$Always",
			"$class":        "hudson.slaves.RetentionStrategy$Always",
		},
		"nodeProperties": map[string]any{"stapler-class-bag": "true"},
		"launcher": map[string]any{
			"stapler-class": "hudson.slaves.JNLPLauncher",
			"$class":        "hudson.slaves.JNLPLauncher",
			"webSocket":     spec.WebSocket,
		},
	})
	if err != nil {
		return nil, err
	}
	return url.Values{"name": {spec.Name}, "type": {nodeType}, "json": {string(body)}}, nil
}

// CreateNode creates a permanent agent node with a JNLP launcher (POST
// /computer/doCreateItem). Jenkins answers a redirect to the node list,
// which is success (not followed). A node of that name already existing
// gives ErrExists.
//
// Jenkins answers a taken name with a 400 (a hudson.model.Failure) worded
// in the request's language — "Agent called ‘NAME’ already exists", "代理
// ‘NAME’ 已经存在" — and uses 400 for other refusals too (an unsafe name,
// a bad form), so a 400 is told apart by looking the node up, not by its
// words.
//
// Direct REST: gojenkins' CreateNode always sends mode NORMAL, misspells
// retentionStrategy (so Jenkins falls back to its default), cannot set the
// WebSocket flag, follows the redirect into an HTML page, and then polls
// the node.
func (c *Client) CreateNode(ctx context.Context, spec NodeSpec) error {
	err := c.call(ctx, "create_node", []attribute.KeyValue{attrNode.String(spec.Name)}, func(ctx context.Context) error {
		if _, err := nodePath(spec.Name); err != nil {
			return err
		}
		form, err := createNodeForm(spec)
		if err != nil {
			return err
		}
		r := request{method: http.MethodPost, path: "/computer/doCreateItem", form: form}
		_, err = c.do(ctx, r)
		var he *HTTPError
		if !errors.As(err, &he) {
			return err
		}
		switch he.Status {
		case http.StatusConflict:
			he.kind = ErrExists
		case http.StatusBadRequest:
			return c.createRefused(ctx, spec.Name, he)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create node %s: %w", spec.Name, err)
	}
	return nil
}

// createRefused classifies a 400 from doCreateItem: ErrExists if a node of
// that name exists now. If the lookup fails, both errors are returned, so
// a lookup that may succeed later leaves the creation retryable.
func (c *Client) createRefused(ctx context.Context, name string, refused *HTTPError) error {
	p, err := nodePath(name)
	if err != nil {
		return refused
	}
	var v struct {
		DisplayName string `json:"displayName"`
	}
	err = c.getJSON(ctx, p+"/api/json", url.Values{"tree": {"displayName"}}, &v)
	switch {
	case err == nil:
		refused.kind = ErrExists
		return refused
	case errors.Is(err, ErrNotFound):
		return refused
	}
	return fmt.Errorf("%w; could not tell whether the node exists: %w", refused, err)
}

// NodeSecret returns the secret an inbound agent connects with: the first
// <application-desc><argument> of /computer/NAME/jenkins-agent.jnlp,
// falling back to the older alias slave-agent.jnlp on 404. The secret is
// an HMAC of the node name, stable for a name. It is never logged.
//
// Direct REST: gojenkins has no JNLP file call.
func (c *Client) NodeSecret(ctx context.Context, name string) (string, error) {
	var secret string
	err := c.call(ctx, "node_secret", []attribute.KeyValue{attrNode.String(name)}, func(ctx context.Context) error {
		p, err := nodePath(name)
		if err != nil {
			return err
		}
		var resp *response
		var file string
		for _, file = range []string{"/jenkins-agent.jnlp", "/slave-agent.jnlp"} {
			resp, err = c.do(ctx, request{method: http.MethodGet, path: p + file})
			if !errors.Is(err, ErrNotFound) {
				break
			}
		}
		if err != nil {
			return err
		}
		var doc struct {
			Args []string `xml:"application-desc>argument"`
		}
		if err := xml.Unmarshal(resp.body, &doc); err != nil || len(doc.Args) == 0 ||
			strings.TrimSpace(doc.Args[0]) == "" || strings.HasPrefix(doc.Args[0], "-") {
			return &HTTPError{Method: http.MethodGet, Path: p + file, Status: resp.status,
				Body: "answer is not a JNLP file with the agent secret"}
		}
		secret = strings.TrimSpace(doc.Args[0])
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read secret of node %s: %w", name, err)
	}
	return secret, nil
}

// DeleteNode deletes a node (POST /computer/NAME/doDelete; Jenkins answers
// a redirect). A build running on it is aborted. An unknown node gives
// ErrNotFound, which callers cleaning up treat as done.
//
// Direct REST: gojenkins' Node.Delete fetches a crumb per POST (panicking
// on network failures) and reports only "status == 200", which Jenkins'
// redirect never is once not followed.
func (c *Client) DeleteNode(ctx context.Context, name string) error {
	err := c.call(ctx, "delete_node", []attribute.KeyValue{attrNode.String(name)}, func(ctx context.Context) error {
		p, err := nodePath(name)
		if err != nil {
			return err
		}
		_, err = c.do(ctx, request{method: http.MethodPost, path: p + "/doDelete"})
		return err
	})
	if err != nil {
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	return nil
}

// MarkOffline takes a node temporarily offline with reason as its offline
// message (POST /computer/NAME/changeOfflineCause?offlineMessage=REASON;
// Jenkins answers a redirect). Jenkins then offers the node no new build
// (Queue.JobOffer.isAvailable) while a build already running on it keeps
// running and the agent stays connected. It needs Computer.DISCONNECT.
// An unknown node gives ErrNotFound.
//
// It is idempotent: changeOfflineCause sets the node offline whatever its
// state, so a repeated or concurrent call cannot bring the node back
// online, which a second toggleOffline (the UI's button, a toggle) would.
// Every Jenkins 2 core has both actions.
//
// Direct REST: gojenkins has no offline call.
func (c *Client) MarkOffline(ctx context.Context, name, reason string) error {
	err := c.call(ctx, "mark_offline", []attribute.KeyValue{attrNode.String(name)}, func(ctx context.Context) error {
		p, err := nodePath(name)
		if err != nil {
			return err
		}
		_, err = c.do(ctx, request{method: http.MethodPost, path: p + "/changeOfflineCause",
			form: url.Values{"offlineMessage": {reason}}})
		return err
	})
	if err != nil {
		return fmt.Errorf("mark node %s offline: %w", name, err)
	}
	return nil
}

// Computer is one node as the controller sees it.
type Computer struct {
	// Name is the node name ("Built-In Node" for the controller).
	Name string
	// Description is the node's description.
	Description string
	// Offline: Jenkins gives it no build, because no agent is connected or
	// because it is temporarily offline (or both).
	Offline bool
	// TemporarilyOffline: taken offline by MarkOffline or an operator; a
	// build running on it goes on.
	TemporarilyOffline bool
	// RemotePath is the agent's absolute work directory while an agent is
	// connected, "" otherwise (absoluteRemotePath, Jenkins ≥ 2.125; shown
	// only to callers with Computer.CONNECT, which DISCONNECT implies).
	RemotePath   string
	Idle         bool
	NumExecutors int
	// Labels are the assigned labels, the node's own name included.
	Labels []string
	// Running lists the builds on its executors.
	Running []Executable
	// OfflineReason is the operator's or Jenkins' reason, if any: for a
	// node taken offline by MarkOffline, its reason — as Jenkins renders it,
	// which is not always the bare message (see OfflineWith).
	OfflineReason string
}

// OfflineWith reports whether the node is temporarily offline with msg as
// its offline message, as MarkOffline(name, msg) leaves it.
//
// It looks for msg inside OfflineReason rather than comparing: Jenkins
// derives offlineCauseReason from the localized "Disconnected by {0}{1}"
// ({1} being " : " + message) by stripping the sentence's fixed words with
// a regular expression anchored at its start, which only works in
// languages where the sentence starts with them. In zh_CN ("被 USER :
// MSG断开连接"), ja and zh_TW the whole sentence comes back. Cores since
// 2.483 also HTML-escape it, so msg's escaped form counts too. Choose a
// msg no operator would type.
func (cp Computer) OfflineWith(msg string) bool {
	if msg == "" || !cp.TemporarilyOffline {
		return false
	}
	return strings.Contains(cp.OfflineReason, msg) || strings.Contains(cp.OfflineReason, jenkinsEscape(msg))
}

// jenkinsEscape is hudson.Util.escape: HTML special characters as entities,
// newlines as <br>, and every space but the last of a run as &nbsp;.
func jenkinsEscape(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch r {
		case '\n':
			b.WriteString("<br>")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&#039;")
		case ' ':
			if i+1 < len(s) && s[i+1] == ' ' {
				b.WriteString("&nbsp;")
			} else {
				b.WriteByte(' ')
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Connected reports whether an agent is connected to the node, whether or
// not it is temporarily offline: an online node has one; a temporarily
// offline one has one if Jenkins shows its remote path.
func (cp Computer) Connected() bool {
	return !cp.Offline || cp.TemporarilyOffline && cp.RemotePath != ""
}

const computersTree = "computer[displayName,description,offline,temporarilyOffline,absoluteRemotePath,idle,numExecutors,offlineCauseReason," +
	"executors[currentExecutable[url,number]],assignedLabels[name]]"

// Computers lists every node in one call (GET /computer/api/json with a
// tree filter).
//
// Direct REST: gojenkins' GetAllNodes fetches depth=1 without a tree
// (every monitor of every node) and has no assigned labels.
func (c *Client) Computers(ctx context.Context) ([]Computer, error) {
	var out []Computer
	err := c.call(ctx, "computers", nil, func(ctx context.Context) error {
		var v struct {
			Computer []struct {
				DisplayName        string `json:"displayName"`
				Description        string `json:"description"`
				Offline            bool   `json:"offline"`
				TemporarilyOffline bool   `json:"temporarilyOffline"`
				AbsoluteRemotePath string `json:"absoluteRemotePath"`
				Idle               bool   `json:"idle"`
				NumExecutors       int    `json:"numExecutors"`
				OfflineCauseReason string `json:"offlineCauseReason"`
				Executors          []struct {
					CurrentExecutable *executable `json:"currentExecutable"`
				} `json:"executors"`
				AssignedLabels []struct {
					Name string `json:"name"`
				} `json:"assignedLabels"`
			} `json:"computer"`
		}
		if err := c.getJSON(ctx, "/computer/api/json", url.Values{"tree": {computersTree}}, &v); err != nil {
			return err
		}
		out = make([]Computer, 0, len(v.Computer))
		for _, j := range v.Computer {
			cp := Computer{
				Name:               j.DisplayName,
				Description:        j.Description,
				Offline:            j.Offline,
				TemporarilyOffline: j.TemporarilyOffline,
				RemotePath:         j.AbsoluteRemotePath,
				Idle:               j.Idle,
				NumExecutors:       j.NumExecutors,
				OfflineReason:      j.OfflineCauseReason,
			}
			for _, l := range j.AssignedLabels {
				cp.Labels = append(cp.Labels, l.Name)
			}
			for _, e := range j.Executors {
				if e.CurrentExecutable != nil {
					cp.Running = append(cp.Running, Executable{Number: e.CurrentExecutable.Number, URL: e.CurrentExecutable.URL})
				}
			}
			out = append(out, cp)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list computers: %w", err)
	}
	return out, nil
}
