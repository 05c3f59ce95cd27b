package jenkins

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Build results Jenkins reports once a build is over.
const (
	ResultSuccess  = "SUCCESS"
	ResultUnstable = "UNSTABLE"
	ResultFailure  = "FAILURE"
	ResultAborted  = "ABORTED"
	ResultNotBuilt = "NOT_BUILT"
)

// Build is one run of a job.
type Build struct {
	Number   int64
	URL      string
	Building bool
	// Result is "" while the build runs, then one of the Result* values.
	Result    string
	Duration  time.Duration
	Timestamp time.Time
	// QueueID is the id of the queue item the build came from.
	QueueID int64
	// Params are the build parameters (see QueueItem.Params).
	Params map[string]string
}

type buildJSON struct {
	Number    int64         `json:"number"`
	URL       string        `json:"url"`
	Building  bool          `json:"building"`
	Result    *string       `json:"result"`
	Duration  int64         `json:"duration"`
	Timestamp int64         `json:"timestamp"`
	QueueID   int64         `json:"queueId"`
	Actions   []paramAction `json:"actions"`
}

const buildFields = "number,url,building,result,duration,timestamp,queueId,actions[parameters[name,value]]"

func (j buildJSON) build() Build {
	b := Build{
		Number:   j.Number,
		URL:      j.URL,
		Building: j.Building,
		Duration: time.Duration(j.Duration) * time.Millisecond,
		QueueID:  j.QueueID,
		Params:   paramsOf(j.Actions),
	}
	if j.Result != nil {
		b.Result = *j.Result
	}
	if j.Timestamp > 0 {
		b.Timestamp = time.UnixMilli(j.Timestamp)
	}
	return b
}

// Build returns build number of job (a folder path "a/b" is fine).
//
// Direct REST: gojenkins' GetBuild first fetches the whole job, then the
// whole build at depth 1, ignores a 404 on the second, and decodes
// parameter values as strings (boolean parameters come back empty).
func (c *Client) Build(ctx context.Context, job string, number int64) (Build, error) {
	var b Build
	err := c.call(ctx, "build", []attribute.KeyValue{attrJob.String(job), attrBuild.Int64(number)}, func(ctx context.Context) error {
		p, err := jobPath(job)
		if err != nil {
			return err
		}
		if number <= 0 {
			return fmt.Errorf("jenkins: invalid build number %d", number)
		}
		var j buildJSON
		p += "/" + strconv.FormatInt(number, 10) + "/api/json"
		if err := c.getJSON(ctx, p, url.Values{"tree": {buildFields}}, &j); err != nil {
			return err
		}
		b = j.build()
		return nil
	})
	if err != nil {
		return Build{}, fmt.Errorf("read build %s #%d: %w", job, number, err)
	}
	return b, nil
}

