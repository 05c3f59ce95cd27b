package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRedisTopology: one of addr, sentinel and cluster, each complete;
// every refusal names the setting to fix.
func TestRedisTopology(t *testing.T) {
	cases := []struct {
		name    string
		store   string
		backend string
		want    []string // substrings of the error; none: valid
	}{
		{"addr", "redis:\n  addr: r:6379", "redis", nil},
		{"sentinel", "redis:\n  waitReplicas: 1\n  sentinel:\n    masterName: m\n    addrs: [s-0:26379, s-1:26379]", "redis", nil},
		{"cluster", "redis:\n  prefix: \"{ferry}:\"\n  cluster:\n    addrs: [r-0:6379]", "redis", nil},
		{"nothing set but backend redis", "backend: redis", "redis", []string{"store.redis.addr: must be set"}},
		{"addr and sentinel", "redis:\n  addr: r:6379\n  sentinel:\n    masterName: m\n    addrs: [s:26379]", "redis",
			[]string{"set only one of store.redis.addr, store.redis.sentinel.addrs"}},
		{"sentinel without master", "redis:\n  sentinel:\n    addrs: [s:26379]", "redis", []string{"store.redis.sentinel.masterName: must be set"}},
		{"sentinel address without port", "redis:\n  sentinel:\n    masterName: m\n    addrs: [sentinel]", "redis",
			[]string{"store.redis.sentinel.addrs[0]: \"sentinel\" is not host:port"}},
		{"sentinel settings without sentinels", "redis:\n  addr: r:6379\n  sentinel:\n    masterName: m", "redis",
			[]string{"store.redis.sentinel.addrs: must list the sentinels"}},
		{"sentinel password twice", "redis:\n  sentinel:\n    masterName: m\n    addrs: [s:26379]\n    password: a\n    passwordFile: /f", "redis",
			[]string{"store.redis.sentinel.password: set password or passwordFile, not both"}},
		{"cluster without hash tag", "redis:\n  cluster:\n    addrs: [r:6379]", "redis", []string{"store.redis.prefix: \"ferry:\" has no hash tag"}},
		{"cluster with empty hash tag", "redis:\n  prefix: \"{}:\"\n  cluster:\n    addrs: [r:6379]", "redis", []string{"has no hash tag"}},
		{"cluster with db and waitReplicas", "redis:\n  prefix: \"{f}:\"\n  db: 2\n  waitReplicas: 1\n  cluster:\n    addrs: [r:6379]", "redis",
			[]string{"store.redis.db: must be 0", "store.redis.waitReplicas: is for a single primary"}},
		{"negative waitReplicas", "redis:\n  addr: r:6379\n  waitReplicas: -1", "redis", []string{"store.redis.waitReplicas: must not be negative"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(minimal + "store:\n  " + strings.ReplaceAll(tc.store, "\n", "\n  ") + "\n"))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if got := c.BackendName(); got != tc.backend {
				t.Errorf("backend = %q, want %q", got, tc.backend)
			}
			err = c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestSentinelFromEnvironment: the sentinels, their master and their
// password come from the environment.
func TestSentinelFromEnvironment(t *testing.T) {
	env := map[string]string{
		"FERRY_REDIS_SENTINEL_ADDRS":    "s-0:26379, s-1:26379",
		"FERRY_REDIS_SENTINEL_MASTER":   "m",
		"FERRY_REDIS_SENTINEL_PASSWORD": "pw",
		"FERRY_REDIS_WAIT_REPLICAS":     "1",
	}
	file := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(file, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Sources{File: file, Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Store.Redis.Sentinel
	if len(s.Addrs) != 2 || s.Addrs[1] != "s-1:26379" || s.MasterName != "m" || s.Password != "pw" || c.Store.Redis.WaitReplicas != 1 {
		t.Errorf("sentinel from environment = %+v, waitReplicas %d", s, c.Store.Redis.WaitReplicas)
	}
}
