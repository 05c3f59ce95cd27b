package jenkins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// QueueItem is one Jenkins queue item.
type QueueItem struct {
	ID int64
	// TaskName is the job's short name; TaskURL its absolute URL (use it to
	// tell jobs of the same name in different folders apart).
	TaskName string
	TaskURL  string
	// Why is Jenkins' localized reason for waiting; see WaitingLabel.
	Why          string
	Blocked      bool
	Buildable    bool
	Stuck        bool
	InQueueSince time.Time
	// Params are the build parameters, from actions[].parameters[].
	// Non-string values are rendered as their JSON text (true, 3).
	Params map[string]string
	// Cancelled and Executable are only set by QueueItem for items that
	// left the queue: cancelled, or started as Executable.Number.
	Cancelled  bool
	Executable Executable
}

// Executable is a build a queue item turned into, or that runs on an
// executor. The zero value means none.
type Executable struct {
	Number int64
	URL    string
}

// Started reports whether the item has left the queue as a build.
func (q QueueItem) Started() bool { return q.Executable.Number > 0 }

// The reasons Jenkins gives while a task waits for a node
// (hudson.model.Messages Queue.*, English). Current cores quote the label
// with ‘’; older ones did not quote "executor on {0}", and "{0} is
// offline" is unquoted still. Plain quotes are tolerated for other sources.
const quotedLabel = `(?:‘([^’]+)’|'([^']+)'|"([^"]+)")`

var waitingLabelRes = []*regexp.Regexp{
	regexp.MustCompile(`Waiting for next available executor on ` + quotedLabel),
	regexp.MustCompile(`(?m)Waiting for next available executor on ([^‘'"\s][^\n]*?)\s*$`),
	regexp.MustCompile(`There are no nodes with the label ` + quotedLabel),
	regexp.MustCompile(`All nodes of label ` + quotedLabel + ` are offline`),
	regexp.MustCompile(`(?m)^` + quotedLabel + ` is offline\s*$`),
	regexp.MustCompile(`(?m)^([^‘'"\s][^\n]*?) is offline\s*$`),
	// Older cores: "Jenkins doesn’t have label LABEL", unquoted.
	regexp.MustCompile(`doesn[’']t have label (?:` + quotedLabel + `|([^\s‘'"]+))`),
}

// WaitingLabel returns the label expression the item waits for, or "" if
// Why names none. The queue API has no label field: the label appears only
// in Why, e.g.
//
//	Waiting for next available executor on ‘LABEL’
//	There are no nodes with the label ‘LABEL’
//	All nodes of label ‘LABEL’ are offline
//	NODE is offline
//
// When exactly one node carries the label, Jenkins names that node instead
// (BecauseNodeIsBusy, BecauseNodeIsOffline): the result is then the node's
// name, which is also a label of that node. Without any agent, or while
// the item is in its quiet period, Why names no label at all.
func (q QueueItem) WaitingLabel() string {
	for _, re := range waitingLabelRes {
		m := re.FindStringSubmatch(q.Why)
		for _, g := range m[min(1, len(m)):] {
			if g = strings.TrimSpace(g); g != "" {
				return g
			}
		}
	}
	return ""
}

// The JSON shape of a queue item, limited by the tree= filters below.
type queueItemJSON struct {
	ID   int64 `json:"id"`
	Task struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	} `json:"task"`
	Why          *string       `json:"why"`
	Blocked      bool          `json:"blocked"`
	Buildable    bool          `json:"buildable"`
	Stuck        bool          `json:"stuck"`
	InQueueSince int64         `json:"inQueueSince"`
	Cancelled    bool          `json:"cancelled"`
	Executable   *executable   `json:"executable"`
	Actions      []paramAction `json:"actions"`
}

type executable struct {
	Number int64  `json:"number"`
	URL    string `json:"url"`
}

// paramAction is the part of an action holding build parameters
// (hudson.model.ParametersAction); other actions decode as empty.
type paramAction struct {
	Parameters []struct {
		Name  string          `json:"name"`
		Value json.RawMessage `json:"value"`
	} `json:"parameters"`
}

// paramsOf flattens actions[].parameters[] into a map. String values are
// taken as is; other JSON values (booleans, numbers) as their text; null
// as "". gojenkins decodes values into string fields, silently losing
// boolean parameters, which is one reason builds are not read through it.
func paramsOf(actions []paramAction) map[string]string {
	m := map[string]string{}
	for _, a := range actions {
		for _, p := range a.Parameters {
			if p.Name == "" {
				continue
			}
			var s string
			if err := json.Unmarshal(p.Value, &s); err != nil {
				s = string(p.Value)
				if s == "null" {
					s = ""
				}
			}
			m[p.Name] = s
		}
	}
	return m
}

