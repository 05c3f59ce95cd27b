package ui

import (
	"testing"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
)

func TestCanaryOf(t *testing.T) {
	t.Parallel()
	steps := []config.CanaryStep{{SetWeight: 10}, {SetWeight: 50}}
	promo := store.Promotion{Kind: store.KindPromote}
	tests := []struct {
		name   string
		p      store.Promotion
		e      store.PromotionEnv
		where  string
		states string
	}{
		{"before its turn", promo, store.PromotionEnv{Phase: store.EnvAwaitingApprove}, "2 steps to come", "pending pending"},
		{"at the first step", promo, store.PromotionEnv{Phase: store.EnvCanary}, "step 1 of 2", "current pending"},
		{"at the second step", promo, store.PromotionEnv{Phase: store.EnvCanary, CanaryStep: 1}, "step 2 of 2", "done current"},
		{"rolled after its steps", promo, store.PromotionEnv{Phase: store.EnvVerifying, CanaryStep: 2}, "all 2 steps done", "done done"},
		{"failed analysis rolled back", promo, store.PromotionEnv{Phase: store.EnvRolledBack, CanaryStep: 1}, "stopped after step 1 of 2", "done pending"},
		{"skipped: the digest ran already", promo, store.PromotionEnv{Phase: store.EnvSucceeded}, "2 steps, none taken (see the audit trail)", "pending pending"},
		{"a rollback", store.Promotion{Kind: store.KindRollback}, store.PromotionEnv{Phase: store.EnvRolling}, "a rollback is rolled at once, without its steps", "pending pending"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := canaryOf(tc.p, tc.e, steps)
			got := ""
			for i, s := range v.Steps {
				if i > 0 {
					got += " "
				}
				got += s.State
			}
			if v.Where != tc.where || got != tc.states {
				t.Errorf("canary = %q [%s], want %q [%s]", v.Where, got, tc.where, tc.states)
			}
		})
	}
	if canaryOf(promo, store.PromotionEnv{}, nil) != nil {
		t.Error("an environment without steps has a canary")
	}
}
