package jenkinsemu

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestLanguageOfAnswers pins how the emulated controller picks the
// language of its prose: the request's preferred Accept-Language, else the
// controller's default locale; with the Locale plugin ignoring browser
// preferences, always the default locale, announced in X-Jenkins-Language.
func TestLanguageOfAnswers(t *testing.T) {
	const (
		en   = "Waiting for next available executor on ‘ferry’"
		zhCN = "在 ferry 上等待下一个可用的执行器"
		ja   = "ferryで利用可能な次のエグゼキューターを待っています。"
		zhTW = "等候 ferry 中的執行程式"
	)
	tests := []struct {
		name     string
		locale   string
		force    bool
		accept   string
		want     string
		wantLang string // X-Jenkins-Language
	}{
		{"default English, no header", "", false, "", en, ""},
		{"zh-CN asked", "", false, "zh-CN", zhCN, ""},
		{"zh_CN preferred by quality", "", false, "fr;q=0.5, zh-CN, en;q=0.8", zhCN, ""},
		{"ja-JP falls back to ja", "", false, "ja-JP", ja, ""},
		{"zh-TW asked", "", false, "zh-TW,zh;q=0.9", zhTW, ""},
		{"zh alone has no bundle: English", "zh_CN", false, "zh", en, ""},
		{"a language without texts: English", "", false, "de", en, ""},
		{"Chinese controller, no header", "zh_CN", false, "", zhCN, ""},
		{"Chinese controller, English asked", "zh_CN", false, "en", en, ""},
		{"forced Chinese ignores the header", "zh_CN", true, "en", zhCN, "zh_CN"},
		{"forced English", "en", true, "zh-CN", en, "en"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, Options{Locale: tt.locale, IgnoreAcceptLanguage: tt.force})
			mustAdd(t, s, "app", JobSpec{Label: "ferry", Duration: Forever, Params: []Param{{Name: "SHA"}}})
			c := tokenClient(t, s)
			mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
			mustCreateAgent(t, s, c, "a2", "ferry", "EXCLUSIVE", 1)
			for _, sha := range []string{"1", "2", "3"} {
				c.trigger("app", url.Values{"SHA": {sha}})
			}
			if tt.accept != "" {
				c.hdr.Set("Accept-Language", tt.accept)
			}
			r := c.get("/queue/api/json")
			if r.status != http.StatusOK {
				t.Fatalf("queue: %d %s", r.status, r.body)
			}
			if got := path(t, r.json(t), "items", 0, "why"); got != tt.want {
				t.Errorf("why = %q, want %q", got, tt.want)
			}
			if got := r.header.Get("X-Jenkins-Language"); got != tt.wantLang {
				t.Errorf("X-Jenkins-Language = %q, want %q", got, tt.wantLang)
			}
			// Test-side snapshots stay English.
			if items := s.QueueItems(); len(items) != 1 || items[0].Why != en {
				t.Errorf("snapshot = %+v, want one item waiting in English", items)
			}
		})
	}
}

// TestLocalizedQueueReasons covers the other sentences ferry meets, with
// Jenkins' zh_CN texts and units.
func TestLocalizedQueueReasons(t *testing.T) {
	s, clk := newTestServer(t, Options{Locale: "zh_CN", QuietPeriod: 5 * time.Second})
	mustAdd(t, s, "app", JobSpec{Label: "ferry", Params: []Param{{Name: "SHA"}}})
	c := tokenClient(t, s)
	id := c.trigger("app", url.Values{"SHA": {"1"}})
	why := func() any { return c.getJSON("/queue/item/" + itoa(int(id)) + "/api/json")["why"] }
	clk.Advance(100 * time.Millisecond)
	if got, want := why(), "处于静默期。截止 4.9 秒"; got != want {
		t.Errorf("quiet period: why = %q, want %q", got, want)
	}
	clk.Advance(5 * time.Second)
	if got, want := why(), "等待下一个可用的执行器"; got != want {
		t.Errorf("no agents: why = %q, want %q", got, want)
	}
	if r := c.createNode("other", "linux", "NORMAL", 1); r.status != http.StatusFound {
		t.Fatalf("create node: %d", r.status)
	}
	if got, want := why(), "没有带有标签 ‘ferry’ 的节点"; got != want {
		t.Errorf("label without nodes: why = %q, want %q", got, want)
	}
	if r := c.createNode("a1", "ferry", "EXCLUSIVE", 1); r.status != http.StatusFound {
		t.Fatalf("create node: %d", r.status)
	}
	if got, want := why(), "a1 已经离线"; got != want {
		t.Errorf("single offline node: why = %q, want %q", got, want)
	}
	if r := c.createNode("a2", "ferry", "EXCLUSIVE", 1); r.status != http.StatusFound {
		t.Fatalf("create node: %d", r.status)
	}
	if got, want := why(), "带有标签 ‘ferry’ 的所有节点都离线"; got != want {
		t.Errorf("all nodes offline: why = %q, want %q", got, want)
	}
	c.hdr.Set("Accept-Language", "en-US,en;q=0.9")
	if got, want := why(), "All nodes of label ‘ferry’ are offline"; got != want {
		t.Errorf("English asked: why = %q, want %q", got, want)
	}
}

