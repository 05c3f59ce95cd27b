package chaos_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/test/chaos"
	"github.com/ferryci/ferry/test/jenkinsemu"
	"github.com/ferryci/ferry/test/testbed"
)

// The provisioner's Lease on the bed: short, so a hand-off takes seconds.
const (
	haLease       = "ferry-provisioner"
	haLeaseFor    = 4 * time.Second
	haRenewWithin = 3 * time.Second
	haRetryEvery  = 500 * time.Millisecond
	agentLabel    = "ferry-agent"
)

// haBed is three ferry processes provisioning agents on the test bed's
// API server, with the test playing the agents.
type haBed struct {
	t  *testing.T
	c  *chaos.Cluster
	cs kubernetes.Interface
	ns string

	mu     sync.Mutex
	agents map[string]bool // every agent the player connected

	// prev is the report after the previous fault: each fault's figures
	// are the difference.
	prev chaos.Report
}

func startHABed(t *testing.T) *haBed {
	t.Helper()
	if testing.Short() {
		t.Skip("fault suite on the bed: skipped under -short (it builds ferry and needs the test bed's API server)")
	}
	return startHABedOn(t, testbed.Kube(t).Get(testbed.KeyKubeconfigFerry))
}

// startHABedOn is startHABed with ferry's provisioners reaching the API
// server through kubeconfig.
func startHABedOn(t *testing.T, kubeconfig string) *haBed {
	t.Helper()
	ns := testbed.Namespace(t, testbed.AgentsRole)
	extra := fmt.Sprintf(`agents:
  enabled: true
  namespace: %s
  kubeconfig: %s
  resync: 500ms
  gcGrace: 5s
  leaderElection:
    enabled: true
    leaseName: %s
    leaseDuration: %s
    renewDeadline: %s
    retryPeriod: %s
  templates:
    - name: default
      labels: [%s]
`, ns, kubeconfig, haLease, haLeaseFor, haRenewWithin, haRetryEvery, agentLabel)
	c := chaos.Start(t, chaos.Options{
		Replicas: 3, BuildDuration: 200 * time.Millisecond, ExtraYAML: extra, LogLevel: "debug",
		Senders: 8, Workers: 16,
	})
	if err := c.Jenkins.UpdateJob(chaos.Job, func(s *jenkinsemu.JobSpec) { s.Label = agentLabel }); err != nil {
		t.Fatal(err)
	}
	b := &haBed{t: t, c: c, cs: testbed.Clientset(t), ns: ns, agents: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.playAgents(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

// playAgents connects every agent pod that runs, as the agent in the pod
// would.
func (b *haBed) playAgents(ctx context.Context) {
	for ctx.Err() == nil {
		pods, err := b.cs.CoreV1().Pods(b.ns).List(ctx, metav1.ListOptions{LabelSelector: eci.LabelAgent})
		if err == nil {
			for _, p := range pods.Items {
				name := p.Labels[eci.LabelAgent]
				if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
					continue
				}
				// An agent whose pod runs connects, and connects again
				// after the controller restarted, as inbound agents do.
				if n, ok := b.c.Jenkins.Node(name); !ok || n.Connected {
					continue
				}
				if b.c.Jenkins.ConnectAgent(name, b.c.Jenkins.AgentSecret(name)) == nil {
					b.mu.Lock()
					b.agents[name] = true
					b.mu.Unlock()
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// leader returns the process holding the provisioner's Lease, or nil.
func (b *haBed) leader(ctx context.Context) *chaos.Ferry {
	l, err := b.cs.CoordinationV1().Leases(b.ns).Get(ctx, haLease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return nil
	}
	// The identity is the --consumer name the harness gives each process
	// (without it, "<hostname>-<pid>").
	id := *l.Spec.HolderIdentity
	for _, f := range b.c.Ferries() {
		if pid := f.PID(); pid != 0 && (id == f.Name() || strings.HasSuffix(id, fmt.Sprintf("-%d", pid))) {
			return f
		}
	}
	return nil
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// newLeader waits until a process other than old holds the Lease and
// returns it and how long that took.
func (b *haBed) newLeader(t *testing.T, old *chaos.Ferry, timeout time.Duration) (*chaos.Ferry, time.Duration) {
	var next *chaos.Ferry
	took := waitFor(t, "another replica takes the provisioner's Lease", timeout, func() bool {
		next = b.leader(context.Background())
		return next != nil && next != old
	})
	return next, took
}

// agentPods counts the agent pods there are now.
func (b *haBed) agentPods() int {
	pods, err := b.cs.CoreV1().Pods(b.ns).List(context.Background(), metav1.ListOptions{LabelSelector: eci.LabelAgent})
	if err != nil {
		return -1
	}
	return len(pods.Items)
}

// leaks counts what is left once every build ended: agent pods, agent
// Secrets, and Jenkins nodes of agents.
func (b *haBed) leaks() (pods, secrets, nodes int) {
	ctx := context.Background()
	if p, err := b.cs.CoreV1().Pods(b.ns).List(ctx, metav1.ListOptions{}); err == nil {
		pods = len(p.Items)
	}
	if s, err := b.cs.CoreV1().Secrets(b.ns).List(ctx, metav1.ListOptions{LabelSelector: eci.LabelAgent}); err == nil {
		secrets = len(s.Items)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.c.Jenkins.Nodes() {
		if b.agents[n.Name] || strings.HasPrefix(n.Name, "ferry-agent-") {
			nodes++
		}
	}
	return pods, secrets, nodes
}

// settle checks the invariants after a fault: every accepted delivery
// became exactly one build, nothing refused was built, every build ended,
// and no pod, Secret or Jenkins node is left; then no replica acted
// without the Lease.
func (b *haBed) settle(t *testing.T, fault string, handoff time.Duration, extra string) {
	t.Helper()
	rep := b.c.WaitBuiltOnce(3 * time.Minute)
	waitFor(t, "every build ended", 3*time.Minute, func() bool {
		for _, bl := range b.c.Jenkins.Builds(chaos.Job) {
			if bl.Building {
				return false
			}
		}
		return len(b.c.Jenkins.QueueItems()) == 0
	})
	var pods, secrets, nodes int
	start := time.Now()
	for {
		pods, secrets, nodes = b.leaks()
		if pods+secrets+nodes == 0 || time.Since(start) > time.Minute {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pods+secrets+nodes > 0 {
		t.Errorf("%s: left a minute after the last build: %d pods, %d agent Secrets, %d Jenkins agent nodes", fault, pods, secrets, nodes)
	}
	b.checkActsUnderLease(t, fault)
	d := rep
	d.Sent -= b.prev.Sent
	d.Accepted -= b.prev.Accepted
	d.Redelivered -= b.prev.Redelivered
	d.Builds -= b.prev.Builds
	d.Reruns -= b.prev.Reruns
	d.Doubles -= b.prev.Doubles
	d.Dropped -= b.prev.Dropped
	b.prev = rep
	chaos.Summary(t, "fault=%s handoff=%s %s leaked=%d %s", fault, handoff.Round(10*time.Millisecond), d, pods+secrets+nodes, extra)
}

// act is one change a process logged, or a term it began.
type act struct {
	at    time.Time
	who   string // process name and start
	msg   string
	agent string
}

// checkActsUnderLease reads every process's logs: each act it started
// (the provisioner logs "acting" once its fence let it, with the time of
// the check, before the API calls) must fall in a term of its own — after
// it logged "leading" and before another process did. An act's result may
// be logged later: a request sent before a freeze is answered after the
// thaw.
func (b *haBed) checkActsUnderLease(t *testing.T, fault string) {
	t.Helper()
	var terms, acts []act
	for _, f := range b.c.Ferries() {
		for n := 1; n <= f.Starts(); n++ {
			who := fmt.Sprintf("%s(start %d)", f.Name(), n)
			for _, l := range f.Logs(n, "leading") {
				if l.Msg() == "leading" && l["work"] == "provisioner" {
					terms = append(terms, act{at: logTime(l), who: who})
				}
			}
			for _, l := range f.Logs(n, "acting") {
				if l.Msg() == "acting" {
					a, _ := l["act"].(string)
					at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(l["fenced_at"]))
					if err != nil {
						t.Errorf("%s: %s logged an act without fenced_at: %v", fault, who, l)
						continue
					}
					acts = append(acts, act{at: at, who: who, msg: l.Msg(), agent: a})
				}
			}
		}
	}
	slices.SortFunc(terms, func(x, y act) int { return x.at.Compare(y.at) })
	for _, a := range acts {
		var holder *act
		for i := range terms {
			if terms[i].at.After(a.at) {
				break
			}
			holder = &terms[i]
		}
		switch {
		case holder == nil:
			t.Errorf("%s: %s started %q at %s before any replica led", fault, a.who, a.agent, a.at.Format(time.StampMilli))
		case holder.who != a.who:
			t.Errorf("%s: %s started %q at %s while %s held the Lease since %s: it acted without its Lease",
				fault, a.who, a.agent, a.at.Format(time.StampMilli), holder.who, holder.at.Format(time.StampMilli))
		}
	}
	if len(acts) == 0 {
		t.Errorf("%s: no replica logged a single act: the check proves nothing (is the log level debug?)", fault)
	}
}

func logTime(l chaos.LogLine) time.Time {
	at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(l["time"]))
	return at
}

// burst is how many builds a fault hits: 200 in the full suite, fewer in
// make test's bounded run.
func burst() int {
	if os.Getenv("FERRY_CHAOS") == "full" {
		return 200
	}
	return 60
}

// sendBurst sends n deliveries in the background and returns a channel
// closed when they were all answered.
func (b *haBed) sendBurst(n int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		b.c.Send(ctx, n)
	}()
	return done
}

// TestProvisionerFaultsOnTheBed runs three ferry processes whose
// provisioners share a Lease on the bed's API server and hurts them one
// fault at a time, checking after each that every accepted delivery became
// exactly one build, nothing is left behind, and no replica acted without
// the Lease:
//
//   - the leader is SIGKILLed mid-burst (and restarted);
//   - the leader is frozen (SIGSTOP) past its lease mid-burst, then thawed:
//     it must not act after losing the Lease, and must step down;
//   - Redis is restarted mid-burst with no replica: receivers answer 503
//     meanwhile, senders redeliver, nothing answered 202 is lost.
func TestProvisionerFaultsOnTheBed(t *testing.T) {
	b := startHABed(t)
	n := burst()
	// Wait for a first leader before anything is sent.
	waitFor(t, "a provisioner leader", time.Minute, func() bool { return b.leader(context.Background()) != nil })

	t.Run("leader_killed", func(t *testing.T) {
		sent := b.sendBurst(n)
		waitFor(t, "agent pods being created for the burst", 2*time.Minute, func() bool { return b.agentPods() >= 5 })
		old := b.leader(context.Background())
		if old == nil {
			t.Fatal("nobody holds the provisioner's Lease mid-burst")
		}
		if err := old.Kill(); err != nil {
			t.Fatal(err)
		}
		_, handoff := b.newLeader(t, old, 2*haLeaseFor+30*time.Second)
		if err := old.Start(); err != nil {
			t.Fatal(err)
		}
		<-sent
		b.settle(t, "provisioner-leader-SIGKILL", handoff, "")
	})

	t.Run("leader_frozen", func(t *testing.T) {
		sent := b.sendBurst(n)
		waitFor(t, "agent pods being created for the burst", 2*time.Minute, func() bool { return b.agentPods() >= 5 })
		old := b.leader(context.Background())
		if old == nil {
			t.Fatal("nobody holds the provisioner's Lease mid-burst")
		}
		if err := old.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		frozen := time.Now()
		_, handoff := b.newLeader(t, old, 2*haLeaseFor+30*time.Second)
		// Frozen for longer than its lease, and through the new leader's
		// first acts.
		if rest := 2*haLeaseFor - time.Since(frozen); rest > 0 {
			time.Sleep(rest)
		}
		thawed := time.Now()
		if err := old.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the thawed leader steps down", 30*time.Second, func() bool {
			for _, l := range old.Logs(0, "not leading") {
				if l["work"] == "provisioner" && logTime(l).After(thawed) {
					return true
				}
			}
			return false
		})
		if !old.Running() {
			t.Errorf("%s exited after being thawed instead of stepping down", old.Name())
		}
		<-sent
		b.settle(t, "provisioner-leader-SIGSTOP", handoff, fmt.Sprintf("frozen=%s", thawed.Sub(frozen).Round(100*time.Millisecond)))
	})

	t.Run("redis_restarted", func(t *testing.T) {
		// Half the burst is accepted and being provisioned, the other half
		// arrives while Redis is down: answered 503, redelivered.
		first := b.sendBurst(n / 2)
		waitFor(t, "agent pods being created for the burst", 2*time.Minute, func() bool { return b.agentPods() >= 5 })
		<-first
		if err := b.c.Redis.Stop(); err != nil {
			t.Fatal(err)
		}
		down := time.Now()
		sent := b.sendBurst(n - n/2)
		// Down long enough that every process answers deliveries with 503.
		time.Sleep(2 * time.Second)
		if err := b.c.Redis.Start(); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		<-sent
		before := b.prev.Redelivered
		b.settle(t, "redis-restart-no-replica", 0, fmt.Sprintf("down=%s", up.Sub(down).Round(100*time.Millisecond)))
		if b.prev.Redelivered == before {
			t.Error("no delivery was refused while Redis was down: the fault hit nothing")
		}
	})
}
