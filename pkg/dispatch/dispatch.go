// Package dispatch turns queued webhook events into Jenkins builds, exactly
// once, and reports each build's outcome on its commit.
//
//	store (durable queue) ─Claim→ worker ─FindByParam?→ Jenkins ─Trigger→ queue item
//	                          │ Touch while working            │
//	                          └─ Ack once every pipeline has a  └→ build record ─tracker→ commit status
//	                             recorded Jenkins queue item
//
// Several replicas may consume one queue: each entry is held by one
// consumer, which keeps touching it; an entry whose consumer stopped is
// reclaimed by another. Every trigger carries FERRY_TRIGGER_ID
// (event id/pipeline); a reclaimed entry is first looked for in Jenkins'
// queue and recent builds under that id, so a crash between trigger and
// acknowledgement never builds twice.
//
// # Re-runs after infrastructure loss
//
// A build lost to infrastructure rather than to its own steps is built
// once more (config.Pipeline.Reruns, default 1), as attempt n with the
// correlation id config.RerunTriggerID, "<event>/<pipeline>#n". Who
// decides what:
//
//   - the provisioner tells infrastructure loss from a failing build: its
//     agent died while the build still ran on it (spot reclaimed, pod
//     evicted or deleted by someone else, an ECI system failure, the
//     node's state Unknown; see provision's stateInfraLost). A build whose
//     steps fail ends on a live agent, so it is never re-run. It calls
//     RequestRerun before it deletes the dead agent, and keeps calling it
//     each cycle until it succeeds.
//   - the tracker sees a build that vanished from Jenkins (a controller
//     restart that lost it) and calls the same path: at once when the
//     build is gone, and when its queue item is gone and no build has its
//     trigger id, at once if this process saw the controller restart
//     (X-Jenkins-Session changed) after the trigger, else after
//     vanishAfter. An ABORTED build is
//     not re-run: ferry does not read Jenkins' interruption causes yet, so
//     it cannot tell a restart's abort from a user's.
//   - RequestRerun checks the limit and writes the durable request: a
//     pending attempt record under the new key (what triggerOnce writes
//     before it calls Jenkins), then queues a copy of the event naming
//     the pipeline and attempt (event.Rerun) under the dedup key
//     "rerun:<key>". The store's dedup makes repeated requests (a retry,
//     a restart, a new leader seeing the same dead agent) one entry; the
//     pending record makes whoever handles that entry search Jenkins for
//     the new key before triggering. So the re-run goes through the same
//     exactly-once machinery as a first trigger: crash anywhere, and the
//     entry is resumed or reclaimed, found in Jenkins or triggered once.
//   - the lost build's record is superseded: its end is not reported as a
//     failure while a record of the next attempt exists; the commit shows
//     "re-running: <cause>" and then the re-run's own progress, linked to
//     the new build.
package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/telemetry"
	"github.com/ferryci/ferry/pkg/trust"
)

// Jenkins is what the dispatcher asks of Jenkins.
type Jenkins interface {
	Trigger(ctx context.Context, job string, params map[string]string) (jenkins.TriggerResult, error)
	FindByParam(ctx context.Context, job, name, value string, since time.Time) (jenkins.Found, error)
	QueueItem(ctx context.Context, id int64) (jenkins.QueueItem, error)
	Build(ctx context.Context, job string, number int64) (jenkins.Build, error)
	Job(ctx context.Context, job string) (jenkins.Job, error)
	// CancelQueueItem and StopBuild end a superseded or cancelled build.
	CancelQueueItem(ctx context.Context, id int64) error
	StopBuild(ctx context.Context, job string, number int64) error
}

// Matcher says which pipelines build an event.
type Matcher interface {
	Match(ev event.Event) ([]config.Pipeline, string)
}

// Store is the part of the store the dispatcher needs: the queue it
// consumes, the build records it keeps, and the tracker's lease; see
// store.Store for their contract.
type Store interface {
	Claim(ctx context.Context, consumer string, limit int, minIdle, block time.Duration) ([]store.Entry, error)
	Held(ctx context.Context, consumer, after string, limit int) ([]store.Entry, error)
	Touch(ctx context.Context, consumer string, ids ...string) error
	Ack(ctx context.Context, ids ...string) error

	PutBuild(ctx context.Context, b store.Build) error
	GetBuild(ctx context.Context, key string) (store.Build, error)
	ListBuilds(ctx context.Context) ([]store.Build, error)
	DeleteBuild(ctx context.Context, key string) error

	Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)

	PutRef(ctx context.Context, r store.RefState) (store.RefState, error)
	GetRef(ctx context.Context, key string) (store.RefState, error)
}

