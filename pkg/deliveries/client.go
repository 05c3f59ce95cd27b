package deliveries

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/store"
)

// Client reads the delivery API (what `ferry why` uses).
type Client struct {
	// BaseURL is ferry's root URL, e.g. http://ferry.ferry.svc:8080.
	BaseURL string
	// Token is the API's bearer token.
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

// List reads one page of deliveries and their chains.
func (c *Client) List(ctx context.Context, q store.DeliveryQuery) (Page, error) {
	v := url.Values{}
	for k, val := range map[string]string{"repo": q.Repo, "ref": q.Ref, "sha": q.SHA, "delivery": q.DeliveryID, "after": q.After} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	u := strings.TrimRight(c.BaseURL, "/") + "/api/v1/deliveries?" + v.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Page{}, fmt.Errorf("delivery API request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Page{}, fmt.Errorf("GET /api/v1/deliveries: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Page{}, fmt.Errorf("GET /api/v1/deliveries: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return Page{}, &Error{Status: resp.StatusCode, Message: e.Error}
	}
	var p Page
	if err := json.Unmarshal(data, &p); err != nil {
		return Page{}, fmt.Errorf("GET /api/v1/deliveries: decode answer: %w", err)
	}
	return p, nil
}
