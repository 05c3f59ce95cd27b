package jenkins_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ferryci/ferry/pkg/jenkins"
)

// TestWhyReadable pins which queue reasons ferry can read: the English
// sentences of Jenkins core for waiting and buildable items, and nothing
// in another language (Jenkins' own zh_CN, ja, zh_TW and de texts).
func TestWhyReadable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		why  string
		want bool
	}{
		{"", true},
		{"In the quiet period. Expires in 4.9 sec", true},
		{"Finished waiting", true},
		{"Waiting for next available executor", true},
		{"Waiting for next available executor on ‘ferry-eci’", true},
		{"There are no nodes with the label ‘ferry-eci’", true},
		{"All nodes of label ‘ferry-eci’ are offline", true},
		{"‘ferry-agent-17’ is offline", true},
		{"ferry-agent-17 is offline", true},
		{"Jenkins is about to shut down", true},
		{"???", true},
		{"‘ferry-1’ is reserved for jobs with matching label expression; ‘ferry-2’ doesn’t have label ‘linux’", true},
		{"Still waiting to schedule task\nWaiting for next available executor on ‘ferry-eci’", true},
		{"处于静默期。截止 4.9 秒", false},
		{"在 ferry-eci 上等待下一个可用的执行器", false},
		{"等待下一个可用的执行器", false},
		{"没有带有标签 ‘ferry-eci’ 的节点", false},
		{"ferry-eciで利用可能な次のエグゼキューターを待っています。", false},
		{"等候 ferry-eci 中的執行程式", false},
		{"Warte auf den nächsten freien Build-Prozessor auf ferry-eci", false},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			t.Parallel()
			if got := (jenkins.QueueItem{Why: tt.why}).WhyReadable(); got != tt.want {
				t.Errorf("WhyReadable(%q) = %v, want %v", tt.why, got, tt.want)
			}
		})
	}
}

// metricsOf collects what a manual reader holds: counter sums and gauge
// values by metric name and cause attribute ("" without one).
func metricsOf(t *testing.T, r *metric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
			for _, p := range points {
				cause, _ := p.Attributes.Value("cause")
				out[m.Name+"/"+cause.AsString()] += p.Value
			}
		}
	}
	return out
}

