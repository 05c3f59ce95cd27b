package promote_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

var canarySteps = []config.CanaryStep{
	{SetWeight: 10},
	{Analysis: &config.CanaryAnalysis{Metrics: []config.CanaryMetric{{Name: "errors", Query: "x"}}}},
	{SetWeight: 50},
	{Pause: config.Duration{Duration: time.Minute}},
	{SetWeight: 100},
}

func TestNextCanaryMove(t *testing.T) {
	for _, tt := range []struct {
		steps  []config.CanaryStep
		index  int
		move   promote.CanaryMove
		weight int
	}{
		{canarySteps, 0, promote.MoveScale, 10},
		{canarySteps, 1, promote.MoveAnalyze, 0},
		{canarySteps, 2, promote.MoveScale, 50},
		{canarySteps, 3, promote.MovePause, 0},
		{canarySteps, 4, promote.MovePromote, 100}, // setWeight 100 rolls the stable
		{canarySteps, 5, promote.MovePromote, 100}, // past the end (a restart after the last step)
		{canarySteps[:2], 2, promote.MovePromote, 100},
		{nil, 0, promote.MovePromote, 100},
	} {
		got := promote.NextCanaryMove(tt.steps, tt.index)
		if got.Move != tt.move || got.Weight != tt.weight {
			t.Errorf("step %d of %d: %s %d, want %s %d", tt.index, len(tt.steps), got.Move, got.Weight, tt.move, tt.weight)
		}
	}
	if p := promote.NextCanaryMove(canarySteps, 3); p.Pause != time.Minute {
		t.Errorf("pause = %s, want 1m", p.Pause)
	}
}

func TestAfterCanaryMove(t *testing.T) {
	for _, tt := range []struct {
		move   promote.CanaryMove
		result promote.CanaryResult
		phase  string
		next   int
	}{
		{promote.MoveScale, promote.StepDone, store.EnvCanary, 3},
		{promote.MovePause, promote.StepDone, store.EnvCanary, 3},
		{promote.MoveAnalyze, promote.StepDone, store.EnvCanary, 3},
		{promote.MovePromote, promote.StepDone, store.EnvRolling, 2},
		{promote.MoveAnalyze, promote.StepFailed, store.EnvRollingBack, 2},
		{promote.MoveScale, promote.StepFailed, store.EnvRollingBack, 2},
	} {
		phase, next := promote.AfterCanaryMove(tt.move, tt.result, 2)
		if phase != tt.phase || next != tt.next {
			t.Errorf("%s %s at step 2: %s, %d; want %s, %d", tt.move, tt.result, phase, next, tt.phase, tt.next)
		}
	}
}

func TestCanaryReplicas(t *testing.T) {
	for _, tt := range []struct {
		stable int32
		weight int
		want   int32
	}{
		{2, 10, 1},  // 1 of 3 pods: as near 10% as 2 stable pods allow
		{9, 10, 1},  // 1 of 10
		{10, 10, 2}, // 10/9 rounds up: 2 of 12
		{4, 50, 4},  // half of 8
		{3, 25, 1},  // 1 of 4
		{3, 75, 9},  // 9 of 12
		{1, 1, 1},   // never zero
		{0, 50, 1},  // a stable scaled to zero still gets one canary pod
		{5, 100, 5},
	} {
		if got := promote.CanaryReplicas(tt.stable, tt.weight); got != tt.want {
			t.Errorf("CanaryReplicas(%d, %d) = %d, want %d", tt.stable, tt.weight, got, tt.want)
		}
	}
}

// withCanary gives test canary steps (setWeight 10 ... 100) and counts
// the canary Deployments created.
func withCanary(creates *int) func(*machine) {
	return func(m *machine) {
		m.app.Environments[0].Canary = config.Canary{Steps: canarySteps, Prometheus: "http://prometheus.invalid"}
		m.kube.PrependReactor("create", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
			*creates++
			return false, nil, nil
		})
	}
}

