package scmfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

type answer struct {
	code   int
	body   map[string]any
	header http.Header
}

func post(t *testing.T, rawURL string, header map[string]string, contentType, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
	} else {
		a.body = map[string]any{"text": string(b)}
	}
	return a
}

func TestGitHubAnswers(t *testing.T) {
	t.Parallel()
	good := map[string]string{"Authorization": "Bearer " + GitHubToken}
	okBody := `{"state":"pending","context":"ferry/build","description":"queued","target_url":"https://ci.example.com/1"}`
	tests := []struct {
		name     string
		path     string
		header   map[string]string
		body     string
		wantCode int
		wantMsg  string // body["message"]
	}{
		{"created", "/repos/ferryci/demo/statuses/" + sha, good, okBody, 201, ""},
		{"created on enterprise path", "/api/v3/repos/ferryci/demo/statuses/" + sha, good, okBody, 201, ""},
		{"legacy token scheme", "/repos/ferryci/demo/statuses/" + sha, map[string]string{"Authorization": "token " + GitHubToken}, okBody, 201, ""},
		{"repository name is case-insensitive", "/repos/FerryCI/Demo/statuses/" + sha, good, okBody, 201, ""},
		{"no token", "/repos/ferryci/demo/statuses/" + sha, nil, okBody, 401, "Requires authentication"},
		{"wrong token", "/repos/ferryci/demo/statuses/" + sha, map[string]string{"Authorization": "Bearer nope"}, okBody, 401, "Bad credentials"},
		{"unknown repository", "/repos/ferryci/other/statuses/" + sha, good, okBody, 404, "Not Found"},
		{"unknown route", "/repos/ferryci/demo/hooks", good, okBody, 404, "Not Found"},
		{"not a commit", "/repos/ferryci/demo/statuses/main-branch", good, okBody, 422, "No commit found for SHA: main-branch"},
		{"bad json", "/repos/ferryci/demo/statuses/" + sha, good, `{"state":`, 400, "Problems parsing JSON"},
		{"invalid state", "/repos/ferryci/demo/statuses/" + sha, good, `{"state":"running"}`, 422, "Validation Failed"},
		{"description too long", "/repos/ferryci/demo/statuses/" + sha, good,
			fmt.Sprintf(`{"state":"success","description":%q}`, strings.Repeat("x", 141)), 422, "Validation Failed"},
		{"description at the limit", "/repos/ferryci/demo/statuses/" + sha, good,
			fmt.Sprintf(`{"state":"success","description":%q}`, strings.Repeat("é", 140)), 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := NewGitHub(t)
			f.AddRepo("ferryci/demo")
			a := post(t, f.URL()+tt.path, tt.header, "application/json", tt.body)
			if a.code != tt.wantCode {
				t.Fatalf("code = %d, want %d (%v)", a.code, tt.wantCode, a.body)
			}
			if tt.wantMsg != "" && a.body["message"] != tt.wantMsg {
				t.Errorf("message = %v, want %q", a.body["message"], tt.wantMsg)
			}
			accepted := len(f.Statuses())
			if (tt.wantCode == 201) != (accepted == 1) {
				t.Errorf("accepted statuses = %d for code %d", accepted, tt.wantCode)
			}
			if tt.wantCode == 201 {
				if a.body["state"] == nil || a.body["id"] == nil || a.header.Get("Location") == "" {
					t.Errorf("201 answer lacks state/id/Location: %v %v", a.body, a.header)
				}
			}
			if calls := f.Calls(); len(calls) != 1 || calls[0].Code != tt.wantCode {
				t.Errorf("calls = %+v, want one with code %d", calls, tt.wantCode)
			}
		})
	}
}