func countLines(log, substr string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// A Jenkins whose Locale plugin forces a language says so in every answer
// (X-Jenkins-Language): ferry's Accept-Language cannot get English, so the
// client reports the problem once in the log, in a metric and through
// LanguageProblem, and clears it once the header is gone.
func TestForcedLanguageDetected(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	forced := "zh_CN"
	f.on("GET /queue/api/json", func(w http.ResponseWriter, r *http.Request) {
		if forced != "" {
			w.Header().Set("X-Jenkins-Language", forced)
		}
		jsonAnswer(200, `{"items":[]}`)(w, r)
	})
	f.on("GET /job/app/api/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Jenkins-Language", "zh_CN")
		jsonAnswer(200, `{"name":"app","fullName":"app","url":"http://j/job/app/"}`)(w, r)
	})
	var logs syncBuffer
	reader := metric.NewManualReader()
	c := f.client(t, func(c *jenkins.Config) {
		c.Logger = debugLogger(&logs)
		c.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
	})
	ctx := context.Background()
	if err := c.LanguageProblem(); err != nil {
		t.Fatalf("LanguageProblem before any answer = %v", err)
	}
	for range 3 {
		if _, err := c.Queue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	err := c.LanguageProblem()
	if !errors.Is(err, jenkins.ErrUnreadable) || !strings.Contains(err.Error(), "zh_CN") || !strings.Contains(err.Error(), "Locale plugin") {
		t.Fatalf("LanguageProblem = %v; want ErrUnreadable naming zh_CN and the Locale plugin", err)
	}
	if n := countLines(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines, want one:\n%s", n, logs.String())
	}
	// gojenkins' answers are watched as well.
	if _, err := c.Job(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	m := metricsOf(t, reader)
	if got := m["ferry_jenkins_unreadable_reasons/forced_language"]; got != 4 {
		t.Errorf("ferry_jenkins_unreadable_reasons{cause=forced_language} = %d, want 4 (metrics %v)", got, m)
	}
	if got := m["ferry_jenkins_unreadable/"]; got != 1 {
		t.Errorf("ferry_jenkins_unreadable = %d, want 1", got)
	}

	forced = ""
	if _, err := c.Queue(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.LanguageProblem(); err != nil {
		t.Errorf("LanguageProblem after the forced language went = %v", err)
	}
	if got := metricsOf(t, reader)["ferry_jenkins_unreadable/"]; got != 0 {
		t.Errorf("ferry_jenkins_unreadable = %d after recovery, want 0", got)
	}
	if !strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("no INFO line on recovery:\n%s", logs.String())
	}

	// A language forced to English is no problem.
	forced = "en_US"
	if _, err := c.Queue(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.LanguageProblem(); err != nil {
		t.Errorf("LanguageProblem with X-Jenkins-Language: en_US = %v", err)
	}
}

// A queue item ferry triggered (its queue id, or the marker parameter only
// ferry's triggers carry) whose why is none of the English sentences
// ferry reads means the prose is not English, header or not; other items
// count only when their why is plainly in another script.
func TestUnreadableWhyDetected(t *testing.T) {
	t.Parallel()
	item := func(id, params, why string, buildable bool) string {
		b := "false"
		if buildable {
			b = "true"
		}
		return `{"id":` + id + `,"task":{"name":"app","url":"http://j/job/app/"},"blocked":false,"buildable":` + b +
			`,"actions":[{"parameters":[` + params + `]}],"why":"` + why + `"}`
	}
	marker := `{"name":"FERRY_TRIGGER_ID","value":"ev-9/build"}`
	tests := []struct {
		name  string
		items []string
		want  bool
	}{
		{"own item in English", []string{item("7", "", "Waiting for next available executor on ‘ferry’", true)}, false},
		{"own item in Chinese", []string{item("7", "", "在 ferry 上等待下一个可用的执行器", true)}, true},
		{"own item, quiet period in Chinese", []string{item("7", "", "处于静默期。截止 4.9 秒", false)}, true},
		{"own item, German", []string{item("7", "", "Warte auf den nächsten freien Build-Prozessor auf ferry", true)}, true},
		{"marked item in Japanese", []string{item("12", marker, "ferryで利用可能な次のエグゼキューターを待っています。", true)}, true},
		{"someone else's item, a plugin's English reason", []string{item("12", "", "Waiting for lock ‘db’", true)}, false},
		{"someone else's item in German", []string{item("12", "", "Warte auf den nächsten freien Build-Prozessor auf x", true)}, false},
		{"someone else's buildable item in Chinese", []string{item("12", "", "在 ferry 上等待下一个可用的执行器", true)}, true},
		{"someone else's item, English with a Chinese label", []string{item("12", "", "Waiting for next available executor on ‘构建机’", true)}, false},
		{"someone else's waiting item in Chinese", []string{item("12", "", "处于静默期。截止 4.9 秒", false)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.on("POST /job/app/buildWithParameters", redirect(http.StatusCreated, "http://j/queue/item/7/"))
			f.on("GET /queue/api/json", jsonAnswer(200, `{"items":[`+strings.Join(tt.items, ",")+`]}`))
			c := f.client(t, func(c *jenkins.Config) {
				c.MarkerParam = "FERRY_TRIGGER_ID"
				c.Logger = debugLogger(&syncBuffer{})
			})
			ctx := context.Background()
			if _, err := c.Trigger(ctx, "app", map[string]string{"A": "1"}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Queue(ctx); err != nil {
				t.Fatal(err)
			}
			err := c.LanguageProblem()
			if got := err != nil; got != tt.want {
				t.Fatalf("LanguageProblem = %v, want a problem: %v", err, tt.want)
			}
			if err != nil && (!errors.Is(err, jenkins.ErrUnreadable) || !strings.Contains(err.Error(), "English")) {
				t.Errorf("LanguageProblem = %v; want ErrUnreadable saying how to get English", err)
			}
		})
	}
}
