package jenkins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TriggerResult is what Jenkins did with a trigger request.
type TriggerResult struct {
	// QueueID is the queue item that will run the build; never 0 on success.
	QueueID int64
	// Merged is true when Jenkins found an identical item (same job, same
	// parameters) already waiting and folded the request into it instead
	// of queueing a new one: QueueID is then that existing item. Only one
	// build will run for both requests.
	Merged bool
}

// Trigger asks Jenkins to build job with params (POST
// /job/A/job/B/buildWithParameters, form-encoded). job may be a folder path
// "a/b". Parameters the job does not define are silently dropped by
// Jenkins; check with MissingParams first.
//
// What Jenkins answers (jenkins.model.ParameterizedJobMixIn
// doBuildWithParameters, hudson.model.ParametersDefinitionProperty
// buildWithParameters, Queue.schedule2):
//
//   - 201 Created, Location …/queue/item/ID/: a new queue item.
//   - 303 See Other, Location …/queue/item/ID/: ScheduleResult.Existing,
//     the request was merged into the identical waiting item ID (since
//     JENKINS-66105, Jenkins 2.308; older cores answered 201 with the
//     existing item's id, which no client can tell apart from a new one).
//   - 302 Found to the job page: nothing was scheduled (a
//     QueueDecisionHandler veto): ErrRefused.
//   - 409 "… is not buildable": the job is disabled: ErrDisabled.
//   - 400 "… is not parameterized" (since 2.524), or before that an
//     IllegalStateException rendered as a 500 "Oops!" page that hides the
//     exception by default: the job declares no parameters:
//     ErrNotParameterized. A 500 counts as that only if its body says so
//     or the job, looked up, has no parameter definitions; any other 500
//     is Jenkins failing (ErrUnavailable).
//
// For cores that answer a merge with 201, the client remembers the queue
// ids its recent triggers got, with their job and parameters: a 201 naming
// an id this client already got for the same job and parameters is
// reported as Merged too. A merge into an item queued by another process
// stays undetectable on those cores.
//
// gojenkins is not used here: its BuildJob first polls the job and returns
// (0, nil) if any build of it is queued, whatever the parameters, then
// fetches a crumb per POST (panicking on a network failure), and follows
// redirects, which turns a merge's 303 into a 200 without Location.
func (c *Client) Trigger(ctx context.Context, job string, params map[string]string) (TriggerResult, error) {
	var res TriggerResult
	err := c.call(ctx, "trigger", []attribute.KeyValue{attrJob.String(job)}, func(ctx context.Context) error {
		p, err := jobPath(job)
		if err != nil {
			return err
		}
		form := url.Values{}
		for k, v := range params {
			form.Set(k, v)
		}
		r := request{method: http.MethodPost, path: p + "/buildWithParameters", form: form}
		resp, err := c.do(ctx, r)
		if err != nil {
			return c.triggerRefused(ctx, job, err)
		}
		loc := resp.header.Get("Location")
		id, ok := parseQueueLocation(loc)
		switch {
		case ok && (resp.status == http.StatusCreated || resp.status == http.StatusOK):
			res = TriggerResult{QueueID: id, Merged: c.triggered.seen(id, p, form)}
		case ok && resp.status == http.StatusSeeOther:
			c.triggered.seen(id, p, form)
			res = TriggerResult{QueueID: id, Merged: true}
		case resp.status >= 300 && resp.status < 400 && loc != "" && !ok:
			e := c.httpError(r, resp.status, resp.header, resp.body)
			if e.kind == nil {
				e.kind = ErrRefused
				e.Body = "redirected to " + redactRawURL(loc) + " instead of a queue item"
			}
			return e
		default:
			return &HTTPError{Method: r.method, Path: r.path, Status: resp.status,
				Body: fmt.Sprintf("no queue item in Location %q", redactRawURL(loc))}
		}
		trace.SpanFromContext(ctx).SetAttributes(attrQueueID.Int64(res.QueueID), attrMerged.Bool(res.Merged))
		return nil
	})
	if err != nil {
		return TriggerResult{}, fmt.Errorf("trigger %s: %w", job, err)
	}
	return res, nil
}

// triggerRefused classifies a failed trigger answer (see Trigger).
func (c *Client) triggerRefused(ctx context.Context, job string, err error) error {
	var he *HTTPError
	if !errors.As(err, &he) {
		return err
	}
	says := strings.Contains(strings.ToLower(he.Body), "not parameterized")
	switch {
	case he.Status == http.StatusConflict:
		he.kind = ErrDisabled
		he.Body = "the job is disabled (Jenkins: " + he.Body + ")"
	case he.Status == http.StatusBadRequest && says,
		he.Status == http.StatusInternalServerError && says:
		he.kind = ErrNotParameterized
		he.Body = "the job declares no parameters, so Jenkins cannot build it with ferry's (Jenkins: " + he.Body + ")"
	case he.Status == http.StatusBadRequest, he.Status == http.StatusInternalServerError:
		j, lerr := c.Job(ctx, job)
		if lerr == nil && len(j.Params) == 0 {
			he.kind = ErrNotParameterized
			he.Body = fmt.Sprintf("the job declares no parameters, so Jenkins cannot build it with ferry's (Jenkins answered %d, as cores before 2.524 do)", he.Status)
		}
	}
	return he
}

// MissingParams returns those of names that job (a folder path "a/b" is
// fine) does not declare as parameters, in the order given: Jenkins drops
// them from a trigger without a word.
func (c *Client) MissingParams(ctx context.Context, job string, names []string) ([]string, error) {
	j, err := c.Job(ctx, job)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, n := range names {
		if !j.HasParam(n) {
			missing = append(missing, n)
		}
	}
	return missing, nil
}

// parseQueueLocation extracts ID from a Location ending in queue/item/ID/
// (absolute or relative, trailing slash optional).
func parseQueueLocation(loc string) (int64, bool) {
	if loc == "" {
		return 0, false
	}
	u, err := url.Parse(loc)
	if err != nil {
		return 0, false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 3 || parts[len(parts)-3] != "queue" || parts[len(parts)-2] != "item" {
		return 0, false
	}
	id, err := strconv.ParseInt(parts[len(parts)-1], 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}

// triggerMemory remembers the queue ids recent triggers got, keyed to a
// fingerprint of their job and parameters, to recognize merges that a core
// reports as creations. It is bounded; the oldest ids are forgotten first.
type triggerMemory struct {
	mu    sync.Mutex
	ids   map[int64][sha256.Size]byte
	order []int64
}

const triggerMemorySize = 4096

// has reports whether id is one of the remembered trigger results.
func (m *triggerMemory) has(id int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.ids[id]
	return ok
}

// seen records id for job path p with form and reports whether the same
// id was recorded before for the same job and parameters.
func (m *triggerMemory) seen(id int64, p string, form url.Values) bool {
	h := sha256.New()
	h.Write([]byte(p))
	h.Write([]byte{0})
	h.Write([]byte(form.Encode())) // sorted by key
	var fp [sha256.Size]byte
	copy(fp[:], h.Sum(nil))

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids == nil {
		m.ids = map[int64][sha256.Size]byte{}
	}
	if old, ok := m.ids[id]; ok {
		m.ids[id] = fp
		return old == fp
	}
	m.ids[id] = fp
	m.order = append(m.order, id)
	if len(m.order) > triggerMemorySize {
		delete(m.ids, m.order[0])
		m.order = m.order[1:]
	}
	return false
}
