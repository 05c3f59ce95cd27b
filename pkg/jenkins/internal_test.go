package jenkins

import "testing"

func TestParseQueueLocation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		loc    string
		want   int64
		wantOK bool
	}{
		{"http://j/queue/item/12/", 12, true},
		{"https://j/jenkins/queue/item/12", 12, true},
		{"/queue/item/3/", 3, true},
		{"queue/item/3/", 3, true},
		{"http://j/job/app/", 0, false},
		{"http://j/queue/item/x/", 0, false},
		{"http://j/queue/item/0/", 0, false},
		{"http://j/queue/", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.loc, func(t *testing.T) {
			t.Parallel()
			got, ok := parseQueueLocation(tt.loc)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseQueueLocation(%q) = %d, %v; want %d, %v", tt.loc, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestRedactRawURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"http://u:secret@host:port/x", "http://u:xxxxx@host:port/x"},
		{"https://u:se@cr@et@host/", "https://u:xxxxx@host/"},
		{"http://user@host/", "http://user@host/"},
		{"http://host/a@b", "http://host/a@b"},
		{"no scheme u:p@h", "no scheme u:p@h"},
	}
	for _, tt := range tests {
		if got := redactRawURL(tt.in); got != tt.want {
			t.Errorf("redactRawURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSnippet(t *testing.T) {
	t.Parallel()
	c := &Client{secret: "tok123"}
	tests := []struct {
		name, xError, body, want string
	}{
		{"x-error wins", "Agent called ‘a’ already exists", "<html>…</html>", "Agent called ‘a’ already exists"},
		{"html stripped", "", "<html><head><title>t</title><style>p{}</style></head><body>\n<h1>Error</h1>\n<p>bad  thing</p><script>x()</script></body></html>", "Error bad thing"},
		{"secret masked", "", "token tok123 rejected", "token xxxxx rejected"},
		{"plain", "", "Provided id (8) not found", "Provided id (8) not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := map[string][]string{}
			if tt.xError != "" {
				h["X-Error"] = []string{tt.xError}
			}
			if got := c.snippet(h, []byte(tt.body)); got != tt.want {
				t.Errorf("snippet = %q, want %q", got, tt.want)
			}
		})
	}
}