// TestLocalizedOfflineCauseReason pins offlineCauseReason as real cores
// compute it: the localized "Disconnected by {0}{1}" minus its fixed words,
// which Jenkins' regular expression only strips where the sentence starts
// with them; cores since 2.483 HTML-escape it.
func TestLocalizedOfflineCauseReason(t *testing.T) {
	const msg = "ferry: one build per agent"
	tests := []struct {
		name    string
		version string
		accept  string
		msg     string
		want    string
	}{
		{"English", "", "en", msg, msg},
		{"zh_CN", "", "zh-CN", msg, "被 admin : " + msg + "断开连接"},
		{"ja", "", "ja", msg, "adminがオフラインにしています。 : " + msg},
		{"zh_TW", "", "zh-TW", msg, "由 admin 中斷連線 : " + msg},
		{"no message, English", "", "en", "", ""},
		{"no message, zh_CN", "", "zh-CN", "", "被 admin断开连接"},
		{"before 2.483: raw", "2.462.3", "en", "don't & <b>", "don't & <b>"},
		{"since 2.483: escaped", "2.483", "en", "don't & <b>", "don&#039;t &amp; &lt;b&gt;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t, Options{Version: tt.version})
			c := tokenClient(t, s)
			mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
			if r := c.post("/computer/a1/changeOfflineCause", url.Values{"offlineMessage": {tt.msg}}); r.status != http.StatusFound {
				t.Fatalf("changeOfflineCause: %d %s", r.status, r.body)
			}
			c.hdr.Set("Accept-Language", tt.accept)
			if got := c.getJSON("/computer/a1/api/json")["offlineCauseReason"]; got != tt.want {
				t.Errorf("offlineCauseReason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLocalizedAgentExists(t *testing.T) {
	s, _ := newTestServer(t, Options{Locale: "zh_CN"})
	c := tokenClient(t, s)
	mustCreateAgent(t, s, c, "a1", "ferry", "EXCLUSIVE", 1)
	r := c.createNode("a1", "ferry", "EXCLUSIVE", 1)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "代理 ‘a1’ 已经存在") {
		t.Errorf("duplicate in zh_CN: %d %q", r.status, r.body)
	}
	c.hdr.Set("Accept-Language", "ja")
	r = c.createNode("a1", "ferry", "EXCLUSIVE", 1)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Agent called ‘a1’ already exists") {
		t.Errorf("duplicate in ja (no translation: English): %d %q", r.status, r.body)
	}
}

func TestSetLocale(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	c := tokenClient(t, s)
	c.hdr.Set("Accept-Language", "en")
	if r := c.get("/api/json"); r.header.Get("X-Jenkins-Language") != "" {
		t.Fatalf("X-Jenkins-Language without the Locale plugin forcing: %q", r.header.Get("X-Jenkins-Language"))
	}
	s.SetLocale("ja", true)
	if r := c.get("/api/json"); r.header.Get("X-Jenkins-Language") != "ja" {
		t.Errorf("after SetLocale(ja, true): X-Jenkins-Language = %q", r.header.Get("X-Jenkins-Language"))
	}
	s.SetLocale("ja", false)
	if r := c.get("/api/json"); r.header.Get("X-Jenkins-Language") != "" {
		t.Errorf("after SetLocale(ja, false): X-Jenkins-Language = %q", r.header.Get("X-Jenkins-Language"))
	}
}
