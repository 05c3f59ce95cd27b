package jenkins

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

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
// Jenkins; check with Job first. A job without parameters answers 500 on
// this endpoint.
//
// What Jenkins answers (hudson.model.ParametersDefinitionProperty
// buildWithParameters, Queue.schedule2):
//
//   - 201 Created, Location …/queue/item/ID/: a new queue item.
//   - 303 See Other, Location …/queue/item/ID/: ScheduleResult.Existing,
//     the request was merged into the identical waiting item ID (since
//     JENKINS-66105, jenkinsci/jenkins#5615, 2021; older cores answered
//     201 with the existing item's id, which no client can tell apart
//     from a new one).
//   - 302 Found to the job page: nothing was scheduled (ScheduleResult
//     refused: disabled job, or a QueueDecisionHandler veto): ErrRefused.
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
			return err
		}
		loc := resp.header.Get("Location")
		id, ok := parseQueueLocation(loc)
		switch {
		case ok && (resp.status == http.StatusCreated || resp.status == http.StatusOK):
			res = TriggerResult{QueueID: id}
		case ok && resp.status == http.StatusSeeOther:
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
