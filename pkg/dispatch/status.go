package dispatch

import (
	"errors"
	"sync"
	"time"

	"github.com/ferryci/ferry/pkg/event"
	"github.com/ferryci/ferry/pkg/scm"
	"github.com/ferryci/ferry/pkg/store"
)

// statusRetryMax caps the back-off between tries of one record's report,
// and a provider's pause after failures.
const statusRetryMax = 5 * time.Minute

// statusLogEvery is how often a provider whose status API keeps failing
// gets a log line: the first failure is logged at once, the rest are
// counted into one line per interval.
const statusLogEvery = time.Minute

// errProviderPaused: a report was not sent because the provider's status
// API failed recently and its pause has not run out.
var errProviderPaused = errors.New("commit status reports to this provider are paused after failures")

// statusHealth is the tracker's memory of failing reports: a back-off per
// build record and a pause per provider. It lives in memory only: a
// replica that takes over the tracker starts with one try per record.
type statusHealth struct {
	mu        sync.Mutex
	records   map[string]*retryState
	providers map[event.Provider]*providerState
}

type retryState struct {
	failures int
	next     time.Time
}

type providerState struct {
	failures   int // consecutive
	pausedTill time.Time
	lastLog    time.Time
	unlogged   int
}

func newStatusHealth() *statusHealth {
	return &statusHealth{records: map[string]*retryState{}, providers: map[event.Provider]*providerState{}}
}

// backoffAfter doubles from interval with each failure, up to statusRetryMax.
func backoffAfter(failures int, interval time.Duration) time.Duration {
	d := interval
	for i := 1; i < failures && d < statusRetryMax; i++ {
		d *= 2
	}
	return min(d, statusRetryMax)
}

// due reports whether the end of record b should be reported now.
func (h *statusHealth) due(b store.Build, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.providers[b.Event.Provider]; p != nil && now.Before(p.pausedTill) {
		return false
	}
	r := h.records[b.Key]
	return r == nil || !now.Before(r.next)
}

// recordFailed backs off the record key after a failed report.
func (h *statusHealth) recordFailed(key string, now time.Time, interval time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.records[key]
	if r == nil {
		r = &retryState{}
		h.records[key] = r
	}
	r.failures++
	r.next = now.Add(backoffAfter(r.failures, interval))
}

// recordOK clears the back-off of record key.
func (h *statusHealth) recordOK(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.records, key)
}

// retain forgets the back-off of records that are gone.
func (h *statusHealth) retain(builds []store.Build) {
	keep := make(map[string]bool, len(builds))
	for _, b := range builds {
		keep[b.Key] = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.records {
		if !keep[k] {
			delete(h.records, k)
		}
	}
}

// paused reports whether reports to provider wait out a pause.
func (h *statusHealth) paused(provider event.Provider, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.providers[provider]
	return p != nil && now.Before(p.pausedTill)
}

// providerFailed pauses provider after a failed report that may succeed
// later: for the wait the provider asked for, else a back-off. It reports
// whether to log the failure now, and how many went unlogged before it.
func (h *statusHealth) providerFailed(provider event.Provider, err error, now time.Time, interval time.Duration) (log bool, unlogged int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.providers[provider]
	if p == nil {
		p = &providerState{}
		h.providers[provider] = p
	}
	p.failures++
	wait := backoffAfter(p.failures, interval)
	if ra, ok := scm.RetryAfter(err); ok && ra > wait {
		wait = ra
	}
	p.pausedTill = now.Add(wait)
	if p.failures > 1 && now.Sub(p.lastLog) < statusLogEvery {
		p.unlogged++
		return false, 0
	}
	unlogged, p.unlogged, p.lastLog = p.unlogged, 0, now
	return true, unlogged
}

// providerOK ends a provider's failures and reports how many there were.
func (h *statusHealth) providerOK(provider event.Provider) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.providers[provider]
	if p == nil {
		return 0
	}
	delete(h.providers, provider)
	return p.failures
}
