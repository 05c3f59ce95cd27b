package recovery

import (
	"fmt"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	tests := []struct {
		name     string
		attempts []Attempt
		want     string // guid:verdict:latest id, in order
	}{
		{"delivered at once", []Attempt{{ID: 1, GUID: "a", At: at(time.Hour), Code: 202}}, "a:delivered:1"},
		{"failed, nothing answered", []Attempt{{ID: 1, GUID: "a", At: at(time.Hour), Code: 0}}, "a:redeliver:1"},
		{"failed 503", []Attempt{{ID: 1, GUID: "a", At: at(time.Hour), Code: 503}}, "a:redeliver:1"},
		{"ingress 404 while ferry was away", []Attempt{{ID: 1, GUID: "a", At: at(time.Hour), Code: 404}}, "a:redeliver:1"},
		{"payload refused", []Attempt{{ID: 1, GUID: "a", At: at(time.Hour), Code: 400}}, "a:refused:1"},
		{"too large", []Attempt{{ID: 1, GUID: "a", At: at(time.Hour), Code: 413}}, "a:refused:1"},
		{"failed, then redelivered fine", []Attempt{
			{ID: 2, GUID: "a", At: at(time.Minute), Code: 202},
			{ID: 1, GUID: "a", At: at(time.Hour), Code: 502},
		}, "a:delivered:2"},
		{"redelivery failed too: the latest is redelivered", []Attempt{
			{ID: 2, GUID: "a", At: at(time.Minute), Code: 0},
			{ID: 1, GUID: "a", At: at(time.Hour), Code: 502},
		}, "a:redeliver:2"},
		{"bounded attempts", []Attempt{
			{ID: 3, GUID: "a", At: at(time.Minute), Code: 503},
			{ID: 2, GUID: "a", At: at(2 * time.Minute), Code: 503},
			{ID: 1, GUID: "a", At: at(time.Hour), Code: 503},
		}, "a:gave_up:3"},
		{"older than the lookback", []Attempt{{ID: 1, GUID: "a", At: at(80 * time.Hour), Code: 503}}, "a:too_old:1"},
		{"duplicate answered 200 counts as delivered", []Attempt{
			{ID: 2, GUID: "a", At: at(time.Minute), Code: 200},
			{ID: 1, GUID: "a", At: at(time.Hour), Code: 0},
		}, "a:delivered:2"},
		{"several events, oldest first", []Attempt{
			{ID: 3, GUID: "c", At: at(time.Minute), Code: 503},
			{ID: 2, GUID: "b", At: at(2 * time.Minute), Code: 202},
			{ID: 1, GUID: "a", At: at(3 * time.Minute), Code: 0},
		}, "a:redeliver:1 b:delivered:2 c:redeliver:3"},
		{"no guid is skipped", []Attempt{{ID: 1, At: at(time.Minute), Code: 0}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			for i, d := range Decide(tt.attempts, now, 72*time.Hour) {
				if i > 0 {
					got += " "
				}
				got += fmt.Sprintf("%s:%s:%d", d.GUID, d.Verdict, d.Latest.ID)
			}
			if got != tt.want {
				t.Errorf("Decide = %q, want %q", got, tt.want)
			}
		})
	}
}
