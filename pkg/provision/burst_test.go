package provision

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ferryci/ferry/pkg/jenkins"
	"github.com/ferryci/ferry/test/jenkinsemu"
)

// gatedJenkins lets the first pass agent node creations through and holds
// every later one until open is called (or its context ends): creations
// as slow as they get under a burst.
type gatedJenkins struct {
	Jenkins
	pass int

	mu      sync.Mutex
	created int
	held    int
	gate    chan struct{}
	once    sync.Once
}

func newGatedJenkins(j Jenkins, pass int) *gatedJenkins {
	return &gatedJenkins{Jenkins: j, pass: pass, gate: make(chan struct{})}
}

func (g *gatedJenkins) CreateNode(ctx context.Context, spec jenkins.NodeSpec) error {
	if _, _, ok := parseAgentName(spec.Name); ok {
		g.mu.Lock()
		g.created++
		hold := g.created > g.pass
		if hold {
			g.held++
		}
		g.mu.Unlock()
		if hold {
			select {
			case <-g.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return g.Jenkins.CreateNode(ctx, spec)
}

func (g *gatedJenkins) heldNow() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

func (g *gatedJenkins) open() { g.once.Do(func() { close(g.gate) }) }

// TestOneBuildPerAgentWhileCreationsAreSlow: a burst of items whose agents
// take long to create must not delay taking a running build's agent
// offline, nor deleting it once the build is over — else Jenkins hands the
// idle agent the next waiting item. Here all creations but the first hang
// until the test lets them go: the first agent must still be marked while
// its build runs and be deleted when it ends, with the rest still pending.
func TestOneBuildPerAgentWhileCreationsAreSlow(t *testing.T) {
	e := newEnv(t, nil)
	e.addJob(jenkinsemu.JobSpec{Duration: jenkinsemu.Forever})
	e.startKubelet(&kubelet{})
	gj := newGatedJenkins(e.jc, 1)
	t.Cleanup(gj.open)
	e.start(e.config(func(c *Config) { c.Jenkins = gj; c.Parallelism = 4 }))
	const n = 12
	for i := range n {
		e.trigger(i)
	}

	var first jenkinsemu.Build
	waitFor(t, "the first build to run on a marked agent while the other creations hang", func() bool {
		for _, b := range e.emu.Builds(testJob) {
			if b.Building && b.Node != "" {
				if nd, ok := e.emu.Node(b.Node); ok && nd.TemporarilyOffline {
					first = b
					return true
				}
			}
		}
		return false
	})
	if gj.heldNow() == 0 {
		t.Fatalf("no creation was held: the test did not exercise slow creations")
	}
	if err := e.emu.FinishBuild(testJob, first.Number, jenkinsemu.Success); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("agent %s to go while the other creations hang", first.Node), func() bool {
		_, ok := e.emu.Node(first.Node)
		return !ok
	})
	if got := len(e.emu.Builds(testJob)); got != 1 {
		t.Errorf("%d builds started while only the first agent existed, want 1", got)
	}

	gj.open()
	finished := 1
	for finished < n {
		var b jenkinsemu.Build
		waitFor(t, fmt.Sprintf("build %d to run on a marked agent", finished+1), func() bool {
			for _, x := range e.emu.Builds(testJob) {
				if x.Building && x.Node != "" {
					if nd, ok := e.emu.Node(x.Node); ok && nd.TemporarilyOffline {
						b = x
						return true
					}
				}
			}
			return false
		})
		if err := e.emu.FinishBuild(testJob, b.Number, jenkinsemu.Success); err != nil {
			t.Fatal(err)
		}
		finished++
	}
	waitFor(t, "every agent to go", func() bool { return len(e.pods()) == 0 && len(e.agentNodes()) == 0 })
	ranOn := map[string][]int{}
	for _, b := range e.emu.Builds(testJob) {
		if _, _, ok := parseAgentName(b.Node); !ok || b.Result != jenkinsemu.Success {
			t.Errorf("build %d ran on %q with %s, want a ferry agent and SUCCESS", b.Number, b.Node, b.Result)
		}
		ranOn[b.Node] = append(ranOn[b.Node], b.Number)
	}
	if len(ranOn) != n {
		t.Errorf("builds ran on %d agents, want %d", len(ranOn), n)
	}
	for node, nums := range ranOn {
		if len(nums) != 1 {
			t.Errorf("agent %s ran builds %v, want one", node, nums)
		}
	}
}
