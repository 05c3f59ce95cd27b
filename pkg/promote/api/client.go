package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/promote"
	"github.com/ferryci/ferry/pkg/store"
)

// Client talks to the promotion API (what `ferry promote` uses).
type Client struct {
	// BaseURL is ferry's root URL, e.g. http://ferry.ferry.svc:8080.
	BaseURL string
	// Token is the bearer token; empty: HTTP's transport authenticates
	// (e.g. a kubeconfig's credential).
	Token string
	// HTTP defaults to a client with a 30s timeout.
	HTTP *http.Client
}

// Error is an answer other than 2xx.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("ferry answered %d: %s", e.Status, e.Message) }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doWith(ctx, method, path, nil, in, out)
}

func (c *Client) doWith(ctx context.Context, method, path string, header http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("promotion API request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &Error{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// Create asks for a promotion.
func (c *Client) Create(ctx context.Context, r promote.Request) (store.Promotion, error) {
	var p store.Promotion
	err := c.do(ctx, http.MethodPost, "/api/v1/promotions", r, &p)
	return p, err
}

// CreateIdempotent asks for a promotion with an Idempotency-Key (none
// when key is empty): repeating it returns the promotion the first
// request created.
func (c *Client) CreateIdempotent(ctx context.Context, key string, r promote.Request) (store.Promotion, error) {
	var p store.Promotion
	var h http.Header
	if key != "" {
		h = http.Header{IdempotencyHeader: {key}}
	}
	err := c.doWith(ctx, http.MethodPost, "/api/v1/promotions", h, r, &p)
	return p, err
}

// Get reads a promotion.
func (c *Client) Get(ctx context.Context, id string) (store.Promotion, error) {
	var p store.Promotion
	err := c.do(ctx, http.MethodGet, "/api/v1/promotions/"+url.PathEscape(id), nil, &p)
	return p, err
}

// List reads promotions, newest first.
func (c *Client) List(ctx context.Context, app string) ([]store.Promotion, error) {
	var out struct {
		Promotions []store.Promotion `json:"promotions"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/promotions?app="+url.QueryEscape(app), nil, &out)
	return out.Promotions, err
}

// Approve approves the environment a promotion waits for.
func (c *Client) Approve(ctx context.Context, id string, d Decision) (store.Promotion, error) {
	var p store.Promotion
	err := c.do(ctx, http.MethodPost, "/api/v1/promotions/"+url.PathEscape(id)+"/approve", d, &p)
	return p, err
}

// Reject rejects the environment a promotion waits for.
func (c *Client) Reject(ctx context.Context, id string, d Decision) (store.Promotion, error) {
	var p store.Promotion
	err := c.do(ctx, http.MethodPost, "/api/v1/promotions/"+url.PathEscape(id)+"/reject", d, &p)
	return p, err
}

// Rollback asks for an environment to return to an earlier promoted digest.
func (c *Client) Rollback(ctx context.Context, r promote.RollbackRequest) (store.Promotion, error) {
	var p store.Promotion
	err := c.do(ctx, http.MethodPost, "/api/v1/rollbacks", r, &p)
	return p, err
}

// Wait polls a promotion until it is finished (or, with untilWaiting, also
// until it waits for approval), calling seen with every new audit entry.
func (c *Client) Wait(ctx context.Context, id string, every time.Duration, untilWaiting bool, seen func(store.AuditEntry)) (store.Promotion, error) {
	shown := 0
	for {
		p, err := c.Get(ctx, id)
		if err == nil {
			for ; shown < len(p.Audit); shown++ {
				if seen != nil {
					seen(p.Audit[shown])
				}
			}
			if p.Finished() || (untilWaiting && p.State == store.PromotionWaiting) {
				return p, nil
			}
		} else if _, refused := err.(*Error); refused { //nolint:errorlint // Error is returned unwrapped
			return p, err
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(every):
		}
	}
}
