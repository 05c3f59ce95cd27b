// Package provision is ferry's provisioner: it gives every Jenkins queue
// item that waits for a label served by an agent template exactly one
// ephemeral agent — a Jenkins node (EXCLUSIVE, one executor, WebSocket
// JNLP) and an ECI pod running the inbound agent — and removes both as
// soon as the build is over.
//
// One reconcile cycle looks at the whole world once, decides on that
// look alone, then acts on the difference:
//
//	poll      Jenkins computers, then the queue (two calls)
//	  │
//	observe   + pods, Secrets, Events (informer caches), the     world.go
//	  │       actions in flight, the re-runs accepted and the
//	  │       templates' image verdicts → world: one snapshot
//	classify  each agent → one state: creating, needs pod,      classify.go
//	  │       starting, awaiting build, building, reclaiming, lost,
//	  │       lost to infrastructure, build over, failed, spare,
//	  │       settling, item gone, orphan, unknown template,
//	  │       terminating, deleting; warm: needs pod, starting,
//	  │       ready, stale, retired, failed
//	decide    one small function per state, then the waiting    decide.go
//	  │       items (give up on a missing or denied image, wait    rerun.go
//	  │       for a template's first image check, serve with a    image.go
//	  │       spare, make a node's pod, create within the caps,
//	  │       wait, back off, give up), warm pools (serve       warm.go
//	  │       with a free warm agent, refill to the AgentPool's
//	  │       replicas or the schedule, retire the surplus and
//	  │       the stale), anchors, Secrets → acts
//	  │       and memory as values; pure
//	record    metrics, failures' logs and Events                 reconcile.go
//	remember  apply the decided memory
//	  │
//	act       start each act in its lane, without waiting:       act.go,
//	          CreateNode → NodeSecret → Secret → Pod → own       agent.go,
//	          Secret; MarkOffline once its build runs (one       secrets.go
//	          build per agent); DeleteNode + delete Pod;
//	          CancelQueueItem + Event + OnFailure; RequestRerun
//	          of a build lost to infrastructure; resolve a
//	          template's image manifest; create a warm agent;
//	          retire one (offline first, deleted a cycle later)
//
// A cycle does not wait for its actions: they run in lanes of their own
// (taking agents offline; deleting; creating), each bounded by
// Parallelism, and a later cycle skips what is still in flight. So a
// cycle lasts its two polls and its decisions however many creations a
// burst has queued, and a build that starts has its agent taken offline
// within about a cycle (one build per agent), never behind a batch of
// creations.
//
// Cycles run from a client-go workqueue with a single key: pod and Secret
// informer events, Warning Events about agent pods (fed to eci.Classify,
// see events.go), Kick (the dispatcher just triggered a build), the
// periodic resync and retry timers all add the key, so bursts coalesce into
// one cycle. Nothing is remembered that cannot be rebuilt: agent names
// (eci.AgentName) are derived from the queue item id and the attempt, and
// every object carries ferry's labels, so a restarted provisioner or a new
// leader finds its work in Jenkins and Kubernetes. What lives only in
// memory is an optimisation (whether an idle agent is known never to have
// run a build, backoff deadlines) and is conservatively re-derived after a
// restart.
//
// # Which queue items are ferry's
//
// Jenkins' queue API has no label field: the label appears only in the why
// sentence, and not always (see jenkins.QueueItem.WaitingLabel). ferry
// copes in three ways, in order:
//
//  1. why names a label expression: the template whose labels satisfy it
//     serves the item;
//  2. why names a node (Jenkins does so when exactly one node has the
//     label): if it is one of ferry's nodes, its template serves the item;
//  3. why names nothing because Jenkins has no agents at all: ferry keeps
//     one never-connected "anchor" node per template (ferry-anchor-NAME,
//     carrying the template's labels), so that case never arises. Config.
//     Label is an optional hint for the rest (items in other states whose
//     why names no label).
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/pkg/telemetry"
)

// Jenkins is what the provisioner needs from Jenkins; *jenkins.Client has
// it.
type Jenkins interface {
	Queue(ctx context.Context) ([]jenkins.QueueItem, error)
	QueueItem(ctx context.Context, id int64) (jenkins.QueueItem, error)
	Computers(ctx context.Context) ([]jenkins.Computer, error)
	CreateNode(ctx context.Context, spec jenkins.NodeSpec) error
	NodeSecret(ctx context.Context, name string) (string, error)
	DeleteNode(ctx context.Context, name string) error
	MarkOffline(ctx context.Context, name, reason string) error
	CancelQueueItem(ctx context.Context, id int64) error
}

