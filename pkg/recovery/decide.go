package recovery

import (
	"slices"
	"time"
)

// Attempt is one delivery attempt a Git host lists for a hook: the first
// delivery of an event or a redelivery of it (same GUID).
type Attempt struct {
	// ID is the host's id of this attempt (GitHub delivery id, GitLab hook
	// event id): what a redelivery names.
	ID int64
	// GUID identifies the event across attempts (GitHub X-GitHub-Delivery,
	// GitLab Idempotency-Key); ferry's receiver deduplicates on it.
	GUID string
	At   time.Time
	// Code is the HTTP status the receiver answered; 0 when none came (a
	// timeout or a failed connection).
	Code  int
	Event string
}

// Verdict is what recovery does with one event (GUID).
type Verdict int

// Verdicts, from the attempts of one GUID.
const (
	// Delivered: some attempt got a 2xx; nothing to do.
	Delivered Verdict = iota
	// Redeliver: no attempt got a 2xx, and the last failure can be cured
	// by sending again (no answer, 5xx, 429, 408, or 401/403/404 from a
	// receiver or ingress that was not ready).
	Redeliver
	// Refused: the receiver refused the payload itself (400, 413, 422…);
	// sending it again gives the same answer.
	Refused
	// TooOld: the last attempt is older than the lookback; redelivering it
	// could outlive the receiver's dedup window.
	TooOld
	// GaveUp: the event was redelivered MaxAttempts-1 times already.
	GaveUp
)

func (v Verdict) String() string {
	return [...]string{"delivered", "redeliver", "refused", "too_old", "gave_up"}[v]
}

// MaxAttempts bounds the attempts of one event recovery leads to: the
// original and two redeliveries.
const MaxAttempts = 3

// Decision is the verdict on one event and, for Redeliver, the attempt to
// redeliver (its latest).
type Decision struct {
	GUID    string
	Verdict Verdict
	Latest  Attempt
}

// Decide groups attempts by GUID and says what to do with each event,
// oldest event first. It is pure: now is the time of the pass.
func Decide(attempts []Attempt, now time.Time, lookback time.Duration) []Decision {
	groups := map[string][]Attempt{}
	var order []string
	for _, a := range attempts {
		if a.GUID == "" {
			continue
		}
		if _, ok := groups[a.GUID]; !ok {
			order = append(order, a.GUID)
		}
		groups[a.GUID] = append(groups[a.GUID], a)
	}
	out := make([]Decision, 0, len(order))
	for _, guid := range order {
		g := groups[guid]
		latest := slices.MaxFunc(g, func(a, b Attempt) int {
			if c := a.At.Compare(b.At); c != 0 {
				return c
			}
			return int(a.ID - b.ID)
		})
		out = append(out, Decision{GUID: guid, Latest: latest, Verdict: verdict(g, latest, now, lookback)})
	}
	slices.SortStableFunc(out, func(a, b Decision) int { return a.Latest.At.Compare(b.Latest.At) })
	return out
}

func verdict(g []Attempt, latest Attempt, now time.Time, lookback time.Duration) Verdict {
	for _, a := range g {
		if a.Code >= 200 && a.Code < 300 {
			return Delivered
		}
	}
	switch {
	case !retryable(latest.Code):
		return Refused
	case now.Sub(latest.At) > lookback:
		return TooOld
	case len(g) >= MaxAttempts:
		return GaveUp
	}
	return Redeliver
}

// retryable reports whether sending again may get another answer.
func retryable(code int) bool {
	switch {
	case code == 0, code >= 500:
		return true
	}
	switch code {
	case 401, 403, 404, 408, 409, 425, 429:
		return true
	}
	return false
}