func TestGitHubInjectedFailures(t *testing.T) {
	t.Parallel()
	f := NewGitHub(t)
	f.AddRepo("o/r")
	f.FailNext(2, 500)
	f.InjectFailures(1, Failure{Code: 429})
	f.SecondaryRateLimitNext(1, 90*time.Second)
	hdr := map[string]string{"Authorization": "Bearer " + GitHubToken}
	want := []struct {
		code       int
		retryAfter string
	}{{500, ""}, {500, ""}, {429, "1"}, {403, "90"}, {201, ""}}
	for i, w := range want {
		a := post(t, f.URL()+"/repos/o/r/statuses/"+sha, hdr, "application/json", `{"state":"success"}`)
		if a.code != w.code || a.header.Get("Retry-After") != w.retryAfter {
			t.Errorf("call %d: code %d Retry-After %q, want %d %q", i+1, a.code, a.header.Get("Retry-After"), w.code, w.retryAfter)
		}
	}
	if got := len(f.Statuses()); got != 1 {
		t.Errorf("accepted = %d, want 1", got)
	}
}

func TestGitLabAnswers(t *testing.T) {
	t.Parallel()
	good := map[string]string{"PRIVATE-TOKEN": GitLabToken}
	api := "/api/v4/projects/"
	tests := []struct {
		name     string
		path     string
		header   map[string]string
		ct, body string
		wantCode int
		wantKey  string // "message" or "error"
		wantMsg  string
	}{
		{"created by id", api + "42/statuses/" + sha, good, "application/json", `{"state":"pending","name":"ferry/build","ref":"main"}`, 201, "", ""},
		{"created by escaped path", api + url.PathEscape("group/sub/demo") + "/statuses/" + sha, good, "application/json", `{"state":"running"}`, 201, "", ""},
		{"form body", api + "42/statuses/" + sha, good, "application/x-www-form-urlencoded", "state=success&context=ci", 201, "", ""},
		{"bearer token", api + "42/statuses/" + sha, map[string]string{"Authorization": "Bearer " + GitLabToken}, "application/json", `{"state":"success"}`, 201, "", ""},
		{"no token", api + "42/statuses/" + sha, nil, "application/json", `{"state":"success"}`, 401, "message", "401 Unauthorized"},
		{"wrong token", api + "42/statuses/" + sha, map[string]string{"PRIVATE-TOKEN": "nope"}, "application/json", `{"state":"success"}`, 401, "message", "401 Unauthorized"},
		{"unknown project", api + "7/statuses/" + sha, good, "application/json", `{"state":"success"}`, 404, "message", "404 Project Not Found"},
		{"unescaped path is no route", api + "group/sub/demo/statuses/" + sha, good, "application/json", `{"state":"success"}`, 404, "error", "404 Not Found"},
		{"unknown commit", api + "42/statuses/nothex", good, "application/json", `{"state":"success"}`, 404, "message", "404 Commit Not Found"},
		{"missing state", api + "42/statuses/" + sha, good, "application/json", `{}`, 400, "error", "state is missing, state does not have a valid value"},
		{"invalid state", api + "42/statuses/" + sha, good, "application/json", `{"state":"failure"}`, 400, "error", "state does not have a valid value"},
		{"description too long", api + "42/statuses/" + sha, good, "application/json",
			fmt.Sprintf(`{"state":"success","description":%q}`, strings.Repeat("x", 256)), 400, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := NewGitLab(t)
			f.AddProject(42, "group/sub/demo")
			a := post(t, f.URL()+tt.path, tt.header, tt.ct, tt.body)
			if a.code != tt.wantCode {
				t.Fatalf("code = %d, want %d (%v)", a.code, tt.wantCode, a.body)
			}
			if tt.wantKey != "" && a.body[tt.wantKey] != tt.wantMsg {
				t.Errorf("%s = %v, want %q", tt.wantKey, a.body[tt.wantKey], tt.wantMsg)
			}
			if tt.wantCode == 201 {
				st := f.Statuses()
				if len(st) != 1 || st[0].ProjectID != 42 || st[0].Repo != "group/sub/demo" {
					t.Errorf("statuses = %+v, want one for project 42", st)
				}
				if a.body["status"] == nil || a.body["id"] == nil {
					t.Errorf("201 answer lacks status/id: %v", a.body)
				}
			} else if n := len(f.Statuses()); n != 0 {
				t.Errorf("accepted %d statuses on a %d", n, a.code)
			}
		})
	}
}