// Config holds the dispatcher's dependencies and settings; zero values
// get the defaults of config.Default().
type Config struct {
	Store    Store
	Jenkins  Jenkins
	Reporter scm.Reporter
	Matcher  Matcher
	// Pipelines, if set, have their Jenkins jobs checked when Run starts
	// (see JobChecker); problems are logged.
	Pipelines []config.Pipeline
	// JenkinsURL is Jenkins' root URL, for links in commit statuses.
	JenkinsURL string
	// Consumer names this replica in the queue (default hostname-random).
	// A name that survives restarts (the pod name) lets a restarted
	// replica resume its unfinished events at once; it must be unique
	// among running replicas.
	Consumer          string
	Workers           int
	ReclaimAfter      time.Duration
	RetryInitial      time.Duration
	RetryMax          time.Duration
	PermanentAttempts int
	StatusInterval    time.Duration
	// StatusGiveUp is how long a build's outcome is retried on a failing
	// commit status API before ferry gives up on reporting it.
	StatusGiveUp  time.Duration
	StatusContext string
	// Trust decides whose pull requests build and whose comment commands
	// are obeyed; nil trusts only what author_association and the listed
	// users prove (no Git host is asked).
	Trust *trust.Checker
	// PRHosts acknowledge and answer comment commands, per provider; a
	// provider without one gets no reaction or reply.
	PRHosts map[event.Provider]PRHost
	// OnTriggered, if set, is called after a build was recorded, e.g. to
	// wake the provisioner.
	OnTriggered    func(store.Build)
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Now            func() time.Time
}

// Dispatcher consumes the event queue.
type Dispatcher struct {
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer

	latency  metric.Float64Histogram
	triggers metric.Int64Counter
	retries  metric.Int64Counter
	finished metric.Int64Counter
	reruns   metric.Int64Counter

	reportFailures metric.Int64Counter
	gaveUp         metric.Int64Counter
	status         *statusHealth
	jobs           *JobChecker

	// lastStatus remembers the last status sent per build record, so the
	// tracker sends each change once.
	mu         sync.Mutex
	lastStatus map[string]scm.State
}

// errGaveUp marks a pipeline given up after permanent refusals.
var errGaveUp = errors.New("gave up")

