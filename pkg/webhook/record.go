package webhook

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ferryci/ferry/pkg/store"
)

// DeliveryRecorder keeps the answer to each delivery (store.DeliveryLog's
// RecordDelivery).
type DeliveryRecorder interface {
	RecordDelivery(ctx context.Context, d store.Delivery) (store.Delivery, error)
}

// maxRecordsInFlight bounds the records written after their answer; past
// it, a record is written before the handler returns, so a burst slows the
// receiver down instead of growing without bound.
const maxRecordsInFlight = 256

// recorder writes delivery records after the answer, off the request's
// path. A record that cannot be written is logged, never turned into a
// failed delivery: the answer was sent already.
type recorder struct {
	to      DeliveryRecorder
	timeout time.Duration
	log     *slog.Logger
	slots   chan struct{}
	wg      sync.WaitGroup
}

func newRecorder(to DeliveryRecorder, timeout time.Duration, log *slog.Logger) recorder {
	return recorder{to: to, timeout: timeout, log: log, slots: make(chan struct{}, maxRecordsInFlight)}
}

// outcomeOf maps an answer to the delivery log's outcome.
func outcomeOf(code int, a answer) (store.DeliveryOutcome, string) {
	if a.Error != "" || code >= http.StatusBadRequest {
		return store.DeliveryRejected, a.Error
	}
	switch a.Status {
	case "accepted":
		return store.DeliveryAccepted, ""
	case "duplicate":
		return store.DeliveryDuplicate, a.Reason
	case "skipped":
		return store.DeliverySkipped, a.Reason
	case "pong":
		return store.DeliveryPong, ""
	default:
		return store.DeliveryIgnored, a.Reason
	}
}

func (r *recorder) record(ctx context.Context, d store.Delivery, code int, a answer) {
	if r.to == nil {
		return
	}
	d.Outcome, d.Reason = outcomeOf(code, a)
	d.Status, d.Pipelines = code, a.Pipelines
	if a.ID != "" {
		d.EventID = a.ID
	}
	write := func() {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
		defer cancel()
		if _, err := r.to.RecordDelivery(wctx, d); err != nil {
			r.log.WarnContext(ctx, "could not record the delivery's answer in the delivery log",
				"delivery", d.DeliveryID, "outcome", d.Outcome, "error", err)
		}
	}
	select {
	case r.slots <- struct{}{}:
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.slots }()
			write()
		}()
	default:
		write()
	}
}

// Drain waits until the delivery records of answered deliveries are
// written; call it after the HTTP server stopped.
func (r *Receiver) Drain() { r.records.wg.Wait() }
