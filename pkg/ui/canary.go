package ui

import (
	"fmt"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
)

// CanarySteps returns an app's environment's canary steps from ferry's
// configuration (none: no canary, or unknown).
type CanarySteps func(app, env string) []config.CanaryStep

// ConfiguredCanary is CanarySteps over the promotion configuration.
func ConfiguredCanary(apps []config.PromotionApp) CanarySteps {
	return func(app, env string) []config.CanaryStep {
		for _, a := range apps {
			if a.Name != app {
				continue
			}
			for _, e := range a.Environments {
				if e.Name == env {
					return e.Canary.Steps
				}
			}
		}
		return nil
	}
}

// Canary step states on the page.
const (
	stepDone    = "done"
	stepCurrent = "current"
	stepPending = "pending"
)

// canaryStep is one step of an environment's canary on the page.
type canaryStep struct {
	N     int
	What  string
	State string
}

// canaryView is an environment's canary on the promotion page.
type canaryView struct {
	Env string
	// Where says how far it is, e.g. "step 2 of 4".
	Where string
	// Since is when the step before the current one ended.
	Since time.Time
	Steps []canaryStep
}

// canaryOf places env's progress on its configured steps; pure. The
// record's CanaryStep is the index of the step to take next; the steps
// are today's configuration (a promotion started before a change ran
// the old ones).
func canaryOf(p store.Promotion, e store.PromotionEnv, steps []config.CanaryStep) *canaryView {
	if len(steps) == 0 {
		return nil
	}
	v := &canaryView{Env: e.Name}
	m := len(steps)
	switch {
	case p.Kind == store.KindRollback:
		v.Where = "a rollback is rolled at once, without its steps"
	case e.Phase == store.EnvCanary:
		v.Where = fmt.Sprintf("step %d of %d", min(e.CanaryStep+1, m), m)
		v.Since = e.StepSince
	case e.CanaryStep >= m:
		v.Where = fmt.Sprintf("all %d steps done", m)
	case e.Phase == store.EnvPending || e.Phase == store.EnvAwaitingApprove || e.Phase == store.EnvApproved:
		v.Where = fmt.Sprintf("%d steps to come", m)
	case e.CanaryStep > 0:
		v.Where = fmt.Sprintf("stopped after step %d of %d", e.CanaryStep, m)
	default:
		v.Where = fmt.Sprintf("%d steps, none taken (see the audit trail)", m)
	}
	for i, s := range steps {
		st := stepPending
		switch {
		case p.Kind == store.KindRollback:
		case i < e.CanaryStep:
			st = stepDone
		case i == e.CanaryStep && e.Phase == store.EnvCanary:
			st = stepCurrent
		}
		v.Steps = append(v.Steps, canaryStep{N: i + 1, What: describeStep(s), State: st})
	}
	return v
}

// describeStep says what a step does, e.g. "setWeight 10".
func describeStep(s config.CanaryStep) string {
	switch {
	case s.Analysis != nil:
		names := make([]string, len(s.Analysis.Metrics))
		for i, m := range s.Analysis.Metrics {
			names[i] = m.Name
		}
		return "analysis of " + strings.Join(names, ", ")
	case s.Pause.Duration > 0:
		return "pause " + s.Pause.String()
	}
	return fmt.Sprintf("setWeight %d", s.SetWeight)
}