// New checks the configuration and builds a dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("dispatch: Store is required")
	case cfg.Jenkins == nil:
		return nil, errors.New("dispatch: Jenkins is required")
	case cfg.Matcher == nil:
		return nil, errors.New("dispatch: Matcher is required")
	}
	def := config.Default().Dispatch
	if cfg.Workers <= 0 {
		cfg.Workers = def.Workers
	}
	if cfg.ReclaimAfter <= 0 {
		cfg.ReclaimAfter = def.ReclaimAfter.Duration
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = def.RetryInitial.Duration
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = def.RetryMax.Duration
	}
	if cfg.PermanentAttempts <= 0 {
		cfg.PermanentAttempts = def.PermanentAttempts
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = def.StatusInterval.Duration
	}
	if cfg.StatusGiveUp <= 0 {
		cfg.StatusGiveUp = def.StatusGiveUpAfter.Duration
	}
	if cfg.StatusContext == "" {
		cfg.StatusContext = def.StatusContext
	}
	if cfg.Consumer == "" {
		cfg.Consumer = consumerName()
	}
	if cfg.Trust == nil {
		cfg.Trust = &trust.Checker{}
	}
	if cfg.Reporter == nil {
		cfg.Reporter = scm.NewMulti(scm.MultiConfig{Reporters: map[event.Provider]scm.Reporter{event.GitHub: nil, event.GitLab: nil}, Logger: cfg.Logger})
	}
	telemetry.Fill(&cfg.Logger, &cfg.TracerProvider, &cfg.MeterProvider)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Dispatcher{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "dispatch", "consumer", cfg.Consumer),
		tracer:     cfg.TracerProvider.Tracer("github.com/ferryci/ferry/pkg/dispatch"),
		lastStatus: map[string]scm.State{},
		status:     newStatusHealth(),
	}
	m := cfg.MeterProvider.Meter("github.com/ferryci/ferry/pkg/dispatch")
	var err error
	if d.jobs, err = NewJobChecker(JobCheckConfig{Jenkins: cfg.Jenkins, Now: cfg.Now}); err != nil {
		return nil, err
	}
	if d.latency, err = m.Float64Histogram("ferry_dispatch_latency_seconds",
		metric.WithDescription("Time from accepting a webhook to Jenkins queueing its build."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300)); err != nil {
		return nil, err
	}
	if d.triggers, err = m.Int64Counter("ferry_dispatch_triggers",
		metric.WithDescription("Pipelines dispatched, by outcome: triggered, recovered (found in Jenkins after a restart), merged, gave_up.")); err != nil {
		return nil, err
	}
	if d.retries, err = m.Int64Counter("ferry_dispatch_retries",
		metric.WithDescription("Failed attempts to reach Jenkins that will be retried, by reason.")); err != nil {
		return nil, err
	}
	if d.finished, err = m.Int64Counter("ferry_builds_finished",
		metric.WithDescription("Triggered builds whose outcome was reported, by result.")); err != nil {
		return nil, err
	}
	if d.reruns, err = m.Int64Counter("ferry_dispatch_reruns",
		metric.WithDescription("Builds lost to infrastructure, by reason (spot_reclaimed, pod_deleted, evicted, node_lost, eci_system_failure, jenkins_restart) and outcome: requested (re-run queued), limit (pipeline's reruns spent), off.")); err != nil {
		return nil, err
	}
	if d.reportFailures, err = m.Int64Counter("ferry_status_report_failures",
		metric.WithDescription("Commit status reports that failed, by provider.")); err != nil {
		return nil, err
	}
	if d.gaveUp, err = m.Int64Counter("ferry_status_given_up",
		metric.WithDescription("Build outcomes never reported because the provider's status API kept failing for dispatch.statusGiveUpAfter, by provider.")); err != nil {
		return nil, err
	}
	return d, nil
}

func consumerName() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "ferry"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return h + "-" + hex.EncodeToString(b)
}

// OnTriggered sets the function called after each recorded trigger (it
// replaces Config.OnTriggered); call it before Run.
func (d *Dispatcher) OnTriggered(f func(store.Build)) { d.cfg.OnTriggered = f }

// Consumer returns this dispatcher's name in the queue.
func (d *Dispatcher) Consumer() string { return d.cfg.Consumer }

// Run consumes the queue and tracks triggered builds until ctx ends. Entries
// in flight when ctx ends are left unacknowledged for another consumer.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.track(ctx)
	}()
	go func() {
		defer wg.Done()
		d.checkJobs(ctx)
	}()
	err := d.consume(ctx)
	wg.Wait()
	return err
}

func (d *Dispatcher) consume(ctx context.Context) error {
	slots := make(chan struct{}, d.cfg.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	block := min(d.cfg.ReclaimAfter/4, 5*time.Second)
	storeBackoff := d.backoff()
	d.resume(ctx, slots, &wg)
	for ctx.Err() == nil {
		// Wait for at least one free worker, then claim as many as are free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1
		for free < d.cfg.Workers {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		entries, err := d.cfg.Store.Claim(ctx, d.cfg.Consumer, free, d.cfg.ReclaimAfter, block)
		for i := len(entries); i < free; i++ {
			<-slots
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := storeBackoff.next()
			d.log.Error("claim from the event queue failed; retrying", "error", err, "retry_in", wait)
			sleep(ctx, wait)
			continue
		}
		storeBackoff.reset()
		for _, e := range entries {
			d.work(ctx, e, slots, &wg)
		}
	}
	return nil
}

// checkJobs logs what keeps the configured pipelines' jobs from taking
// ferry's triggers as sent (no such job, disabled, undeclared parameters).
func (d *Dispatcher) checkJobs(ctx context.Context) {
	if len(d.cfg.Pipelines) == 0 {
		return
	}
	problems, err := d.jobs.CheckAll(ctx, d.cfg.Pipelines)
	if err != nil && ctx.Err() == nil {
		d.log.Warn("could not check every pipeline's Jenkins job at start; each is checked again before its first trigger", "error", err)
	}
	for _, p := range problems {
		d.log.Error(p.Error(), "pipeline", p.Pipeline, "job", p.Job, "blocking", p.Blocking())
	}
}

// blocked reports whether p's job cannot take ferry's trigger (see
// JobProblem.Blocking); it then says so on the commit. A job that cannot
// be looked up is not blocked: the trigger's own answer tells. Nor is a
// missing job: a multibranch scan may be about to create it, and the
// trigger's refusals are retried dispatch.permanentAttempts times.
func (d *Dispatcher) blocked(ctx context.Context, ev event.Event, p config.Pipeline, log *slog.Logger) bool {
	pr, err := d.jobs.Check(ctx, p)
	if err != nil || pr == nil || pr.NotFound || !pr.Blocking() {
		return false
	}
	d.triggers.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "gave_up")))
	log.Error("not triggering: "+pr.Error(), "blocking", true)
	_ = d.report(ctx, ev, p.Name, scm.Status{State: scm.StateError, Description: pr.Summary()}, d.jobURL(p.Job))
	return true
}

