package promote_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

// Repeated rollbacks without "to" walk back through what production ran
// (C, then B, then A, then nothing left) instead of flipping between the
// last two digests; a failed promotion, a promotion that never reached
// production, one that redelivered the running digest and the rollbacks
// themselves are never picked; of two promotions of one digest the newer
// is.  A new promotion starts the walk over.
func TestRollbackWithoutToWalksBackThroughHistory(t *testing.T) {
	ctx := context.Background()
	st := memStore(t)
	var mu sync.Mutex
	clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	app := config.PromotionApp{Name: "web", Source: "registry.invalid/ci/web", Target: "registry.invalid/release/web",
		Environments: []config.PromotionEnvironment{{Name: "test"}, {Name: "production", Approval: true}}}
	p, err := promote.New(promote.Config{Store: st, Apps: []config.PromotionApp{app}, Now: now})
	if err != nil {
		t.Fatalf("promote.New: %v", err)
	}
	digest := func(c byte) string { return fmt.Sprintf("sha256:%064x", c) }
	// promoted records a promotion of digest d whose environments ended
	// in the given phases.
	promoted := func(id string, d byte, state, testPhase, prodPhase string) store.Promotion {
		t.Helper()
		at := now()
		pr, err := st.PutPromotion(ctx, store.Promotion{
			ID: id, Kind: store.KindPromote, App: "web", SourceDigest: digest(d), Target: app.Target + "@" + digest(d),
			State: state, CreatedAt: at, UpdatedAt: at,
			Environments: []store.PromotionEnv{{Name: "test", Phase: testPhase}, {Name: "production", Phase: prodPhase}},
		})
		if err != nil {
			t.Fatalf("record %s: %v", id, err)
		}
		return pr
	}
	// rollback asks for a production rollback without "to" and, when one
	// is recorded, marks it succeeded as the promoter would.
	rollback := func() (store.Promotion, error) {
		t.Helper()
		rb, err := p.Rollback(ctx, promote.RollbackRequest{App: "web", Environment: "production"})
		if err != nil {
			return rb, err
		}
		rb.State, rb.Environments[0].Phase = store.PromotionSucceeded, store.EnvSucceeded
		if rb, err = st.PutPromotion(ctx, rb); err != nil {
			t.Fatalf("mark rollback %s succeeded: %v", rb.ID, err)
		}
		return rb, nil
	}
	ok, failed := store.PromotionSucceeded, store.PromotionFailed
	promoted("a-before", 'a', ok, store.EnvSucceeded, store.EnvSucceeded)
	pa := promoted("a", 'a', ok, store.EnvSucceeded, store.EnvSucceeded)
	pb := promoted("b", 'b', ok, store.EnvSucceeded, store.EnvSucceeded)
	promoted("x-failed", 'x', failed, store.EnvSucceeded, store.EnvRolledBack)
	promoted("y-test-only", 'y', store.PromotionWaiting, store.EnvSucceeded, store.EnvAwaitingApprove)
	promoted("c-before", 'c', ok, store.EnvSucceeded, store.EnvSucceeded)
	pc := promoted("c", 'c', ok, store.EnvSucceeded, store.EnvSucceeded)

	for _, want := range []store.Promotion{pb, pa} {
		rb, err := rollback()
		if err != nil {
			t.Fatalf("rollback to %s: %v", want.ID, err)
		}
		if rb.RollbackOf != want.ID || rb.SourceDigest != want.SourceDigest || rb.Target != want.Target {
			t.Fatalf("rollback of %s (digest %s); want of %s (digest %s)", rb.RollbackOf, rb.SourceDigest, want.ID, want.SourceDigest)
		}
	}
	if rb, err := rollback(); !errors.Is(err, promote.ErrState) {
		t.Fatalf("rollback past the oldest = of %q, error %v; want %v", rb.RollbackOf, err, promote.ErrState)
	}

	// D is promoted after the rollbacks: rolling back returns to C.
	promoted("d", 'd', ok, store.EnvSucceeded, store.EnvSucceeded)
	rb, err := rollback()
	if err != nil || rb.RollbackOf != pc.ID {
		t.Fatalf("rollback after d = of %q, error %v; want of %s", rb.RollbackOf, err, pc.ID)
	}

	// Test, whose history differs (y reached it), runs d and ran c
	// before: the rollbacks of production do not count there.
	rt, err := p.Rollback(ctx, promote.RollbackRequest{App: "web", Environment: "test"})
	if err != nil || rt.RollbackOf != pc.ID {
		t.Fatalf("rollback of test = of %q, error %v; want of c", rt.RollbackOf, err)
	}
}
