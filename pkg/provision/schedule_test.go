package provision

import (
	"testing"
	"time"

	"github.com/ferryci/ferry/pkg/eci"
)

func mustCompileWarm(t *testing.T, p eci.WarmPool) *eci.WarmSchedule {
	t.Helper()
	s, err := p.Compile()
	if err != nil {
		t.Fatalf("compile %+v: %v", p, err)
	}
	return s
}

func TestDesiredWarm(t *testing.T) {
	t.Parallel()
	// Berlin: CET (UTC+1) until 29 March 2026 02:00, CEST (UTC+2) after.
	s := mustCompileWarm(t, eci.WarmPool{
		Size:     1,
		TimeZone: "Europe/Berlin",
		Schedule: []eci.WarmWindow{
			{Name: "workday", Start: "0 8 * * 1-5", Duration: eci.Duration{Duration: 10 * time.Hour}, Size: 5},
			{Name: "evening", Start: "0 18 * * 1-5", End: "0 20 * * *", Size: 2},
			{Name: "cronhpa", Start: "0 0 7 * * 6", End: "0 0 9 * * 6", Size: 3},
		},
		ExcludeDates: []string{"2026-12-24", "* * * 1 5 *"},
	})
	utc := func(v string) time.Time {
		ts, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	for _, tc := range []struct {
		name   string
		now    string
		want   int
		window string
	}{
		{"before the window opens (07:59:59 CET)", "2026-12-07T06:59:59Z", 1, ""},
		{"at the window's opening (08:00 CET)", "2026-12-07T07:00:00Z", 5, "workday"},
		{"inside the window", "2026-12-07T12:00:00Z", 5, "workday"},
		{"the last second of the window", "2026-12-07T16:59:59Z", 5, "workday"},
		{"the window closed after its duration (18:00 CET)", "2026-12-07T17:00:00Z", 2, "evening"},
		{"the end-cron window closed (20:00 CET)", "2026-12-07T19:00:00Z", 1, ""},
		{"an excluded date", "2026-12-24T12:00:00Z", 1, ""},
		{"the day after an excluded date", "2026-12-25T12:00:00Z", 5, "workday"},
		{"an excluded cron date (1 May)", "2026-05-01T10:00:00Z", 1, ""},
		{"a weekend day, six-field window", "2026-12-05T07:30:00Z", 3, "cronhpa"},
		{"a weekend day, outside windows", "2026-12-05T12:00:00Z", 1, ""},
		{"before DST: 06:30 UTC is 07:30 CET, closed", "2026-03-27T06:30:00Z", 1, ""},
		{"after DST: 06:30 UTC is 08:30 CEST, open", "2026-03-30T06:30:00Z", 5, "workday"},
		{"after DST: the window closes at 18:00 CEST = 16:00 UTC", "2026-03-30T16:00:00Z", 2, "evening"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, window := desiredWarm(utc(tc.now), s)
			if got != tc.want || window != tc.window {
				t.Errorf("desiredWarm(%s) = %d (%q), want %d (%q)", tc.now, got, window, tc.want, tc.window)
			}
		})
	}
}

func TestDesiredWarmLongWindowOverExcludedOpening(t *testing.T) {
	t.Parallel()
	// A window that opens daily and lasts 30h: on the excluded day's
	// afternoon the previous day's opening still holds it open.
	s := mustCompileWarm(t, eci.WarmPool{
		Schedule:     []eci.WarmWindow{{Start: "0 9 * * *", Duration: eci.Duration{Duration: 30 * time.Hour}, Size: 4}},
		ExcludeDates: []string{"2026-12-24"},
	})
	cases := map[string]int{
		"2026-12-24T10:00:00Z": 4, // opened 23 Dec 09:00, closes 24 Dec 15:00
		"2026-12-24T16:00:00Z": 0, // only the excluded opening is left
		"2026-12-25T10:00:00Z": 4,
	}
	for now, want := range cases {
		ts, _ := time.Parse(time.RFC3339, now)
		if got, _ := desiredWarm(ts, s); got != want {
			t.Errorf("desiredWarm(%s) = %d, want %d", now, got, want)
		}
	}
	if got, _ := desiredWarm(time.Now(), nil); got != 0 {
		t.Errorf("no schedule: %d, want 0", got)
	}
}