// work handles e on a worker of its own, which frees its slot when done.
func (d *Dispatcher) work(ctx context.Context, e store.Entry, slots chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { <-slots }()
		d.handle(ctx, e)
	}()
}

// resume hands the workers the entries this consumer held when its
// previous run stopped (a crash, a container restart under the same pod
// name), so they finish now rather than after ReclaimAfter, when a busy
// job has moved on. A failure is logged and left to reclaiming.
func (d *Dispatcher) resume(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) {
	after, n := "", 0
	for ctx.Err() == nil {
		entries, err := d.cfg.Store.Held(ctx, d.cfg.Consumer, after, d.cfg.Workers)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("could not read the events this replica held before it restarted; other replicas reclaim them after dispatch.reclaimAfter", "error", err)
			}
			return
		}
		if len(entries) == 0 {
			break
		}
		for _, e := range entries {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			d.work(ctx, e, slots, wg)
			after = e.ID
			n++
		}
	}
	if n > 0 {
		d.log.Info("resumed events this replica had not finished before it restarted", "events", n)
	}
}

// handle triggers every pipeline of one entry and acknowledges it once
// each has a recorded Jenkins queue item (or was given up).
func (d *Dispatcher) handle(ctx context.Context, e store.Entry) {
	ev := e.Event
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx, span := d.tracer.Start(telemetry.WithTraceParent(ctx, ev.TraceParent), "dispatch.event",
		trace.WithAttributes(attribute.String("ferry.event_id", ev.ID), attribute.String("vcs.repository.name", ev.Repo),
			attribute.String("vcs.ref", ev.Ref), attribute.String("vcs.revision", ev.SHA),
			attribute.Int64("ferry.deliveries", e.Deliveries)))
	defer span.End()
	log := d.log.With("event_id", ev.ID, "repo", ev.Repo, "sha", ev.SHA)
	if e.Deliveries > 1 {
		log.Info("took over an event another dispatcher did not finish", "deliveries", e.Deliveries)
	}

	// Keep the entry ours while we work; stop if another consumer took it.
	go d.keepTouching(ctx, cancel, e.ID, log)

	if ev.Kind == event.Comment {
		if err := d.command(ctx, e, log); err != nil {
			span.SetStatus(codes.Error, err.Error())
			log.Info("stopped before the comment command was handled; it stays queued", "reason", err)
			return
		}
		if err := d.ack(ctx, e.ID); err != nil {
			log.Warn("could not acknowledge a handled comment command; it will be reclaimed", "error", err)
		}
		return
	}
	pipes, reason := d.cfg.Matcher.Match(ev)
	pipes = rerunPipes(ev, pipes)
	if len(pipes) == 0 {
		log.Info("no pipeline builds this event any more; dropping it", "reason", reason)
	}
	head, err := d.noteHead(ctx, ev, pipes, log)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		log.Info("stopped before the event was dispatched; it stays queued", "reason", err)
		return
	}
	for _, p := range pipes {
		build, err := d.admit(ctx, ev, p, head, log)
		if err == nil && build {
			err = d.triggerOnce(ctx, e, p, log)
			if err == nil {
				err = d.supersede(ctx, ev, p, log)
			}
		}
		if err != nil && !errors.Is(err, errGaveUp) {
			// Only cancellation ends here: shutdown, or the entry was
			// reclaimed. Leave it for its next holder.
			span.SetStatus(codes.Error, err.Error())
			log.Info("stopped before the event was dispatched; it stays queued", "pipeline", p.Name, "reason", err)
			return
		}
	}
	if err := d.ack(ctx, e.ID); err != nil {
		log.Warn("could not acknowledge a dispatched event; it will be reclaimed and found in Jenkins", "error", err)
	}
}

