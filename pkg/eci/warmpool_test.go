package eci

import (
	"strings"
	"testing"
	"time"
)

func TestWarmPoolValidation(t *testing.T) {
	t.Parallel()
	hour := Duration{Duration: time.Hour}
	for _, tc := range []struct {
		name string
		pool WarmPool
		want []string // substrings of the error; none: valid
	}{
		{"a base size alone", WarmPool{Size: 2}, nil},
		{"windows and dates", WarmPool{TimeZone: "Asia/Shanghai", PoolRef: "linux-pool", MaxIdle: Duration{Duration: 10 * time.Minute},
			Schedule:     []WarmWindow{{Start: "0 9 * * 1-5", Duration: hour, Size: 3}, {Start: "0 0 8 * * *", End: "@midnight", Size: 1}},
			ExcludeDates: []string{"2026-10-01", "* * * 1 10 *"}}, nil},
		{"a negative size", WarmPool{Size: -1}, []string{"warmPool.size: must not be negative"}},
		{"an unknown time zone", WarmPool{TimeZone: "Mars/Olympus"}, []string{`warmPool.timeZone: "Mars/Olympus" is not an IANA time zone`}},
		{"a short maxIdle", WarmPool{MaxIdle: Duration{Duration: time.Second}}, []string{"warmPool.maxIdle: 1s is too short"}},
		{"a bad poolRef", WarmPool{PoolRef: "Linux_Pool"}, []string{"warmPool.poolRef:"}},
		{"a window without start", WarmPool{Schedule: []WarmWindow{{Duration: hour, Size: 1}}}, []string{"warmPool.schedule[0].start: must be set"}},
		{"a bad start", WarmPool{Schedule: []WarmWindow{{Start: "0 25 * * *", Duration: hour}}}, []string{`warmPool.schedule[0].start: "0 25 * * *" is not a cron expression`}},
		{"neither end nor duration", WarmPool{Schedule: []WarmWindow{{Start: "@daily"}}}, []string{"warmPool.schedule[0].duration: set a positive duration"}},
		{"both end and duration", WarmPool{Schedule: []WarmWindow{{Start: "@daily", End: "@hourly", Duration: hour}}}, []string{"warmPool.schedule[0]: set end or duration, not both"}},
		{"a bad end", WarmPool{Schedule: []WarmWindow{{Start: "@daily", End: "soon"}}}, []string{"warmPool.schedule[0].end:"}},
		{"a negative window size", WarmPool{Schedule: []WarmWindow{{Start: "@daily", Duration: hour, Size: -2}}}, []string{"warmPool.schedule[0].size: must not be negative"}},
		{"a bad excluded date", WarmPool{ExcludeDates: []string{"2026-13-01"}}, []string{`warmPool.excludeDates[0]: "2026-13-01" is neither a date`}},
		{"maxIdle at the pod's deadline", WarmPool{MaxIdle: Duration{Duration: 2 * time.Hour}}, []string{"warmPool.maxIdle: 2h0m0s must be below activeDeadline (2h0m0s)"}},
		{"above the template's cap", WarmPool{Schedule: []WarmWindow{{Start: "@daily", Duration: hour, Size: 9}}}, []string{"a size of 9 exceeds maxAgents (4)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmpl := Template{Name: "linux", Labels: []string{"linux"}, MaxAgents: 4, WarmPool: &tc.pool}
			err := tmpl.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tc.pool)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestWarmPoolNeedsLabelsAndIsNotInherited(t *testing.T) {
	t.Parallel()
	base := Template{Name: "base", WarmPool: &WarmPool{Size: 1}}
	if err := base.Validate(); err == nil || !strings.Contains(err.Error(), "warmPool: a template without labels") {
		t.Errorf("Validate of a label-less pool: %v", err)
	}
	got, err := Resolve([]Template{{Name: "base"}, {Name: "linux", Inherits: "base", Labels: []string{"linux"}, WarmPool: &WarmPool{Size: 2}},
		{Name: "arm", Inherits: "linux", Labels: []string{"arm"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got["linux"].WarmPool == nil || got["linux"].WarmPool.Size != 2 || got["arm"].WarmPool != nil {
		t.Errorf("linux pool %+v, arm pool %+v: want linux's own, arm none", got["linux"].WarmPool, got["arm"].WarmPool)
	}
}

func TestExcludedDateMatchesInZone(t *testing.T) {
	t.Parallel()
	p, err := WarmPool{ExcludeDates: []string{"* * * * * 0,6"}}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	sat := time.Date(2026, 12, 5, 23, 30, 0, 0, time.UTC)
	if !p.Excluded[0].Matches(sat) {
		t.Errorf("Saturday 23:30 not matched")
	}
	mon := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	if p.Excluded[0].Matches(mon) {
		t.Errorf("Monday 00:00 matched")
	}
}
