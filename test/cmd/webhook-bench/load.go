package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// generator makes the requests: one signed body, a fresh delivery id each.
type generator struct {
	body      []byte
	signature string
	prefix    string
	seq       atomic.Uint64
}

func newGenerator(body []byte, secret string) (*generator, error) {
	runID, err := newRunID()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	// The signature covers the body only, so one body signed once serves
	// every request; the delivery id (a header) is what makes each unique.
	return &generator{body: body, signature: "sha256=" + hex.EncodeToString(m.Sum(nil)), prefix: "bench-" + runID + "-"}, nil
}

// send posts one delivery and reads the whole answer; it returns the
// status code, or an error when no answer came.
func (g *generator) send(ctx context.Context, t *target) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(g.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/webhook-bench")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", g.prefix+strconv.FormatUint(g.seq.Add(1), 10))
	req.Header.Set("X-Hub-Signature-256", g.signature)
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("read the answer: %w", err)
	}
	return resp.StatusCode, nil
}

// recorder collects one run's samples; it is not safe for concurrent use
// (each closed-loop client has its own, the open loop locks).
type recorder struct {
	latencies []time.Duration
	lags      []time.Duration
	accepted  int64
	codes     map[string]int64
	lastErr   string
}

func newRecorder(capacity int) *recorder {
	return &recorder{latencies: make([]time.Duration, 0, capacity), codes: map[string]int64{}}
}

func (r *recorder) add(lat time.Duration, code int, err error) {
	r.latencies = append(r.latencies, lat)
	switch {
	case err != nil:
		r.codes["transport"]++
		r.lastErr = err.Error()
	case code == http.StatusAccepted:
		r.accepted++
	default:
		r.codes[strconv.Itoa(code)]++
	}
}

func (r *recorder) merge(o *recorder) {
	r.latencies = append(r.latencies, o.latencies...)
	r.lags = append(r.lags, o.lags...)
	r.accepted += o.accepted
	for k, v := range o.codes {
		r.codes[k] += v
	}
	if o.lastErr != "" {
		r.lastErr = o.lastErr
	}
}

// closedLoop runs c clients back to back for d or n requests in all (n 0:
// no limit).
func closedLoop(ctx context.Context, t *target, g *generator, c int, d time.Duration, n int) (Result, error) {
	var issued atomic.Int64
	recs := make([]*recorder, c)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for i := range recs {
		recs[i] = newRecorder(4096)
		wg.Add(1)
		go func(rec *recorder) {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if n > 0 && issued.Add(1) > int64(n) {
					return
				}
				t0 := time.Now()
				code, err := g.send(ctx, t)
				rec.add(time.Since(t0), code, err)
			}
		}(recs[i])
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("closed loop against %s: %w", t.name, err)
	}
	all := newRecorder(0)
	for _, r := range recs {
		all.merge(r)
	}
	res := all.result(t.name, phaseClosed, elapsed)
	res.Concurrency = c
	return res, nil
}

// openLoop sends at rate requests/s on a fixed schedule for d. A request
// is due at start + i/rate; its latency runs from then, so time spent
// waiting for a free slot (at most maxInFlight in flight) or behind a late
// generator counts against the server, as it would for a real sender.
func openLoop(ctx context.Context, t *target, g *generator, rate float64, d time.Duration, maxInFlight int) (Result, error) {
	total := int(math.Round(rate * d.Seconds()))
	if total < 1 {
		total = 1
	}
	interval := time.Duration(float64(time.Second) / rate)
	rec := newRecorder(total)
	rec.lags = make([]time.Duration, 0, total)
	var mu sync.Mutex
	slots := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			lag := time.Since(due)
			code, err := g.send(ctx, t)
			lat := time.Since(due)
			mu.Lock()
			rec.add(lat, code, err)
			rec.lags = append(rec.lags, lag)
			mu.Unlock()
		}()
	}
	wg.Wait()
	// The schedule spans d: a run whose answers all came within it held
	// the rate exactly, one with a tail took longer.
	elapsed := max(time.Since(start), d)
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("open loop against %s: %w", t.name, err)
	}
	res := rec.result(t.name, phaseOpen, elapsed)
	res.OfferedRate = rate
	res.Scheduled = int64(total)
	res.SendLagP99Ms = ms(percentile(rec.lags, 0.99))
	return res, nil
}

// result summarizes the samples of one run that took elapsed.
func (r *recorder) result(targetName, phase string, elapsed time.Duration) Result {
	slices.Sort(r.latencies)
	res := Result{
		Target: targetName, Phase: phase,
		Requests: int64(len(r.latencies)), Accepted: r.accepted,
		ElapsedSec:     elapsed.Seconds(),
		AcceptedPerSec: float64(r.accepted) / elapsed.Seconds(),
		P50Ms:          ms(percentile(r.latencies, 0.50)),
		P90Ms:          ms(percentile(r.latencies, 0.90)),
		P99Ms:          ms(percentile(r.latencies, 0.99)),
		MaxMs:          ms(percentile(r.latencies, 1)),
		LastError:      r.lastErr,
	}
	for k, v := range r.codes {
		if res.ErrorsByCode == nil {
			res.ErrorsByCode = map[string]int64{}
		}
		res.ErrorsByCode[k] = v
		res.Errors += v
	}
	return res
}

// percentile is the nearest-rank percentile of sorted samples (p in 0..1);
// it sorts a copy when the samples are not sorted.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	if !slices.IsSorted(samples) {
		samples = slices.Sorted(slices.Values(samples))
	}
	i := int(math.Ceil(p*float64(len(samples)))) - 1
	return samples[min(max(i, 0), len(samples)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