func (d *Dispatcher) keepTouching(ctx context.Context, cancel context.CancelFunc, id string, log *slog.Logger) {
	t := time.NewTicker(max(d.cfg.ReclaimAfter/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := d.cfg.Store.Touch(ctx, d.cfg.Consumer, id)
			if errors.Is(err, store.ErrNotOwned) {
				log.Warn("another dispatcher took over this event; stopping", "entry", id)
				cancel()
				return
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("could not touch event entry", "entry", id, "error", err)
			}
		}
	}
}

func (d *Dispatcher) ack(ctx context.Context, id string) error {
	b := d.backoff()
	for {
		err := d.cfg.Store.Ack(ctx, id)
		if err == nil || ctx.Err() != nil {
			return err
		}
		wait := b.next()
		d.log.Warn("acknowledge failed; retrying", "entry", id, "error", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// triggerOnce makes sure pipeline p has exactly one Jenkins build for the
// entry's event. It returns nil once a queue item is recorded, errGaveUp
// after PermanentAttempts permanent refusals, and ctx's error on
// cancellation; Jenkins being down is retried without limit.
//
// Before its first call to Jenkins it records durably that a trigger is
// being attempted, and when (a pending build record). Whoever finishes the
// event later — this worker after a failure, this replica after a restart,
// another replica after a reclaim — finds that record and searches Jenkins
// back to that time before triggering again, however many builds started
// since.
func (d *Dispatcher) triggerOnce(ctx context.Context, e store.Entry, p config.Pipeline, log *slog.Logger) error {
	ev := e.Event
	key := triggerKey(ev, p.Name)
	log = log.With("pipeline", p.Name, "job", p.Job)
	a, err := d.attemptOf(ctx, e, p, key, log)
	if err != nil || a.recorded {
		return err
	}
	b := d.backoff()
	permanent := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !a.lookFirst && d.blocked(ctx, ev, p, log) {
			return d.giveUpAttempt(ctx, key, log)
		}
		res, outcome, err := d.attempt(ctx, ev, p, key, &a)
		if err == nil {
			d.record(ctx, ev, p, key, a.since, res, outcome, log)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, errNotAttempted) {
			a.lookFirst = true
		}
		if errors.Is(err, errNotAttempted) || jenkins.IsRetryable(err) {
			wait := b.next()
			d.retries.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", retryReason(err))))
			log.Warn("could not trigger yet; the event stays queued and is retried", "error", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			continue
		}
		permanent++
		d.jobs.Forget(p.Job)
		if d.blocked(ctx, ev, p, log) {
			return d.giveUpAttempt(ctx, key, log)
		}
		if permanent >= d.cfg.PermanentAttempts {
			d.triggers.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "gave_up")))
			log.Error("Jenkins refused the build; giving up", "error", err, "attempts", permanent)
			_ = d.report(ctx, ev, p.Name, scm.Status{State: scm.StateError,
				Description: "ferry could not trigger Jenkins job " + p.Job + ": " + describe(err)}, "")
			return d.giveUpAttempt(ctx, key, log)
		}
		wait := b.next()
		d.retries.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", "jenkins_refused")))
		log.Warn("Jenkins refused the build; retrying", "error", err, "attempt", permanent, "retry_in", wait)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// giveUpAttempt removes the record of a trigger attempt that Jenkins
// refused (nothing was queued) and returns errGaveUp.
func (d *Dispatcher) giveUpAttempt(ctx context.Context, key string, log *slog.Logger) error {
	if err := d.cfg.Store.DeleteBuild(ctx, key); err != nil {
		log.Warn("could not remove the record of the refused trigger attempt", "error", err)
	}
	return errGaveUp
}

// errNotAttempted marks a failure before Jenkins was called: the attempt
// could not be recorded in the store.
var errNotAttempted = errors.New("trigger attempt not recorded")

func retryReason(err error) string {
	if errors.Is(err, errNotAttempted) {
		return "store_unavailable"
	}
	return "jenkins_unavailable"
}

// triggerAttempt is what a worker knows of earlier attempts to trigger one
// pipeline of an event.
type triggerAttempt struct {
	// recorded: a queue item is already recorded; nothing is left to do.
	recorded bool
	// lookFirst: a build may exist; search Jenkins before triggering.
	lookFirst bool
	// since is when the first attempt began (zero until one did): no
	// build of this trigger can have started before it.
	since time.Time
	// marked: the store holds a pending record saying so.
	marked bool
}

// attemptOf reads the store's record of key. A store that cannot be read
// is retried until ctx ends: triggering blind could build twice.
func (d *Dispatcher) attemptOf(ctx context.Context, e store.Entry, p config.Pipeline, key string, log *slog.Logger) (triggerAttempt, error) {
	b := d.backoff()
	for {
		rec, err := d.cfg.Store.GetBuild(ctx, key)
		switch {
		case err == nil && !rec.Pending():
			return triggerAttempt{recorded: true}, nil // recorded by an earlier holder that died before Ack
		case err == nil:
			since := rec.Attempted
			if since.IsZero() {
				since = e.Event.ReceivedAt
			}
			return triggerAttempt{lookFirst: true, since: since, marked: true}, nil
		case errors.Is(err, store.ErrNotFound):
			// No attempt was recorded, so none reached Jenkins. An entry
			// reclaimed from a replica that predates attempt records is
			// searched back to when the event arrived.
			if e.Deliveries > 1 {
				return triggerAttempt{lookFirst: true, since: e.Event.ReceivedAt}, nil
			}
			return triggerAttempt{}, nil
		}
		if ctx.Err() != nil {
			return triggerAttempt{}, ctx.Err()
		}
		wait := b.next()
		log.Warn("could not read the build record; retrying before triggering", "pipeline", p.Name, "error", err, "retry_in", wait)
		if !sleep(ctx, wait) {
			return triggerAttempt{}, ctx.Err()
		}
	}
}

// attempt looks for an earlier trigger (when asked) and otherwise records
// the attempt and triggers.
func (d *Dispatcher) attempt(ctx context.Context, ev event.Event, p config.Pipeline, key string, a *triggerAttempt) (jenkins.TriggerResult, string, error) {
	if a.lookFirst {
		since := a.since
		if since.IsZero() {
			since = ev.ReceivedAt
		}
		f, err := d.cfg.Jenkins.FindByParam(ctx, p.Job, config.ParamTriggerID, key, since)
		if err != nil {
			return jenkins.TriggerResult{}, "", err
		}
		if f.Exists() {
			return jenkins.TriggerResult{QueueID: f.QueueID}, "recovered", nil
		}
	}
	if !a.marked {
		now := d.cfg.Now()
		since := a.since
		if since.IsZero() {
			since = now
		}
		rec := withRerun(store.Build{Key: key, Event: ev, Pipeline: p.Name, Job: p.Job, Attempted: since, UpdatedAt: now}, ev)
		if err := d.cfg.Store.PutBuild(ctx, rec); err != nil {
			return jenkins.TriggerResult{}, "", fmt.Errorf("%w: %w", errNotAttempted, err)
		}
		a.since, a.marked = since, true
	}
	ctx, span := d.tracer.Start(ctx, "jenkins.trigger", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("ferry.pipeline", p.Name), attribute.String("jenkins.job", p.Job)))
	defer span.End()
	res, err := d.cfg.Jenkins.Trigger(ctx, p.Job, triggerParams(p, ev, key, telemetry.TraceParent(ctx)))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return res, "", err
	}
	span.SetAttributes(attribute.Int64("jenkins.queue_id", res.QueueID), attribute.Bool("jenkins.merged", res.Merged))
	if res.Merged {
		// The parameters carry a unique FERRY_TRIGGER_ID, so Jenkins can
		// only merge this request into one of our own for the same event
		// and pipeline: one build serves both, which is what we want.
		return res, "merged", nil
	}
	return res, "triggered", nil
}