// OneBuildReason is the offline message of an agent ferry took offline as
// its build started: Jenkins gives a temporarily-offline node no new build,
// so the agent cannot take a second one in the moment between the end of
// its build and its deletion. The mark also tells a restarted provisioner
// that the agent has run its build.
const OneBuildReason = "ferry: one build per agent"

// Defaults of Config.
const (
	DefaultMaxAgents   = 100
	DefaultResync      = 2 * time.Second
	DefaultGCGrace     = 30 * time.Second
	DefaultParallelism = 16
	DefaultMinInterval = 100 * time.Millisecond
	// pollSpacing times the duration of a cycle's two polls is the least
	// time from one cycle's start to the next: ferry keeps Jenkins busy
	// answering its polls at most a quarter of the time, however big the
	// queue and the node list grow.
	pollSpacing = 4
)

// Config configures New. Jenkins, Kube, Namespace, Templates and
// JenkinsURL are required.
type Config struct {
	Jenkins Jenkins
	Kube    kubernetes.Interface
	// Namespace holds the agent pods and their Secrets.
	Namespace string
	// Templates are resolved agent templates (eci.Resolve), by name.
	Templates map[string]eci.Template
	// JenkinsURL is the controller's URL as agents see it.
	JenkinsURL string
	// MaxAgents caps agents in flight across templates; default
	// DefaultMaxAgents. Templates' MaxAgents cap each template.
	MaxAgents int
	// Resync is the period of the Jenkins poll; default DefaultResync. It
	// bounds how long an agent outlives its build.
	Resync time.Duration
	// MinInterval spaces cycles that events would otherwise run back to
	// back; default DefaultMinInterval. Cycles are also spaced by four
	// times their polls' duration, so a slow Jenkins (a big queue) is
	// polled less often.
	MinInterval time.Duration
	// GCGrace is how long a ferry pod without a Jenkins node, a ferry node
	// without a pod that no queue item needs, or an agent Secret no pod
	// reads is left alone before it is collected; default DefaultGCGrace.
	GCGrace time.Duration
	// DisableGC turns garbage collection of orphans off (it is on by
	// default). Agents whose build ended are deleted regardless.
	DisableGC bool
	// DisableAnchors stops ferry from keeping one offline anchor node per
	// template; then items that wait while Jenkins has no agent at all are
	// only recognized through Label.
	DisableAnchors bool
	// Label optionally names the label expression an item waits for when
	// its why names none (e.g. from the dispatcher's knowledge of the
	// job); "" means unknown.
	Label func(jenkins.QueueItem) string
	// OnFailure is told about every queue item ferry gave up on (after
	// cancelling it) and every build whose agent died under it, e.g. to
	// report it on the commit status. It must not block for long.
	OnFailure func(context.Context, Failure)
	// ImageCheck resolves each template's image manifest before its agents
	// are made (see image.go); ImageTransport, if set, is the HTTP
	// transport for registries.
	ImageCheck     bool
	ImageTransport http.RoundTripper
	// RequestRerun, if set, is asked to re-run a build lost to
	// infrastructure (Failure.RerunReason says how); it returns nil once
	// the request is durable (or declined and reported), and an error to
	// be asked again. The dead agent is kept until it returned nil. Unset:
	// such builds are reported through OnFailure like any lost build.
	RequestRerun func(context.Context, Failure) error
	// OnAgentGone, if set, is told about each agent the provisioner
	// deletes, with its pod's life and build time, right before the
	// delete (so that a crash after the delete cannot lose it; a retried
	// delete tells it again: it must count each agent once, by name).
	// It must not block for long; its failures are its own to log.
	OnAgentGone func(context.Context, AgentGone)
	// Parallelism bounds the concurrent actions of each kind (creations;
	// deletions; taking agents offline), and eight times it bounds the
	// creations queued; default DefaultParallelism.
	Parallelism int
	// Recorder emits Kubernetes Events; default one writing to Kube.
	Recorder record.EventRecorder
	// PodLabels are added to every agent pod and Secret (e.g. the ferry
	// instance).
	PodLabels map[string]string
	// Dynamic reads the AgentPools the templates' warm pools name
	// (warmPool.poolRef) and writes their status; nil: their schedules
	// apply.
	Dynamic dynamic.Interface
	// Fence, when set, is asked right before every act (creating or
	// deleting a node, pod or Secret, taking an agent offline, cancelling
	// an item); an error skips the act. The leader election passes one
	// that fails once this replica cannot be sure it still holds the
	// Lease, so a replica that lost it (frozen past its lease, say) acts
	// on nothing in the moment before its term is ended.
	Fence func() error

	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Clock          clock.WithTicker
	// ScheduleClock is the time warm pool schedules are read at; default
	// Clock. Tests move it across a window's edge or onto an excluded
	// date while everything else runs on real time.
	ScheduleClock clock.PassiveClock
}