func TestGitLabStateMachine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		states []string
		want   []int    // code per call
		final  []string // status field of each 201 answer
	}{
		{"pending twice", []string{"pending", "pending"}, []int{201, 400}, []string{"pending"}},
		{"running twice", []string{"running", "running"}, []int{201, 400}, []string{"running"}},
		{"lifecycle", []string{"pending", "running", "success"}, []int{201, 201, 201}, []string{"pending", "running", "success"}},
		{"pending after running", []string{"running", "pending"}, []int{201, 400}, []string{"running"}},
		{"finished statuses are not updated", []string{"success", "success", "failed"}, []int{201, 201, 201}, []string{"success", "success", "failed"}},
		{"skip only from created", []string{"pending", "skipped"}, []int{201, 400}, []string{"pending"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := NewGitLab(t)
			f.AddProject(1, "g/p")
			var final []string
			for i, st := range tt.states {
				a := post(t, f.URL()+"/api/v4/projects/1/statuses/"+sha, map[string]string{"PRIVATE-TOKEN": GitLabToken},
					"application/json", `{"state":"`+st+`","name":"ferry/build","ref":"main"}`)
				if a.code != tt.want[i] {
					t.Fatalf("call %d (%s): code %d, want %d (%v)", i+1, st, a.code, tt.want[i], a.body)
				}
				if a.code == 201 {
					final = append(final, fmt.Sprint(a.body["status"]))
					continue
				}
				msg := fmt.Sprint(a.body["message"])
				if !strings.HasPrefix(msg, "Cannot transition status via :") {
					t.Errorf("call %d: message %q is not GitLab's transition refusal", i+1, msg)
				}
			}
			if fmt.Sprint(final) != fmt.Sprint(tt.final) {
				t.Errorf("statuses = %v, want %v", final, tt.final)
			}
		})
	}
	t.Run("exact refusal text", func(t *testing.T) {
		t.Parallel()
		f := NewGitLab(t)
		f.AddProject(1, "g/p")
		hdr := map[string]string{"PRIVATE-TOKEN": GitLabToken}
		for range 2 {
			a := post(t, f.URL()+"/api/v4/projects/1/statuses/"+sha, hdr, "application/json", `{"state":"running"}`)
			if a.code == 400 {
				want := `Cannot transition status via :run from :running (Reason(s): Status cannot transition via "run")`
				if a.body["message"] != want {
					t.Errorf("message = %v, want %q", a.body["message"], want)
				}
			}
		}
	})
}

func TestGitLabRelativeRootAndFailures(t *testing.T) {
	t.Parallel()
	f := NewGitLab(t)
	f.AddProject(1, "g/p")
	f.SetRelativeURLRoot("/gitlab/")
	if want := f.URL() + "/gitlab"; f.BaseURL() != want {
		t.Fatalf("BaseURL = %q, want %q", f.BaseURL(), want)
	}
	hdr := map[string]string{"PRIVATE-TOKEN": GitLabToken}
	if a := post(t, f.URL()+"/api/v4/projects/1/statuses/"+sha, hdr, "application/json", `{"state":"success"}`); a.code != 404 {
		t.Errorf("outside the root: code %d, want 404", a.code)
	}
	f.FailNext(1, 502)
	f.FailNext(1, 429)
	f.FailNext(1, 409)
	for i, want := range []int{502, 429, 409, 201} {
		a := post(t, f.BaseURL()+"/api/v4/projects/1/statuses/"+sha, hdr, "application/json", `{"state":"success"}`)
		if a.code != want {
			t.Errorf("call %d: code %d, want %d", i+1, a.code, want)
		}
		if want == 429 && (a.header.Get("Retry-After") == "" || !strings.Contains(a.body["text"].(string), "Retry later")) {
			t.Errorf("429 lacks Retry-After or GitLab's text: %v %v", a.header, a.body)
		}
	}
}

