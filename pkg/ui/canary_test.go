package ui_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/config"
	"github.com/ferryci/ferry/pkg/store"
	"github.com/ferryci/ferry/pkg/ui"
)

// The promotion page shows each environment's canary: step N of M and the
// configured steps, the current one highlighted, names escaped.
func TestPromotionPageShowsCanarySteps(t *testing.T) {
	steps := []config.CanaryStep{{SetWeight: 10}, {Pause: config.Duration{Duration: 5 * time.Minute}},
		{Analysis: &config.CanaryAnalysis{Metrics: []config.CanaryMetric{{Name: "<b>errors</b>"}}}}, {SetWeight: 50}}
	b := newBed(t, func(c *ui.Config) {
		c.Canary = ui.ConfiguredCanary([]config.PromotionApp{{Name: "web", Environments: []config.PromotionEnvironment{
			{Name: "test", Canary: config.Canary{Steps: steps}}, {Name: "prod", Canary: config.Canary{Steps: steps}}}}})
	})
	now := time.Now().UTC()
	if _, err := b.st.PutPromotion(context.Background(), store.Promotion{ID: "p-c", Kind: store.KindPromote, App: "web",
		Source: "registry.example/ci/web:2", State: store.PromotionRunning, CreatedAt: now, UpdatedAt: now,
		Environments: []store.PromotionEnv{{Name: "test", Phase: store.EnvCanary, CanaryStep: 2, StepSince: now},
			{Name: "prod", Phase: store.EnvPending}}}); err != nil {
		t.Fatal(err)
	}
	a := b.do(b.signedIn(aliceToken), "GET", "/ui/promotions/p-c", nil, nil)
	if a.code != 200 {
		t.Fatalf("promotion page = %d: %s", a.code, a.body)
	}
	for _, want := range []string{
		"Canary in test: step 3 of 4", "Canary in prod: 4 steps to come",
		`<li class="step-done"><span class="badge done">done</span> 1. setWeight 10</li>`,
		`<li class="step-done"><span class="badge done">done</span> 2. pause 5m0s</li>`,
		`<li class="step-current" aria-current="step"><span class="badge current">current</span> 3. analysis of &lt;b&gt;errors&lt;/b&gt;</li>`,
		`<li class="step-pending"><span class="badge pending">pending</span> 4. setWeight 50</li>`,
		"a pause counts from then",
	} {
		if !strings.Contains(a.body, want) {
			t.Errorf("promotion page lacks %q", want)
		}
	}
	if strings.Contains(a.body, "<b>errors") {
		t.Error("a metric name is rendered unescaped")
	}
	// Without canary steps configured, no canary section.
	plain := newBed(t, nil)
	if a := plain.do(plain.signedIn(aliceToken), "GET", "/ui/promotions/p-1", nil, nil); a.code != 200 || strings.Contains(a.body, "Canary in") {
		t.Errorf("without canary steps: %d, a canary section: %v", a.code, strings.Contains(a.body, "Canary in"))
	}
}