// record stores the build record (retrying: the trigger must not be
// repeated just because the store hiccuped) and reports it pending.
func (d *Dispatcher) record(ctx context.Context, ev event.Event, p config.Pipeline, key string, attempted time.Time, res jenkins.TriggerResult, outcome string, log *slog.Logger) {
	now := d.cfg.Now()
	rec := withRerun(store.Build{Key: key, Event: ev, Pipeline: p.Name, Job: p.Job, QueueID: res.QueueID,
		Attempted: attempted, TriggeredAt: now, UpdatedAt: now}, ev)
	b := d.backoff()
	for {
		err := d.cfg.Store.PutBuild(ctx, rec)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return // the next holder finds the build in Jenkins
		}
		wait := b.next()
		log.Warn("could not record the triggered build; retrying", "error", err, "retry_in", wait)
		sleep(ctx, wait)
	}
	d.triggers.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
	if outcome == "triggered" || outcome == "merged" {
		d.latency.Record(ctx, now.Sub(ev.ReceivedAt).Seconds(), metric.WithAttributes(attribute.String("provider", string(ev.Provider))))
	}
	switch outcome {
	case "merged":
		log.Warn("Jenkins merged the request into an item already queued for this event", "queue_id", res.QueueID)
	case "recovered":
		log.Info("found the build in Jenkins from an earlier attempt; not triggering again", "queue_id", res.QueueID)
	default:
		log.Info("triggered Jenkins build", "queue_id", res.QueueID)
	}
	_ = d.report(ctx, ev, p.Name, scm.Status{State: scm.StatePending, Description: rerunPrefix(rec) + "Queued in Jenkins"}, d.jobURL(p.Job))
	if d.cfg.OnTriggered != nil {
		d.cfg.OnTriggered(rec)
	}
}