// Failure is a queue item ferry gave up on or a build that lost its agent.
type Failure struct {
	QueueID int64
	// TaskName and TaskURL identify the job (for a Pipeline's node block
	// the TaskURL is the run's URL).
	TaskName string
	TaskURL  string
	// Params are the item's build parameters (none for a Pipeline's node
	// block).
	Params   map[string]string
	Template string
	Agent    string
	Reason   eci.Reason
	Message  string
	// Build is set when a running build lost its agent, or is about to.
	Build jenkins.Executable
	// Imminent: the agent still runs the build but is going away (a spot
	// instance about to be reclaimed); the build may yet finish, and then
	// its own result stands. A second Failure follows only if the agent
	// dies of something else.
	Imminent bool
	// Cancelled reports whether ferry cancelled the queue item.
	Cancelled bool
	// RerunReason and RerunCause say why a build lost to infrastructure is
	// re-run (RequestRerun): stable, and in words for the commit.
	RerunReason, RerunCause string
}

func (f Failure) String() string {
	return fmt.Sprintf("%s: %s", f.Reason, f.Message)
}

// Provisioner is the reconcile loop. Create it with New, run it with Run.
type Provisioner struct {
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer
	clock  clock.WithTicker
	m      *metrics
	queue  workqueue.TypedRateLimitingInterface[string]

	rec         record.EventRecorder
	broadcaster record.EventBroadcaster

	pods    corelisters.PodNamespaceLister
	secrets corelisters.SecretNamespaceLister
	// events holds agents' recent Warning events (see events.go).
	events *eventIndex

	// rules are what decide reads of cfg.
	rules *rules
	// mem is touched only by the single reconcile worker (see remember),
	// as is gauged: the agents and waiting items the last cycle counted.
	mem    memory
	gauged [3]tally
	// warmView is the warm pools as the last cycle saw them (WarmPools).
	warmView warmView
	// polledAt is when the current cycle's polls began; lastPoll how long
	// the last cycle's polls took.
	polledAt time.Time
	lastPoll time.Duration

	// lanes bound the concurrent actions of each lane; tasks counts the
	// actions running, which Run waits for before it returns.
	lanes [numLanes]chan struct{}
	tasks sync.WaitGroup

	mu      sync.Mutex
	running bool
	// inflight holds the acts started and not finished, by key; done those
	// that succeeded, until a cycle's polls start after them.
	inflight map[string]act
	done     map[string]doneAct
	// podMade remembers the pods created recently, until the informer
	// shows them, so that no cycle creates one twice; podDeleted those
	// deleted recently, until the informer shows them terminating, so that
	// no cycle deletes one twice.
	podMade    map[string]time.Time
	podDeleted map[string]time.Time
	// rerunAsked holds when each lost build's re-run was accepted, by
	// agent (see infraLost).
	rerunAsked map[string]time.Time
	// images holds each template's image verdict (see image.go).
	images map[string]imageCheck
	// poolLister and poolSynced read the AgentPools (see agentpool.go).
	poolLister cache.GenericNamespaceLister
	poolSynced func() bool
	// kubeBackoff pauses creations after a quota or throttling answer.
	kubeBackoff      time.Time
	kubeBackoffDelay time.Duration

	// batch makes agents' Secrets and pods (see secrets.go).
	batch *batcher
}

const queueKey = "reconcile"

// New checks cfg and builds a provisioner.
func New(cfg Config) (*Provisioner, error) {
	switch {
	case cfg.Jenkins == nil:
		return nil, errors.New("provision: Jenkins is required")
	case cfg.Kube == nil:
		return nil, errors.New("provision: Kube is required")
	case cfg.Namespace == "":
		return nil, errors.New("provision: Namespace is required")
	case len(cfg.Templates) == 0:
		return nil, errors.New("provision: at least one agent template is required")
	case cfg.JenkinsURL == "":
		return nil, errors.New("provision: JenkinsURL (as agents reach it) is required")
	}
	for name, t := range cfg.Templates {
		if t.Name != name {
			return nil, fmt.Errorf("provision: template keyed %q is named %q", name, t.Name)
		}
	}
	if cfg.MaxAgents <= 0 {
		cfg.MaxAgents = DefaultMaxAgents
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	if cfg.GCGrace <= 0 {
		cfg.GCGrace = DefaultGCGrace
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = DefaultParallelism
	}
	telemetry.Fill(&cfg.Logger, &cfg.TracerProvider, &cfg.MeterProvider)
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.ScheduleClock == nil {
		cfg.ScheduleClock = cfg.Clock
	}
	warm, err := compileWarm(cfg.Templates)
	if err != nil {
		return nil, fmt.Errorf("provision: warm pool: %w", err)
	}
	m, err := newMetrics(cfg.MeterProvider.Meter("github.com/ferryci/ferry/pkg/provision"))
	if err != nil {
		return nil, fmt.Errorf("provision: metrics: %w", err)
	}
	p := &Provisioner{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "provision"),
		tracer: cfg.TracerProvider.Tracer("github.com/ferryci/ferry/pkg/provision"),
		clock:  cfg.Clock,
		m:      m,
		rec:    cfg.Recorder,
		rules:  newRules(cfg, warm),
		mem:    newMemory(),
		events: newEventIndex(),

		inflight:   map[string]act{},
		done:       map[string]doneAct{},
		podMade:    map[string]time.Time{},
		podDeleted: map[string]time.Time{},
		rerunAsked: map[string]time.Time{},
		images:     map[string]imageCheck{},
	}
	p.batch = newBatcher(p)
	for i := range p.lanes {
		p.lanes[i] = make(chan struct{}, cfg.Parallelism)
	}
	p.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, cfg.Resync),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "ferry_provision", Clock: cfg.Clock})
	return p, nil
}

