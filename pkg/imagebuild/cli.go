package imagebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Exit codes of `ferry image build`.
const (
	ExitOK       = 0
	ExitFailed   = 1 // the build failed
	ExitUsage    = 2 // bad flags, or ferry refused the request
	ExitTimedOut = 3
)

// Usage describes `ferry image build`.
const Usage = `usage: ferry image build --destination REPO:TAG [flags]

Builds the commit's Dockerfile on ECI with kaniko, in a pod of ferry's that
alone holds the registry credentials, and prints the pushed image by digest
(repo@sha256:…), for ferry promote create --image.

  --destination REPO:TAG   where to push (one of ferry's images.destinations)
  --git-url URL            the repository [env FERRY_GIT_URL]
  --ref REF                the ref of the commit [env FERRY_GIT_REF]
  --sha SHA                the commit [env FERRY_GIT_SHA]
  --context-path DIR       the build context in the repository (default: its root)
  --dockerfile FILE        relative to the context (default Dockerfile)
  --build-arg K=V          repeatable; visible in the pod spec, never for secrets
  --output-file FILE       also write repo@sha256:… to FILE
  --timeout 30m            how long to wait for the outcome
  --server URL             ferry's URL [env FERRY_URL]

The token comes from FERRY_PROMOTION_API_TOKEN. Exit codes: 0 built and
pushed, 1 the build failed, 2 a bad request, 3 timed out.
`

type buildArgs map[string]string

func (b buildArgs) String() string { return fmt.Sprint(map[string]string(b)) }
func (b buildArgs) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q: write --build-arg NAME=VALUE", v)
	}
	b[k] = val
	return nil
}

// Run runs `ferry image build args…` (args after "build") and returns the
// exit code.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if getenv == nil {
		getenv = os.Getenv
	}
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprint(stderr, Usage)
		return ExitUsage
	}
	fs := flag.NewFlagSet("ferry image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, Usage) }
	var r Request
	args2 := buildArgs{}
	fs.StringVar(&r.Destination, "destination", "", "")
	fs.StringVar(&r.GitURL, "git-url", getenv("FERRY_GIT_URL"), "")
	fs.StringVar(&r.Ref, "ref", getenv("FERRY_GIT_REF"), "")
	fs.StringVar(&r.SHA, "sha", getenv("FERRY_GIT_SHA"), "")
	fs.StringVar(&r.ContextPath, "context-path", "", "")
	fs.StringVar(&r.Dockerfile, "dockerfile", "", "")
	fs.Var(args2, "build-arg", "")
	outFile := fs.String("output-file", "", "")
	timeout := fs.Duration("timeout", 30*time.Minute, "")
	server := fs.String("server", getenv("FERRY_URL"), "")
	if err := fs.Parse(args[1:]); err != nil {
		return ExitUsage
	}
	if len(args2) > 0 {
		r.BuildArgs = args2
	}
	usage := func(msg string) int { fmt.Fprintln(stderr, "ferry image build:", msg); return ExitUsage }
	switch {
	case fs.NArg() > 0:
		return usage("unexpected arguments: " + strings.Join(fs.Args(), " "))
	case *server == "":
		return usage("--server (or FERRY_URL) is required")
	case getenv("FERRY_PROMOTION_API_TOKEN") == "":
		return usage("FERRY_PROMOTION_API_TOKEN is not set")
	case r.Destination == "":
		return usage("--destination is required")
	}
	cl := &Client{BaseURL: *server, Token: getenv("FERRY_PROMOTION_API_TOKEN")}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := cl.Start(ctx, r)
	if err != nil {
		fmt.Fprintln(stderr, "ferry image build:", err)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status/100 == 4 {
			return ExitUsage
		}
		return ExitFailed
	}
	fmt.Fprintf(stdout, "image build %s: %s from %s at %s\n", st.ID, st.Destination, r.GitURL, r.SHA)
	last := ""
	for !st.Done() {
		if st.State != last {
			fmt.Fprintf(stdout, "image build %s: %s %s\n", st.ID, st.State, st.Reason)
			last = st.State
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "ferry image build: still %s after %s\n", st.State, *timeout)
			return ExitTimedOut
		case <-time.After(2 * time.Second):
		}
		if st, err = cl.Get(ctx, st.ID); err != nil && ctx.Err() == nil {
			fmt.Fprintln(stderr, "ferry image build:", err)
			var ae *APIError
			if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
				return ExitFailed
			}
			st.State = "unknown"
		}
	}
	if st.State == StateFailed {
		fmt.Fprintf(stderr, "ferry image build %s failed: %s\n", st.ID, st.Reason)
		return ExitFailed
	}
	fmt.Fprintln(stdout, st.Image)
	if *outFile != "" {
		if err := os.WriteFile(*outFile, []byte(st.Image+"\n"), 0o600); err != nil {
			fmt.Fprintln(stderr, "ferry image build:", err)
			return ExitFailed
		}
	}
	return ExitOK
}

// Client talks to the image build API.
type Client struct {
	BaseURL, Token string
	HTTP           *http.Client
}

// APIError is an answer other than 2xx.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("ferry answered %d: %s", e.Status, e.Message) }

// Start asks for a build.
func (c *Client) Start(ctx context.Context, r Request) (Status, error) {
	var st Status
	return st, c.do(ctx, http.MethodPost, "/api/v1/images", r, &st)
}

// Get reports on a build.
func (c *Client) Get(ctx context.Context, id string) (Status, error) {
	var st Status
	return st, c.do(ctx, http.MethodGet, "/api/v1/images/"+id, nil, &st)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
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
		return fmt.Errorf("image build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
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
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
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
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	return json.Unmarshal(data, out)
}
