package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestWarmPoolFromYAML: a template's warmPool reads from the config file,
// and a bad one is refused with the template, the field and the fix.
func TestWarmPoolFromYAML(t *testing.T) {
	dir := t.TempDir()
	base := "jenkins: {url: http://j/, user: ferry, apiToken: t}\nagents:\n  enabled: true\n  namespace: ci\n  templates:\n    - name: linux\n      labels: [linux]\n      warmPool:\n"
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, base+"        timeZone: Asia/Shanghai\n        schedule:\n          - {start: \"0 9 * * 1-5\", duration: 10h, size: 4}\n        excludeDates: [\"2026-10-01\"]\n        poolRef: linux-pool\n")
	c, err := Load(Sources{File: good, Lookup: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	p := c.Agents.Templates[0].WarmPool
	if p == nil || p.TimeZone != "Asia/Shanghai" || len(p.Schedule) != 1 || p.Schedule[0].Size != 4 || p.PoolRef != "linux-pool" {
		t.Fatalf("warm pool read as %+v", p)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, base+"        timeZone: Mars/Olympus\n        schedule:\n          - {start: \"0 9 * *\", size: 4}\n")
	_, err = Load(Sources{File: bad, Lookup: func(string) (string, bool) { return "", false }})
	for _, want := range []string{
		`template "linux": warmPool.timeZone: "Mars/Olympus" is not an IANA time zone`,
		`template "linux": warmPool.schedule[0].start: "0 9 * *" is not a cron expression`,
		`template "linux": warmPool.schedule[0].duration: set a positive duration`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