// RecentBuilds returns up to n of job's most recent builds, newest first,
// in one call (tree=builds[...]{0,n}). Jenkins exports at most 100.
//
// Direct REST: gojenkins has no ranged, filtered build listing; its
// GetAllBuildIds returns numbers only and GetBuild costs a call per build.
func (c *Client) RecentBuilds(ctx context.Context, job string, n int) ([]Build, error) {
	var builds []Build
	err := c.call(ctx, "recent_builds", []attribute.KeyValue{attrJob.String(job)}, func(ctx context.Context) error {
		var err error
		builds, err = c.recentBuilds(ctx, job, n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read recent builds of %s: %w", job, err)
	}
	return builds, nil
}

func (c *Client) recentBuilds(ctx context.Context, job string, n int) ([]Build, error) {
	p, err := jobPath(job)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("jenkins: invalid build count %d", n)
	}
	var v struct {
		Builds []buildJSON `json:"builds"`
	}
	tree := "builds[" + buildFields + "]{0," + strconv.Itoa(n) + "}"
	if err := c.getJSON(ctx, p+"/api/json", url.Values{"tree": {tree}}, &v); err != nil {
		return nil, err
	}
	builds := make([]Build, 0, len(v.Builds))
	for _, j := range v.Builds {
		builds = append(builds, j.build())
	}
	return builds, nil
}

// Found says where FindByParam found a matching request. The zero value
// means nowhere.
type Found struct {
	// QueueID is the queue item of the match: the waiting item, or the
	// item the matching build came from.
	QueueID int64
	// BuildNumber is the matching build; 0 while the match still waits in
	// the queue.
	BuildNumber int64
	// Queued is true when the match is an item still waiting in the queue.
	Queued bool
}

// Exists reports whether anything matched.
func (f Found) Exists() bool { return f.QueueID > 0 || f.BuildNumber > 0 }

// FindByParam looks for a request of job whose parameter name equals
// value and that was made at or after since: first among the items
// waiting in the queue, then among the job's builds, newest first, a page
// of Config.SearchBuilds at a time (allBuilds{from,to}), until a build
// that started before since − SearchSlack or the end of the builds. The
// search is bounded by time, not by a count of builds, so a busy job
// cannot scroll a build out of its reach. This is how the dispatcher
// learns, after a crash between trigger and ack, that its trigger went
// through. Nothing found is the zero Found and a nil error; an unknown job
// is ErrNotFound. Config.Timeout bounds each request, not the search: a
// long history takes as many pages as it takes, within ctx.
//
// The queue is read before the builds: Jenkins creates a build in the same
// queue-lock section in which the item leaves the queue, so an item seen
// in neither list was not there (save a sub-millisecond window). Builds
// that start while the pages are read shift later pages down: some builds
// are read twice, none is skipped.
func (c *Client) FindByParam(ctx context.Context, job, name, value string, since time.Time) (Found, error) {
	var f Found
	err := c.callWithin(ctx, "find_by_param", 0, []attribute.KeyValue{attrJob.String(job), attrParam.String(name)}, func(ctx context.Context) error {
		p, err := jobPath(job)
		if err != nil {
			return err
		}
		if since.IsZero() {
			return errors.New("jenkins: FindByParam needs the earliest time the request could have been made")
		}
		qctx, cancel := context.WithTimeout(ctx, c.timeout)
		items, err := c.queue(qctx)
		cancel()
		if err != nil {
			return err
		}
		for _, it := range items {
			if v, ok := it.Params[name]; ok && v == value && taskIsJob(it.TaskURL, p) {
				f = Found{QueueID: it.ID, Queued: true}
				break
			}
		}
		if !f.Exists() {
			f, err = c.findBuild(ctx, p, name, value, since.Add(-SearchSlack))
			if err != nil {
				return err
			}
		}
		trace.SpanFromContext(ctx).SetAttributes(attrQueueID.Int64(f.QueueID), attrBuild.Int64(f.BuildNumber))
		return nil
	})
	if err != nil {
		return Found{}, fmt.Errorf("find %s=%s in %s: %w", name, value, job, err)
	}
	return f, nil
}

// SearchSlack is how far before the time it is given FindByParam keeps
// reading builds: build timestamps come from Jenkins' clock, the time from
// ferry's, and the two may differ.
const SearchSlack = 10 * time.Minute

// findBuild pages through the builds of the job at escaped path p, newest
// first, until one matches or one started before notBefore.
func (c *Client) findBuild(ctx context.Context, p, name, value string, notBefore time.Time) (Found, error) {
	page := c.searchMax
	for from := 0; ; from += page {
		var v struct {
			AllBuilds []buildJSON `json:"allBuilds"`
		}
		tree := "allBuilds[" + buildFields + "]{" + strconv.Itoa(from) + "," + strconv.Itoa(from+page) + "}"
		pctx, cancel := context.WithTimeout(ctx, c.timeout)
		err := c.getJSON(pctx, p+"/api/json", url.Values{"tree": {tree}}, &v)
		cancel()
		if err != nil {
			return Found{}, err
		}
		for _, j := range v.AllBuilds {
			b := j.build()
			if got, ok := b.Params[name]; ok && got == value {
				return Found{QueueID: b.QueueID, BuildNumber: b.Number}, nil
			}
			if !b.Timestamp.IsZero() && b.Timestamp.Before(notBefore) {
				return Found{}, nil
			}
		}
		if len(v.AllBuilds) < page {
			return Found{}, nil
		}
	}
}

// taskIsJob reports whether a queue item's task URL (absolute, as Jenkins
// renders it with its configured root URL) is the job at escaped path p
// ("/job/a/job/b"). Only the path's tail is compared, because the root
// URL Jenkins knows may differ from the one ferry uses (proxies).
func taskIsJob(taskURL, p string) bool {
	u, err := url.Parse(taskURL)
	if err != nil {
		return false
	}
	want, err := url.PathUnescape(p)
	if err != nil {
		return false
	}
	got := strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(got, want) {
		return false
	}
	// What precedes must be a context path (/jenkins), not a parent folder.
	return !strings.Contains(got[:len(got)-len(want)]+"/", "/job/")
}

// StopBuild aborts a running build (POST /job/…/N/stop): Jenkins
// interrupts its executor and the build ends ABORTED; the answer is a
// redirect (302) to the build or the Referer. Stopping a build that has
// already ended changes nothing and answers the same, so a repeated stop
// is safe. A missing job or build gives ErrNotFound.
func (c *Client) StopBuild(ctx context.Context, job string, number int64) error {
	err := c.call(ctx, "stop_build", []attribute.KeyValue{attrJob.String(job), attrBuild.Int64(number)}, func(ctx context.Context) error {
		p, err := jobPath(job)
		if err != nil {
			return err
		}
		if number <= 0 {
			return fmt.Errorf("jenkins: invalid build number %d", number)
		}
		_, err = c.do(ctx, request{method: http.MethodPost, path: p + "/" + strconv.FormatInt(number, 10) + "/stop"})
		return err
	})
	if err != nil {
		return fmt.Errorf("stop build %s #%d: %w", job, number, err)
	}
	return nil
}
