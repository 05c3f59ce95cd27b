package ui

import (
	"fmt"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ferryci/ferry/pkg/deliveries"
	"github.com/ferryci/ferry/pkg/store"
)

// chart is a small SVG chart, its geometry computed here and drawn by
// the "chart" template (so every label is escaped).
type chart struct {
	Title, Note   string
	Width, Height int
	Bars          []bar
	Line          string
	Max           string
	From, To      string
	Empty         bool
}

type bar struct {
	X, Y, W, H float64
	Label      string
}

const (
	chartW, chartH = 320, 90
	chartPad       = 12
)

// bars draws values (oldest first) as bars scaled to the largest.
func bars(title, note string, values []float64, labels []string, unit func(float64) string, from, to string) chart {
	c := chart{Title: title, Note: note, Width: chartW, Height: chartH + chartPad, From: from, To: to}
	top := slices.Max(append([]float64{0}, values...))
	if len(values) == 0 || top == 0 {
		c.Empty = true
		return c
	}
	c.Max = unit(top)
	w := float64(chartW) / float64(len(values))
	for i, v := range values {
		h := v / top * chartH
		c.Bars = append(c.Bars, bar{X: float64(i) * w, Y: chartH - h, W: max(w-1, 1), H: h, Label: labels[i] + ": " + unit(v)})
	}
	return c
}

// line draws points over [from, to] as a polyline.
func line(title, note string, pts []point, from, to time.Time) chart {
	c := chart{Title: title, Note: note, Width: chartW, Height: chartH + chartPad, From: from.UTC().Format("15:04"), To: to.UTC().Format("15:04")}
	top := 0.0
	for _, p := range pts {
		top = max(top, p.Value)
	}
	if len(pts) < 2 || to.Sub(from) <= 0 {
		c.Empty = true
		return c
	}
	if top == 0 {
		top = 1
	}
	c.Max = fmt.Sprintf("%.0f", top)
	span := to.Sub(from).Seconds()
	pts = thin(pts, maxLinePoints)
	for _, p := range pts {
		x := p.At.Sub(from).Seconds() / span * chartW
		c.Line += fmt.Sprintf("%.1f,%.1f ", x, chartH-p.Value/top*chartH)
	}
	return c
}

// maxLinePoints bounds a line chart's points (a day at 10 s is 8,640).
const maxLinePoints = 320

// thin keeps at most n points, each the largest of its run, so a peak
// is never lost.
func thin(pts []point, n int) []point {
	if len(pts) <= n {
		return pts
	}
	step := (len(pts) + n - 1) / n
	out := make([]point, 0, n)
	for i := 0; i < len(pts); i += step {
		top := pts[i]
		for _, p := range pts[i:min(i+step, len(pts))] {
			if p.Value > top.Value {
				top.Value = p.Value
			}
		}
		out = append(out, top)
	}
	return out
}

func count(v float64) string { return fmt.Sprintf("%.0f", v) }

func seconds(v float64) string {
	return (time.Duration(v * float64(time.Second))).Round(100 * time.Millisecond).String()
}

// stepAt is the time of a trail's first step named step.
func stepAt(t []store.BuildStep, step string) time.Time {
	for _, s := range t {
		if s.Step == step {
			return s.At
		}
	}
	return time.Time{}
}

// deliveryCharts are builds started per hour and the median time from
// Jenkins queue to build start per hour, over the 24 hours before now.
func deliveryCharts(chains []deliveries.Chain, now time.Time) []chart {
	const hours = 24
	end := now.UTC().Truncate(time.Hour).Add(time.Hour)
	start := end.Add(-hours * time.Hour)
	perHour := make([]float64, hours)
	waits := make([][]float64, hours)
	labels := make([]string, hours)
	for i := range labels {
		labels[i] = start.Add(time.Duration(i) * time.Hour).Format("15:00")
	}
	for _, ch := range chains {
		for _, b := range ch.Builds {
			started := stepAt(b.Steps, deliveries.StepStarted)
			if started.IsZero() || started.Before(start) || !started.Before(end) {
				continue
			}
			i := int(started.Sub(start) / time.Hour)
			perHour[i]++
			if q := stepAt(b.Steps, deliveries.StepQueued); !q.IsZero() && !started.Before(q) {
				waits[i] = append(waits[i], started.Sub(q).Seconds())
			}
		}
	}
	medians := make([]float64, hours)
	for i, w := range waits {
		if len(w) > 0 {
			slices.Sort(w)
			medians[i] = w[len(w)/2]
		}
	}
	from, to := start.Format("15:04"), end.Format("15:04")+" UTC"
	return []chart{
		bars("Builds started per hour", "last 24 h, from the delivery log", perHour, labels, count, from, to),
		bars("Queue → start, median per hour", "Jenkins queue item to build start", medians, labels, seconds, from, to),
	}
}

// leadTimeChart is each finished promotion's time from request to
// outcome, oldest first (promotions come newest first).
func leadTimeChart(ps []store.Promotion) chart {
	var vals []float64
	var labels []string
	for i := len(ps) - 1; i >= 0; i-- {
		p := ps[i]
		if p.State != store.PromotionSucceeded || p.FinishedAt.IsZero() || p.Kind != store.KindPromote {
			continue
		}
		vals = append(vals, p.FinishedAt.Sub(p.CreatedAt).Seconds())
		labels = append(labels, p.App+" "+p.ID)
	}
	return bars("Promotion lead time", "request → every environment succeeded (approval waits included)", vals, labels, seconds, "older", "newer")
}

// chartCache keeps the delivery charts for a while: they read up to
// store.MaxDeliveryPage deliveries and their trails.
type chartCache struct {
	at     time.Time
	charts []chart
}

const chartTTL = 30 * time.Second

func (s *Server) activityCharts(c *gin.Context) []chart {
	now := s.cfg.Now()
	s.mu.Lock()
	if !s.charts.at.IsZero() && now.Sub(s.charts.at) < chartTTL {
		defer s.mu.Unlock()
		return s.charts.charts
	}
	s.mu.Unlock()
	page, err := s.cfg.Deliveries.Chains(c.Request.Context(), store.DeliveryQuery{Limit: store.MaxDeliveryPage})
	if err != nil {
		s.log.WarnContext(c.Request.Context(), "ui charts not drawn", "error", err)
		return nil
	}
	out := deliveryCharts(page.Deliveries, now)
	s.mu.Lock()
	s.charts = chartCache{at: now, charts: out}
	s.mu.Unlock()
	return out
}
