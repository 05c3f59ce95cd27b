package promote_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

// lossyStore loses the first promotion write, as a crash between
// recording the Idempotency-Key and the promotion would.
type lossyStore struct {
	store.Store
	lost bool
}

func (s *lossyStore) PutPromotion(ctx context.Context, p store.Promotion) (store.Promotion, error) {
	if !s.lost {
		s.lost = true
		return store.Promotion{}, errors.New("connection reset")
	}
	return s.Store.PutPromotion(ctx, p)
}

// A create whose key was recorded but whose promotion was not is
// completed by its retry, under the id the key holds; further retries
// return that promotion.
func TestIdempotencyKeySurvivesALostCreate(t *testing.T) {
	m := newMachine(t, nil)
	st := &lossyStore{Store: m.store}
	p, err := promote.New(promote.Config{Store: st, Apps: []config.PromotionApp{m.app}, Registry: m.images})
	if err != nil {
		t.Fatal(err)
	}
	r := promote.Request{App: "web", Image: srcRepo + ":build-7", BuildURL: "http://jenkins/job/web/7/", RequestedBy: "pipeline"}
	if _, _, err := p.CreateOnce(ctx(), "k", r); err == nil {
		t.Fatal("the lost write was not reported")
	}
	first, replayed, err := p.CreateOnce(ctx(), "k", r)
	if err != nil || replayed {
		t.Fatalf("retry = %+v, replayed %v, %v; want it created now", first, replayed, err)
	}
	again, replayed, err := p.CreateOnce(ctx(), "k", r)
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("second retry = %s, replayed %v, %v; want %s replayed", again.ID, replayed, err, first.ID)
	}
	if all, _ := m.store.ListPromotions(ctx()); len(all) != 1 {
		t.Errorf("%d promotions stored, want 1", len(all))
	}
}