// report sends a commit status once per change of state. A failure is
// returned for the caller to retry or drop, and logged at most once per
// statusLogEvery per provider; a provider whose status API fails in a way
// that may pass is paused (errProviderPaused) for what it asked, else a
// back-off, so an outage costs one call per pause rather than one per
// build and interval.
func (d *Dispatcher) report(ctx context.Context, ev event.Event, pipeline string, st scm.Status, target string) error {
	st.Context = d.cfg.StatusContext + "/" + pipeline
	if st.TargetURL == "" {
		st.TargetURL = target
	}
	key := config.TriggerID(ev.ID, pipeline)
	d.mu.Lock()
	same := d.lastStatus[key] == st.State && st.State != scm.StatePending
	d.mu.Unlock()
	if same {
		return nil
	}
	if d.status.paused(ev.Provider, d.cfg.Now()) {
		return errProviderPaused
	}
	err := d.cfg.Reporter.SetStatus(ctx, ev, st)
	if err != nil {
		provider := attribute.String("provider", string(ev.Provider))
		d.reportFailures.Add(ctx, 1, metric.WithAttributes(provider))
		if !scm.IsRetryable(err) {
			d.log.Warn("commit status refused; not retrying it", "event_id", ev.ID, "pipeline", pipeline, "state", st.State, "error", err)
			return err
		}
		if log, unlogged := d.status.providerFailed(ev.Provider, err, d.cfg.Now(), d.cfg.StatusInterval); log {
			d.log.Warn("could not report commit status; reports to this provider pause and are retried with back-off",
				"provider", ev.Provider, "event_id", ev.ID, "pipeline", pipeline, "state", st.State,
				"error", err, "failures_since_last_line", unlogged)
		}
		return err
	}
	if n := d.status.providerOK(ev.Provider); n > 0 {
		d.log.Info("commit status reports work again", "provider", ev.Provider, "failures", n)
	}
	d.mu.Lock()
	d.lastStatus[key] = st.State
	d.mu.Unlock()
	return nil
}

func (d *Dispatcher) jobURL(job string) string {
	base := strings.TrimSuffix(d.cfg.JenkinsURL, "/")
	if base == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString(base)
	for _, seg := range strings.Split(job, "/") {
		b.WriteString("/job/")
		b.WriteString(url.PathEscape(seg))
	}
	b.WriteString("/")
	return b.String()
}

func describe(err error) string {
	switch {
	case errors.Is(err, jenkins.ErrNotFound):
		return "the job does not exist"
	case errors.Is(err, jenkins.ErrAuth):
		return "Jenkins refused ferry's credentials"
	case errors.Is(err, jenkins.ErrDisabled):
		return "the job is disabled"
	case errors.Is(err, jenkins.ErrNotParameterized):
		return "the job declares no parameters (see pipelines/Jenkinsfile)"
	case errors.Is(err, jenkins.ErrRefused):
		return "Jenkins did not queue the build"
	}
	return "Jenkins answered with an error"
}

// backoff doubles from RetryInitial up to RetryMax.
type backoff struct {
	initial, max, cur time.Duration
}

func (d *Dispatcher) backoff() *backoff {
	return &backoff{initial: d.cfg.RetryInitial, max: d.cfg.RetryMax}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.initial
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