func canaryAt(step int) func(*store.Promotion) {
	return func(p *store.Promotion) {
		at(0, store.EnvRolling)(p)
		p.Environments[0].Phase, p.Environments[0].CanaryStep, p.Environments[0].StepSince = store.EnvCanary, step, t0
	}
}

func (m *machine) canary(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d, err := m.kube.AppsV1().Deployments(nsTest).Get(context.Background(), "web-canary", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCanarySteps(t *testing.T) {
	step := func(t *testing.T, m *machine, in store.Promotion) store.Promotion {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := m.p.Step(ctx, in)
		if err != nil {
			t.Fatalf("step: %v", err)
		}
		return got
	}
	last := func(p store.Promotion) store.AuditEntry { return p.Audit[len(p.Audit)-1] }

	t.Run("a pending environment with steps enters them after recording what runs", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		got := step(t, m, promotion())
		e := got.Environments[0]
		if e.Phase != store.EnvCanary || e.CanaryStep != 0 || len(e.Previous) != 1 || creates != 0 {
			t.Errorf("phase %s step %d previous %+v creates %d; want canary at step 0, previous recorded, nothing created", e.Phase, e.CanaryStep, e.Previous, creates)
		}
	})

	t.Run("setWeight makes the canary beside the stable, and again after a restart changes nothing", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		in := promotion(canaryAt(0))
		got := step(t, m, in)
		if e := got.Environments[0]; e.Phase != store.EnvCanary || e.CanaryStep != 1 || !e.StepSince.Equal(m.now) {
			t.Errorf("phase %s step %d since %s; want canary at step 1 since now", e.Phase, e.CanaryStep, e.StepSince)
		}
		if a := last(got); a.Action != "canary step" || !strings.Contains(a.Detail, "step 1/5 setWeight 10: web-canary: 1 pods beside 1 of web (50% of pods)") {
			t.Errorf("audit %+v", a)
		}
		c := m.canary(t)
		if c == nil || *c.Spec.Replicas != 1 || c.Spec.Template.Spec.Containers[0].Image != theTarget ||
			c.Spec.Template.Spec.Containers[1].Image != "registry.example/proxy:1" ||
			c.Spec.Selector.MatchLabels["ferry.dev/track"] != "canary" || c.Spec.Template.Labels["ferry.dev/track"] != "canary" {
			t.Fatalf("canary = %+v; want 1 replica of the target, the sidecar kept, labelled canary", c)
		}
		if m.runs(t, nsTest) != v0 || m.updates[nsTest] != 0 {
			t.Errorf("the stable was changed: runs %s, %d updates", m.runs(t, nsTest), m.updates[nsTest])
		}
		// A restart before the record was stored takes the same step again.
		again := step(t, m, in)
		if creates != 1 || again.Environments[0].CanaryStep != 1 || m.canary(t).Generation != c.Generation {
			t.Errorf("after the repeat: %d creates, step %d, canary generation %d -> %d; want one canary, unchanged", creates, again.Environments[0].CanaryStep, c.Generation, m.canary(t).Generation)
		}
	})

	t.Run("a pause counts from the step before, across restarts", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		m.now = t0.Add(2 * time.Minute) // the pause of 1m began at t0
		got := step(t, m, promotion(canaryAt(3)))
		if e := got.Environments[0]; e.CanaryStep != 4 || !strings.Contains(last(got).Detail, "step 4/5 pause 1m0s: paused") {
			t.Errorf("step %d, audit %+v", e.CanaryStep, last(got))
		}
	})

	t.Run("setWeight 100 rolls the stable, which then deletes the canary", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		_ = step(t, m, promotion(canaryAt(0))) // a canary exists
		got := step(t, m, promotion(canaryAt(4)))
		if e := got.Environments[0]; e.Phase != store.EnvRolling {
			t.Fatalf("phase %s, want rolling", e.Phase)
		}
		got = step(t, m, got)
		if e := got.Environments[0]; e.Phase != store.EnvVerifying || m.runs(t, nsTest) != theTarget || m.canary(t) != nil {
			t.Errorf("phase %s, runs %s, canary %v; want verifying the target with the canary deleted", e.Phase, m.runs(t, nsTest), m.canary(t) != nil)
		}
		if a := last(got); a.Action != "rolled out" || !strings.Contains(a.Detail, "canary deleted: "+nsTest+"/web-canary") {
			t.Errorf("audit %+v", a)
		}
	})

	t.Run("a failed analysis rolls back and deletes the canary, the stable untouched", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		m.app.Environments[0].Canary.Steps[1].Analysis.Interval.Duration = time.Millisecond
		m.app.Environments[0].Canary.Steps[1].Analysis.InconclusiveLimit = 1
		_ = step(t, m, promotion(canaryAt(0)))
		got := step(t, m, promotion(canaryAt(1))) // Prometheus is unreachable: inconclusive
		if e := got.Environments[0]; e.Phase != store.EnvRollingBack || !strings.Contains(got.Reason, "canary step 2/5 analysis of errors: failed after 1 rounds") {
			t.Fatalf("phase %s reason %q; want rolling back for the analysis", e.Phase, got.Reason)
		}
		got = step(t, m, got)
		if got.State != store.PromotionFailed || m.canary(t) != nil || m.runs(t, nsTest) != v0 || m.updates[nsTest] != 0 {
			t.Errorf("state %s, canary left %v, runs %s, %d stable updates; want failed, no canary, v0 untouched", got.State, m.canary(t) != nil, m.runs(t, nsTest), m.updates[nsTest])
		}
		if a := last(got); a.Action != "rolled back" || !strings.Contains(a.Detail, "canary deleted") {
			t.Errorf("audit %+v", a)
		}
	})

	t.Run("a Deployment named like the canary that is not ferry's is left alone and fails the step", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		other := deployment(nsTest, "registry.example/other:1")
		other.Name = "web-canary"
		if _, err := m.kube.AppsV1().Deployments(nsTest).Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := step(t, m, promotion(canaryAt(0)))
		if got.Environments[0].Phase != store.EnvRollingBack || !strings.Contains(got.Reason, "is not ferry's canary") {
			t.Fatalf("phase %s reason %q", got.Environments[0].Phase, got.Reason)
		}
		_ = step(t, m, got)
		if c := m.canary(t); c == nil || c.Spec.Template.Spec.Containers[0].Image != "registry.example/other:1" {
			t.Errorf("someone else's web-canary was changed or deleted: %+v", c)
		}
	})

	t.Run("another promotion in the environment's steps holds a new one back", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		other := promotion(canaryAt(1), func(p *store.Promotion) { p.ID = "20260314-140000-00000001" })
		if _, err := m.store.PutPromotion(context.Background(), other); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := m.p.Step(ctx, promotion()); !errors.Is(err, promote.ErrBusy) || !strings.Contains(err.Error(), other.ID) {
			t.Errorf("err = %v, want busy naming %s", err, other.ID)
		}
		other.State = store.PromotionFailed
		other.Revision = 1
		if _, err := m.store.PutPromotion(context.Background(), other); err != nil {
			t.Fatal(err)
		}
		if got := step(t, m, promotion()); got.Environments[0].Phase != store.EnvCanary {
			t.Errorf("after the other finished: phase %s, want canary", got.Environments[0].Phase)
		}
	})

	t.Run("a digest the environment runs already skips the steps", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		m.set(nsTest, theTarget)
		got := step(t, m, promotion())
		if got.Environments[0].Phase != store.EnvRolling {
			t.Errorf("phase %s, want rolling (and verifying after)", got.Environments[0].Phase)
		}
	})

	t.Run("a rollback skips the steps", func(t *testing.T) {
		var creates int
		m := newMachine(t, withCanary(&creates))
		got := step(t, m, promotion(func(p *store.Promotion) {
			p.Kind, p.RollbackOf, p.Environments = store.KindRollback, "p0", p.Environments[:1]
		}))
		if got.Environments[0].Phase != store.EnvRolling {
			t.Errorf("phase %s, want rolling", got.Environments[0].Phase)
		}
	})
}