func TestConcurrentUseAndWaitFor(t *testing.T) {
	t.Parallel()
	f := NewGitHub(t)
	f.AddRepo("o/r")
	hdr := map[string]string{"Authorization": "Bearer " + GitHubToken}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := fmt.Sprintf("ferry/p%d", i)
			for _, st := range []string{"pending", "success"} {
				req, _ := http.NewRequest(http.MethodPost, f.URL()+"/repos/o/r/statuses/"+sha,
					strings.NewReader(`{"state":"`+st+`","context":"`+ctx+`"}`))
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("post: %v", err)
					return
				}
				_ = resp.Body.Close()
			}
		}()
	}
	got := f.WaitFor(t, func(s []Status) bool {
		for i := range 8 {
			if !HasStates(sha, fmt.Sprintf("ferry/p%d", i), "pending", "success")(s) {
				return false
			}
		}
		return true
	}, 30*time.Second)
	wg.Wait()
	if len(got) != 16 {
		t.Errorf("statuses = %d, want 16", len(got))
	}
}

func TestHasStates(t *testing.T) {
	t.Parallel()
	mk := func(states ...string) []Status {
		var out []Status
		for _, s := range states {
			out = append(out, Status{SHA: sha, Context: "c", State: s})
		}
		out = append(out, Status{SHA: sha, Context: "other", State: "failure"})
		return out
	}
	tests := []struct {
		name     string
		recorded []Status
		want     []string
		ok       bool
	}{
		{"exact", mk("pending", "success"), []string{"pending", "success"}, true},
		{"with repeats between", mk("pending", "pending", "success"), []string{"pending", "success"}, true},
		{"wrong order", mk("success", "pending"), []string{"pending", "success"}, false},
		{"missing final", mk("pending"), []string{"pending", "success"}, false},
		{"other context does not count", mk("pending"), []string{"pending", "failure"}, false},
		{"nothing wanted", nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := HasStates(sha, "c", tt.want...)(tt.recorded); got != tt.ok {
				t.Errorf("HasStates(%v) on %v = %v, want %v", tt.want, StatesOf(tt.recorded, sha, "c"), got, tt.ok)
			}
		})
	}
}

// fatalRecorder captures Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msg = fmt.Sprintf(format, args...)
}

func TestWaitForTimesOut(t *testing.T) {
	t.Parallel()
	f := NewGitLab(t)
	rec := &fatalRecorder{TB: t}
	f.WaitFor(rec, func([]Status) bool { return false }, 20*time.Millisecond)
	if !strings.Contains(rec.msg, "condition not met") || !strings.Contains(rec.msg, "(none)") {
		t.Errorf("Fatalf message = %q, want a timeout report listing the statuses", rec.msg)
	}
}