// Kick asks for a cycle now, e.g. right after the dispatcher triggered a
// build. It never blocks.
func (p *Provisioner) Kick() { p.queue.Add(queueKey) }

// Run runs the loop until ctx ends. It can run once per Provisioner.
func (p *Provisioner) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("provision: Run called twice")
	}
	p.running = true
	p.mu.Unlock()

	if p.rec == nil {
		p.broadcaster = record.NewBroadcaster(record.WithContext(ctx))
		p.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: p.cfg.Kube.CoreV1().Events(p.cfg.Namespace)})
		p.rec = p.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: eventComponent})
		defer p.broadcaster.Shutdown()
	}

	factory := informers.NewSharedInformerFactoryWithOptions(p.cfg.Kube, 0,
		informers.WithNamespace(p.cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = eci.ManagedSelector }))
	podInf := factory.Core().V1().Pods()
	secInf := factory.Core().V1().Secrets()
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.Kick() },
		UpdateFunc: func(_, _ any) { p.Kick() },
		DeleteFunc: func(obj any) {
			// A pod's events go with it.
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				if _, name, err := cache.SplitMetaNamespaceKey(key); err == nil {
					p.events.forget(name)
				}
			}
			p.Kick()
		},
	}
	if _, err := podInf.Informer().AddEventHandler(kick); err != nil {
		return fmt.Errorf("provision: watch pods: %w", err)
	}
	if _, err := secInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(any) { p.Kick() }}); err != nil {
		return fmt.Errorf("provision: watch secrets: %w", err)
	}
	if err := p.watchEvents(factory); err != nil {
		return fmt.Errorf("provision: watch events: %w", err)
	}
	p.pods = podInf.Lister().Pods(p.cfg.Namespace)
	p.secrets = secInf.Lister().Secrets(p.cfg.Namespace)

	ictx, stopInformers := context.WithCancel(ctx)
	defer stopInformers()
	if err := p.watchPools(ictx); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	factory.Start(ictx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("provision: sync %v cache: %w", typ, ctx.Err())
		}
	}
	p.log.Info("provisioner started", "namespace", p.cfg.Namespace, "templates", p.templateNames(), "max_agents", p.cfg.MaxAgents)

	go func() {
		<-ctx.Done()
		p.queue.ShutDown()
	}()
	go func() {
		t := p.clock.NewTicker(p.cfg.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
				p.queue.Add(queueKey)
			}
		}
	}()
	p.queue.Add(queueKey)

	// Actions still running end with ctx; Run returns after them.
	defer p.tasks.Wait()
	var last time.Time
	for {
		key, quit := p.queue.Get()
		if quit {
			return nil
		}
		if wait := max(p.cfg.MinInterval, pollSpacing*p.lastPoll) - p.clock.Since(last); wait > 0 && !last.IsZero() {
			select {
			case <-ctx.Done():
			case <-p.clock.After(wait):
			}
		}
		last = p.clock.Now()
		next, err := p.reconcile(ctx)
		switch {
		case ctx.Err() != nil:
			p.queue.Done(key)
			return nil
		case err != nil:
			p.log.Warn("reconcile failed; retrying", "error", err)
			p.m.cycleErrors.Add(ctx, 1)
			p.queue.AddRateLimited(key)
		default:
			p.queue.Forget(key)
		}
		if next > 0 {
			p.queue.AddAfter(key, next)
		}
		p.queue.Done(key)
	}
}

// listPods returns ferry's pods from the informer cache.
func (p *Provisioner) listPods() []*corev1.Pod {
	pods, _ := p.pods.List(labels.Everything())
	return pods
}

func (p *Provisioner) listSecrets() []*corev1.Secret {
	s, _ := p.secrets.List(labels.Everything())
	return s
}
