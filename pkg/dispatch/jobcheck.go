package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/jenkins"
)

// JobReader is what the job check needs of Jenkins; *jenkins.Client has it.
type JobReader interface {
	Job(ctx context.Context, job string) (jenkins.Job, error)
}

// JobProblem is why a pipeline's Jenkins job cannot take ferry's triggers
// as ferry sends them.
type JobProblem struct {
	Pipeline string
	Job      string
	// NotFound: Jenkins has no such job.
	NotFound bool
	// Disabled: the job is disabled; Jenkins refuses to build it.
	Disabled bool
	// Missing are parameters ferry sends that the job does not declare, in
	// the order ferry lists them: Jenkins drops them without a word.
	Missing []string
}

// Blocking reports whether triggering the job would fail or build blind:
// it does not exist, is disabled, or lacks FERRY_TRIGGER_ID — without it
// ferry cannot find a build it triggered before a crash, and builds again.
// A job missing only other parameters still builds, without their values.
func (p JobProblem) Blocking() bool {
	return p.NotFound || p.Disabled || slices.Contains(p.Missing, config.ParamTriggerID)
}

// Error says what is wrong and how to fix it.
func (p JobProblem) Error() string {
	where := fmt.Sprintf("pipeline %q: Jenkins job %q", p.Pipeline, p.Job)
	switch {
	case p.NotFound:
		return where + " does not exist: create it, or set the pipeline's job to an existing one (folders as a/b)"
	case p.Disabled:
		return where + " is disabled, so Jenkins refuses to build it: enable it"
	}
	list := strings.Join(p.Missing, ", ")
	params := "parameters "
	if len(p.Missing) == 1 {
		params = "parameter "
	}
	msg := where + " does not declare the " + params + list + ", which ferry sends and Jenkins drops"
	if slices.Contains(p.Missing, config.ParamTriggerID) {
		msg += "; without " + config.ParamTriggerID + " ferry cannot find a build it triggered after a restart and would build twice"
	}
	return msg + ": add the string " + params + list + " to job " + p.Job +
		" (\"This project is parameterized\"), or declare them in the Jenkinsfile's parameters block as pipelines/Jenkinsfile does" +
		" and run the job once, so that Jenkins reads the block"
}

// Summary is a commit status description (GitHub keeps 140 characters).
func (p JobProblem) Summary() string {
	switch {
	case p.NotFound:
		return "ferry: Jenkins job " + p.Job + " does not exist"
	case p.Disabled:
		return "ferry: Jenkins job " + p.Job + " is disabled"
	}
	s := "ferry: Jenkins job " + p.Job + " does not declare " + strings.Join(p.Missing, ", ")
	if len(s) > 140 {
		s = s[:137] + "..."
	}
	return s
}

// SentParams lists the parameters ferry sends to the job of pipeline p:
// its reserved ones (config.ReservedParams), then the pipeline's own,
// sorted.
func SentParams(p config.Pipeline) []string {
	out := slices.Clone(config.ReservedParams)
	own := make([]string, 0, len(p.Parameters))
	for k := range p.Parameters {
		own = append(own, k)
	}
	sort.Strings(own)
	return append(out, own...)
}

// jobProblem decides whether job j (as looked up) takes pipeline p's
// triggers: nil when it does.
func jobProblem(p config.Pipeline, j jenkins.Job) *JobProblem {
	pr := JobProblem{Pipeline: p.Name, Job: p.Job, Disabled: !j.Buildable}
	for _, n := range SentParams(p) {
		if !j.HasParam(n) {
			pr.Missing = append(pr.Missing, n)
		}
	}
	if !pr.Disabled && len(pr.Missing) == 0 {
		return nil
	}
	return &pr
}

// DefaultJobCheckTTL is how long a job's lookup is trusted.
const DefaultJobCheckTTL = time.Minute

// JobCheckConfig configures NewJobChecker. Jenkins is required.
type JobCheckConfig struct {
	Jenkins JobReader
	// TTL is how long a lookup is trusted; default DefaultJobCheckTTL.
	TTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// JobChecker checks that pipelines' jobs take ferry's triggers, asking
// Jenkins about each job at most once per TTL, so that the dispatcher can
// check before every trigger: at start-up for every pipeline (CheckAll),
// before a trigger (Check), and afresh after Jenkins refused one (Forget,
// then Check). It is safe for concurrent use.
type JobChecker struct {
	cfg JobCheckConfig

	mu   sync.Mutex
	jobs map[string]lookup // by job path
}

type lookup struct {
	job      jenkins.Job
	notFound bool
	at       time.Time
}

// NewJobChecker returns a JobChecker.
func NewJobChecker(cfg JobCheckConfig) (*JobChecker, error) {
	if cfg.Jenkins == nil {
		return nil, errors.New("dispatch: JobCheckConfig.Jenkins is required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultJobCheckTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &JobChecker{cfg: cfg, jobs: map[string]lookup{}}, nil
}

// Check returns what keeps pipeline p's job from taking ferry's triggers,
// or nil. An error means Jenkins could not be asked (unavailable, bad
// credentials): nothing is known then, and the caller should not refuse
// to trigger on that account.
func (c *JobChecker) Check(ctx context.Context, p config.Pipeline) (*JobProblem, error) {
	l, err := c.lookup(ctx, p.Job)
	if err != nil {
		return nil, fmt.Errorf("check job of pipeline %q: %w", p.Name, err)
	}
	if l.notFound {
		return &JobProblem{Pipeline: p.Name, Job: p.Job, NotFound: true}, nil
	}
	return jobProblem(p, l.job), nil
}

// CheckAll checks every pipeline, each job once, and returns the problems
// in the pipelines' order and the lookups that failed, joined.
func (c *JobChecker) CheckAll(ctx context.Context, pipes []config.Pipeline) ([]JobProblem, error) {
	var problems []JobProblem
	var errs []error
	for _, p := range pipes {
		pr, err := c.Check(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if pr != nil {
			problems = append(problems, *pr)
		}
	}
	return problems, errors.Join(errs...)
}

// Forget drops what is known of job, so that the next Check asks Jenkins:
// after it refused a trigger, the job may have changed.
func (c *JobChecker) Forget(job string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.jobs, job)
}

func (c *JobChecker) lookup(ctx context.Context, job string) (lookup, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	l, ok := c.jobs[job]
	c.mu.Unlock()
	if ok && now.Sub(l.at) < c.cfg.TTL {
		return l, nil
	}
	j, err := c.cfg.Jenkins.Job(ctx, job)
	switch {
	case errors.Is(err, jenkins.ErrNotFound):
		l = lookup{notFound: true, at: now}
	case err != nil:
		return lookup{}, err
	default:
		l = lookup{job: j, at: now}
	}
	c.mu.Lock()
	c.jobs[job] = l
	c.mu.Unlock()
	return l, nil
}
