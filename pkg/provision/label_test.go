package provision

import (
	"testing"

	"github.com/ferryci/ferry/pkg/eci"
	"github.com/ferryci/ferry/pkg/jenkins"
)

func TestLabelExpressions(t *testing.T) {
	atoms := map[string]bool{"linux": true, "ferry-eci": true, "amd64": true}
	for _, tc := range []struct {
		expr string
		want bool
		bad  bool
	}{
		{expr: "linux", want: true},
		{expr: "ferry-eci", want: true},
		{expr: `"ferry-eci"`, want: true},
		{expr: "windows", want: false},
		{expr: "linux && amd64", want: true},
		{expr: "linux && arm64", want: false},
		{expr: "windows || linux", want: true},
		{expr: "!windows && (linux || mac)", want: true},
		{expr: "linux -> amd64", want: true},
		{expr: "linux <-> windows", want: false},
		{expr: "ferry-eci&&!arm64", want: true},
		{expr: "(linux", bad: true},
		{expr: "linux &&", bad: true},
		{expr: `"open`, bad: true},
		{expr: "", bad: true},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			x, err := parseLabel(tc.expr)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseLabel(%q) = nil error, want one", tc.expr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseLabel(%q): %v", tc.expr, err)
			}
			if got := x.match(atoms); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTemplateForQueueItem(t *testing.T) {
	ts, err := eci.Resolve([]eci.Template{
		{Name: "linux", Labels: []string{"linux", "ferry-eci"}},
		{Name: "big", Labels: []string{"big"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &Provisioner{cfg: Config{Templates: ts}}
	nodes := map[string]string{"ferry-agent-3-1": "big", "ferry-anchor-linux": "linux"}
	for _, tc := range []struct {
		why  string
		want string
	}{
		{"Waiting for next available executor on ‘linux’", "linux"},
		{"Waiting for next available executor on ‘\"ferry-eci\"’", "linux"},
		{"There are no nodes with the label ‘linux && ferry-eci’", "linux"},
		{"All nodes of label ‘big’ are offline", "big"},
		{"ferry-anchor-linux is offline", "linux"},
		{"Waiting for next available executor on ‘ferry-agent-3-1’", "big"},
		{"Waiting for next available executor on ‘!windows’", ""},
		{"Waiting for next available executor on ‘windows’", ""},
		{"Waiting for next available executor", ""},
		{"In the quiet period. Expires in 4.9 sec", ""},
	} {
		t.Run(tc.why, func(t *testing.T) {
			got, ok := p.templateFor(jenkins.QueueItem{Why: tc.why}, nodes)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("templateFor = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

func TestAgentNames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		q       int64
		attempt int
		ok      bool
	}{
		{eci.AgentName(42, 1), 42, 1, true},
		{eci.AgentName(7, 12), 7, 12, true},
		{"ferry-agent-x-1", 0, 0, false},
		{"ferry-agent-1", 0, 0, false},
		{"ferry-agent-01-1", 0, 0, false},
		{"ferry-anchor-linux", 0, 0, false},
		{"static", 0, 0, false},
	} {
		q, a, ok := parseAgentName(tc.name)
		if q != tc.q || a != tc.attempt || ok != tc.ok {
			t.Errorf("parseAgentName(%q) = %d, %d, %v; want %d, %d, %v", tc.name, q, a, ok, tc.q, tc.attempt, tc.ok)
		}
	}
}