func TestGitHubDeployments(t *testing.T) {
	t.Parallel()
	g := NewGitHub(t)
	g.AddRepo("acme/web")
	g.AddRef("acme/web", "main", sha)
	good := map[string]string{"Authorization": "Bearer " + GitHubToken}
	base := g.URL() + "/repos/acme/web/deployments"
	if a := post(t, g.URL()+"/repos/acme/web/statuses/"+sha, good, "application/json", `{"state":"pending","context":"ci"}`); a.code != 201 {
		t.Fatalf("status: %d", a.code)
	}
	tests := []struct {
		name   string
		url    string
		header map[string]string
		body   string
		code   int
		msg    string
	}{
		{"no token", base, nil, `{"ref":"main"}`, 401, "Requires authentication"},
		{"unknown repo", g.URL() + "/repos/acme/nope/deployments", good, `{"ref":"main"}`, 404, "Not Found"},
		{"missing ref", base, good, `{"environment":"test"}`, 422, `"ref" wasn't supplied`},
		{"unknown ref", base, good, `{"ref":"nope"}`, 422, "No ref found for: nope"},
		{"status checks gate", base, good, `{"ref":"main","environment":"test"}`, 409, "Commit status checks failed"},
		{"created", base, good, `{"ref":"main","environment":"test","auto_merge":false,"required_contexts":[],"payload":{"promotion":"p1"}}`, 201, ""},
		{"status", base + "/1/statuses", good, `{"state":"in_progress","environment_url":"https://t.example"}`, 201, ""},
		{"bad state", base + "/1/statuses", good, `{"state":"done"}`, 422, "Validation Failed"},
		{"unknown deployment", base + "/9/statuses", good, `{"state":"success"}`, 404, "Not Found"},
	}
	for _, tt := range tests {
		a := post(t, tt.url, tt.header, "application/json", tt.body)
		msg, _ := a.body["message"].(string)
		if a.code != tt.code || !strings.Contains(msg, tt.msg) {
			t.Errorf("%s: %d %q, want %d %q", tt.name, a.code, msg, tt.code, tt.msg)
		}
		if tt.name == "created" && (a.body["id"] != float64(1) || a.body["sha"] != sha || a.body["environment"] != "test" ||
			a.body["statuses_url"] != base+"/1/statuses") {
			t.Errorf("created body = %v", a.body)
		}
	}
	ds := g.Deployments()
	if len(ds) != 1 || ds[0].Payload["promotion"] != "p1" || fmt.Sprint(ds[0].States()) != "[in_progress]" ||
		ds[0].Statuses[0].EnvironmentURL != "https://t.example" {
		t.Errorf("deployments:\n%s", FormatDeployments(ds))
	}
}

func TestGitLabDeployments(t *testing.T) {
	t.Parallel()
	g := NewGitLab(t)
	g.AddProject(7, "grp/web")
	good := map[string]string{"PRIVATE-TOKEN": GitLabToken}
	base := g.URL() + "/api/v4/projects/" + url.PathEscape("grp/web") + "/deployments"
	put := func(path, body string) answer {
		req, _ := http.NewRequest(http.MethodPut, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("PRIVATE-TOKEN", GitLabToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		a := answer{code: resp.StatusCode}
		_ = json.NewDecoder(resp.Body).Decode(&a.body)
		return a
	}
	if a := post(t, base, nil, "application/json", `{}`); a.code != 401 {
		t.Errorf("no token: %d", a.code)
	}
	if a := post(t, base, good, "application/json", `{"environment":"test","sha":"`+sha+`"}`); a.code != 400 ||
		!strings.Contains(fmt.Sprint(a.body["error"]), "ref is missing") {
		t.Errorf("missing params: %d %v", a.code, a.body)
	}
	if a := post(t, g.URL()+"/api/v4/projects/99/deployments", good, "application/json",
		`{"environment":"test","sha":"`+sha+`","ref":"main","tag":false,"status":"running"}`); a.code != 404 {
		t.Errorf("unknown project: %d", a.code)
	}
	a := post(t, base, good, "application/json", `{"environment":"test","sha":"`+sha+`","ref":"main","tag":false,"status":"running"}`)
	if a.code != 201 || a.body["status"] != "running" || a.body["id"] != float64(1) {
		t.Fatalf("create: %d %v", a.code, a.body)
	}
	byID := g.URL() + "/api/v4/projects/7/deployments/1"
	if a := put(byID, `{"status":"success"}`); a.code != 200 || a.body["status"] != "success" {
		t.Errorf("update: %d %v", a.code, a.body)
	}
	if a := put(byID, `{"status":"success"}`); a.code != 400 {
		t.Errorf("same status again: %d, want 400", a.code)
	}
	if a := put(byID, `{"status":"running"}`); a.code != 400 {
		t.Errorf("back to running: %d, want 400", a.code)
	}
	if a := put(g.URL()+"/api/v4/projects/7/deployments/5", `{"status":"failed"}`); a.code != 404 {
		t.Errorf("unknown deployment: %d", a.code)
	}
	ds := g.Deployments()
	if len(ds) != 1 || ds[0].Repo != "grp/web" || ds[0].ProjectID != 7 || fmt.Sprint(ds[0].States()) != "[running success]" {
		t.Errorf("deployments:\n%s", FormatDeployments(ds))
	}
}
