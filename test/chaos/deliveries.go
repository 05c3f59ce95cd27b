package chaos

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Delivery is one GitHub push sent to the cluster and what became of it.
type Delivery struct {
	// GUID is the X-GitHub-Delivery header, the same on every attempt.
	GUID string
	SHA  string
	// EventID is ferry's id of the event, from its answer.
	EventID string
	// Status is the last HTTP status answered (0: no answer).
	Status int
	// Outcome is the last answer's status field ("accepted", "duplicate").
	Outcome string
	// Attempts counts the sends: more than one means it was redelivered.
	Attempts int
	// Err is the last transport error, if the last attempt got no answer.
	Err string
}

// Accepted reports whether ferry took the delivery: answered 202, or
// "duplicate" to a redelivery of one whose first answer was lost.
func (d Delivery) Accepted() bool {
	return d.Status == http.StatusAccepted || (d.Status == http.StatusOK && d.Outcome == "duplicate")
}

// Send sends n signed push deliveries of distinct commits, Options.Senders
// at a time, round-robin over the processes (as a Service would), and
// returns when each was accepted or given up. A delivery that got no
// answer or a 5xx is sent again with the same delivery id (as an operator
// redelivers from GitHub) for Options.RedeliverFor. It may run while
// processes are killed and restarted.
func (c *Cluster) Send(ctx context.Context, n int) []Delivery {
	c.mu.Lock()
	first := c.seq
	c.seq += n
	c.mu.Unlock()
	out := make([]Delivery, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range c.opts.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i] = c.deliver(ctx, first+i)
			}
		}()
	}
	for i := range n {
		select {
		case work <- i:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(work)
	wg.Wait()
	c.mu.Lock()
	c.deliveries = append(c.deliveries, out...)
	c.mu.Unlock()
	return out
}

// Deliveries returns every delivery sent so far whose Send has returned.
func (c *Cluster) Deliveries() []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Delivery(nil), c.deliveries...)
}

func (c *Cluster) deliver(ctx context.Context, seq int) Delivery {
	d := Delivery{GUID: guid(), SHA: sha(seq)}
	body := pushPayload(d.SHA, seq)
	sig := sign(WebhookSecret, body)
	giveUp := time.Now().Add(c.opts.RedeliverFor)
	wait := 50 * time.Millisecond
	for ctx.Err() == nil {
		d.Attempts++
		status, ans, err := c.post(ctx, c.target(), d.GUID, sig, body)
		d.Status, d.Outcome, d.Err = status, ans.Status, ""
		if err != nil {
			d.Err = err.Error()
		}
		if ans.ID != "" {
			d.EventID = ans.ID
		}
		if err == nil && status < 500 {
			return d
		}
		if time.Now().After(giveUp) {
			return d
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait = min(2*wait, time.Second)
	}
	return d
}

// target picks the next process round-robin.
func (c *Cluster) target() *Ferry {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.ferries[c.next%len(c.ferries)]
	c.next++
	return f
}

type answer struct {
	Status string `json:"status"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

func (c *Cluster) post(ctx context.Context, f *Ferry, delivery, sig string, body []byte) (int, answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL()+"/hooks/github", bytes.NewReader(body))
	if err != nil {
		return 0, answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/chaos")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, answer{}, err
	}
	var a answer
	if err := json.Unmarshal(raw, &a); err != nil {
		return resp.StatusCode, answer{}, fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, a, nil
}

// pushPayload is a push of one commit to main, with what ferry reads of
// GitHub's push event.
func pushPayload(sha string, seq int) []byte {
	body, err := json.Marshal(map[string]any{
		"ref":    "refs/heads/main",
		"before": prevSHA(seq),
		"after":  sha,
		"repository": map[string]any{
			"name":      "app",
			"full_name": Repo,
			"clone_url": "https://github.com/" + Repo + ".git",
			"html_url":  "https://github.com/" + Repo,
		},
		"head_commit": map[string]any{
			"id":       sha,
			"message":  fmt.Sprintf("change %d", seq),
			"added":    []string{},
			"removed":  []string{},
			"modified": []string{fmt.Sprintf("src/file%d.go", seq)},
		},
		"commits": []map[string]any{{
			"id":       sha,
			"message":  fmt.Sprintf("change %d", seq),
			"added":    []string{},
			"removed":  []string{},
			"modified": []string{fmt.Sprintf("src/file%d.go", seq)},
		}},
		"pusher": map[string]any{"name": "chaos"},
		"sender": map[string]any{"login": "chaos"},
	})
	if err != nil {
		panic(err)
	}
	return body
}

// sha is a distinct, valid commit id per delivery of a run.
func sha(seq int) string {
	s := sha1.Sum(fmt.Appendf(nil, "chaos-%d", seq))
	return hex.EncodeToString(s[:])
}

func prevSHA(seq int) string {
	if seq == 0 {
		s := sha1.Sum([]byte("chaos-root"))
		return hex.EncodeToString(s[:])
	}
	return sha(seq - 1)
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// guid is a random delivery id shaped like GitHub's.
func guid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
