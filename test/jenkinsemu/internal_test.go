package jenkinsemu

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseLabel(t *testing.T) {
	tests := []struct {
		expr     string
		wantName string
		match    []string
		noMatch  []string
		wantErr  bool
	}{
		{expr: "", wantName: ""},
		{expr: "ferry", wantName: "ferry", match: []string{"ferry"}, noMatch: []string{"linux"}},
		{expr: "  linux &&amd64 ", wantName: "linux&&amd64", match: []string{"linux amd64"}, noMatch: []string{"linux"}},
		{expr: "a || b && c", wantName: "a||b&&c", match: []string{"a", "b c"}, noMatch: []string{"b"}},
		{expr: "(a || b) && c", wantName: "(a||b)&&c", match: []string{"a c"}, noMatch: []string{"a"}},
		{expr: "!gpu", wantName: "!gpu", match: []string{"cpu"}, noMatch: []string{"gpu"}},
		{expr: "!(a && b)", wantName: "!(a&&b)", match: []string{"a"}, noMatch: []string{"a b"}},
		{expr: "a -> b", wantName: "a->b", match: []string{"b", "x"}, noMatch: []string{"a"}},
		{expr: "a <-> b", wantName: "a<->b", match: []string{"a b", "x"}, noMatch: []string{"a"}},
		{expr: `"odd&label"`, wantName: `"odd&label"`, match: []string{"odd&label"}},
		{expr: "a &&", wantErr: true},
		{expr: "(a", wantErr: true},
		{expr: "a b", wantErr: true},
		{expr: `"open`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			l, err := parseLabel(tt.expr)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			name := ""
			if l != nil {
				name = l.name()
			}
			if name != tt.wantName {
				t.Errorf("name = %q, want %q", name, tt.wantName)
			}
			atoms := func(s string) map[string]bool {
				m := map[string]bool{}
				for _, a := range parseLabelString(s) {
					m[a] = true
				}
				return m
			}
			for _, m := range tt.match {
				if !l.match(atoms(m)) {
					t.Errorf("%q does not match %q", tt.expr, m)
				}
			}
			for _, m := range tt.noMatch {
				if l.match(atoms(m)) {
					t.Errorf("%q matches %q", tt.expr, m)
				}
			}
		})
	}
}

func TestTimeSpanString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{12 * time.Millisecond, "12 ms"},
		{230 * time.Millisecond, "0.23 sec"},
		{4900 * time.Millisecond, "4.9 sec"},
		{5 * time.Second, "5 sec"},
		{45 * time.Second, "45 sec"},
		{63 * time.Second, "1 min 3 sec"},
		{12*time.Minute + 5*time.Second, "12 min"},
		{2*time.Hour + 5*time.Minute, "2 hr 5 min"},
		{26 * time.Hour, "1 day 2 hr"},
		{3 * 24 * time.Hour, "3 days 0 hr"},
	}
	for _, tt := range tests {
		if got := timeSpanString(tt.d); got != tt.want {
			t.Errorf("timeSpanString(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestTreePrune(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal([]byte(`{
		"_class": "X", "a": 1, "b": {"_class": "B", "c": 2, "d": 3},
		"list": [{"_class": "L", "n": 1, "m": 9}, {"_class": "L", "n": 2, "m": 9}, {"_class": "L", "n": 3, "m": 9}]
	}`), &doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tree    string
		want    string
		wantErr bool
	}{
		{tree: "a", want: `{"_class":"X","a":1}`},
		{tree: "b[c],missing", want: `{"_class":"X","b":{"_class":"B","c":2}}`},
		{tree: "b", want: `{"_class":"X","b":{"_class":"B","c":2,"d":3}}`},
		{tree: "list[n]", want: `{"_class":"X","list":[{"_class":"L","n":1},{"_class":"L","n":2},{"_class":"L","n":3}]}`},
		{tree: "list[n]{1,}", want: `{"_class":"X","list":[{"_class":"L","n":2},{"_class":"L","n":3}]}`},
		{tree: "list[n]{,1}", want: `{"_class":"X","list":[{"_class":"L","n":1}]}`},
		{tree: "list[n]{2}", want: `{"_class":"X","list":[{"_class":"L","n":3}]}`},
		{tree: "list[n]{5,9}", want: `{"_class":"X","list":[]}`},
		{tree: "b[c", wantErr: true},
		{tree: "list{x}", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			tr, err := parseTree(tt.tree)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			got, _ := json.Marshal(prune(doc, tr))
			if string(got) != tt.want {
				t.Errorf("prune = %s, want %s", got, tt.want)
			}
		})
	}
}