func (j queueItemJSON) item() QueueItem {
	q := QueueItem{
		ID:        j.ID,
		TaskName:  j.Task.Name,
		TaskURL:   j.Task.URL,
		Blocked:   j.Blocked,
		Buildable: j.Buildable,
		Stuck:     j.Stuck,
		Cancelled: j.Cancelled,
		Params:    paramsOf(j.Actions),
	}
	if j.Why != nil {
		q.Why = *j.Why
	}
	if j.InQueueSince > 0 {
		q.InQueueSince = time.UnixMilli(j.InQueueSince)
	}
	if j.Executable != nil {
		q.Executable = Executable{Number: j.Executable.Number, URL: j.Executable.URL}
	}
	return q
}

const (
	queueItemFields = "id,task[name,url],why,blocked,buildable,stuck,inQueueSince,actions[parameters[name,value]]"
	queueTree       = "items[" + queueItemFields + "]"
	queueItemTree   = queueItemFields + ",cancelled,executable[number,url]"
)

// Queue returns every item waiting in the queue, in one call
// (GET /queue/api/json with a tree filter).
//
// Direct REST: gojenkins' GetQueue fetches the whole queue without a tree
// filter and decodes parameter values as strings.
func (c *Client) Queue(ctx context.Context) ([]QueueItem, error) {
	var items []QueueItem
	err := c.call(ctx, "queue", nil, func(ctx context.Context) error {
		var err error
		items, err = c.queue(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read queue: %w", err)
	}
	return items, nil
}

func (c *Client) queue(ctx context.Context) ([]QueueItem, error) {
	var v struct {
		Items []queueItemJSON `json:"items"`
	}
	if err := c.getJSON(ctx, "/queue/api/json", url.Values{"tree": {queueTree}}, &v); err != nil {
		return nil, err
	}
	items := make([]QueueItem, 0, len(v.Items))
	for _, j := range v.Items {
		items = append(items, j.item())
	}
	c.noteItems(ctx, items)
	return items, nil
}

// QueueItem returns one queue item, also after it left the queue (then
// Cancelled or Executable is set). Jenkins forgets left items after about
// five minutes: ErrNotFound.
//
// Direct REST: gojenkins' GetQueueItem has no cancelled field, ignores a
// 404 (returning an empty item) and decodes parameters as strings.
func (c *Client) QueueItem(ctx context.Context, id int64) (QueueItem, error) {
	var q QueueItem
	err := c.call(ctx, "queue_item", []attribute.KeyValue{attrQueueID.Int64(id)}, func(ctx context.Context) error {
		if id <= 0 {
			return fmt.Errorf("jenkins: invalid queue id %d", id)
		}
		var j queueItemJSON
		p := "/queue/item/" + strconv.FormatInt(id, 10) + "/api/json"
		if err := c.getJSON(ctx, p, url.Values{"tree": {queueItemTree}}, &j); err != nil {
			return err
		}
		q = j.item()
		c.noteItems(ctx, []QueueItem{q})
		return nil
	})
	if err != nil {
		return QueueItem{}, fmt.Errorf("read queue item %d: %w", id, err)
	}
	return q, nil
}

// CancelQueueItem cancels a waiting item (POST /queue/cancelItem?id=ID).
// Jenkins answers 204 (older cores: a redirect); an unknown item gives
// ErrNotFound; an item that already left the queue or may not be
// cancelled gives ErrNotCancellable.
//
// Direct REST: gojenkins' Task.Cancel needs the item fetched first,
// fetches a crumb per POST (panicking on network failures) and reports
// only "status == 200", which a successful cancel (204) never is.
func (c *Client) CancelQueueItem(ctx context.Context, id int64) error {
	err := c.call(ctx, "cancel_queue_item", []attribute.KeyValue{attrQueueID.Int64(id)}, func(ctx context.Context) error {
		if id <= 0 {
			return fmt.Errorf("jenkins: invalid queue id %d", id)
		}
		r := request{method: http.MethodPost, path: "/queue/cancelItem",
			query: url.Values{"id": {strconv.FormatInt(id, 10)}}}
		_, err := c.do(ctx, r)
		var he *HTTPError
		if errors.As(err, &he) {
			// 422: no CANCEL permission on the item; 500 "Could not cancel":
			// the item is a left item (its build started, or it was
			// cancelled already).
			if he.Status == http.StatusUnprocessableEntity ||
				(he.Status == http.StatusInternalServerError && strings.Contains(he.Body, "not cancel")) {
				he.kind = ErrNotCancellable
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("cancel queue item %d: %w", id, err)
	}
	return nil
}
