package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRedisTopologies: Sentinel and Cluster settings pass the schema, reach
// ferry's configuration as given, and ferry accepts them, with the
// sentinels' password taken from the Secret; the schema and ferry refuse
// the incomplete ones with an error naming the setting.
func TestRedisTopologies(t *testing.T) {
	t.Run("sentinel", func(t *testing.T) {
		m := render(t, nil, "--set", "config.store.redis.addr=",
			"--set", "config.store.redis.sentinel.masterName=ferry",
			"--set", "config.store.redis.sentinel.addrs={sentinel-0.redis:26379,sentinel-1.redis:26379}",
			"--set", "config.store.redis.waitReplicas=1")
		cfg, err := loadRenderedWith(t, m, map[string]string{"redis-sentinel-password": "sentinel-pw"})
		if err != nil {
			t.Fatalf("ferry refuses the rendered Sentinel configuration: %v", err)
		}
		s := cfg.Store.Redis.Sentinel
		if s.MasterName != "ferry" || !slices.Equal(s.Addrs, []string{"sentinel-0.redis:26379", "sentinel-1.redis:26379"}) ||
			s.Password != "sentinel-pw" || cfg.Store.Redis.WaitReplicas != 1 || cfg.BackendName() != "redis" {
			t.Errorf("sentinel settings lost on the way: %+v, waitReplicas %d", s, cfg.Store.Redis.WaitReplicas)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		m := render(t, []string{clusterValues(t, true)}, "--set", "config.store.redis.cluster.addrs={redis-0:6379,redis-1:6379,redis-2:6379}")
		cfg, err := loadRenderedWith(t, m, nil)
		if err != nil {
			t.Fatalf("ferry refuses the rendered Cluster configuration: %v", err)
		}
		if len(cfg.Store.Redis.Cluster.Addrs) != 3 || cfg.Store.Redis.Prefix != "{ferry}:" {
			t.Errorf("cluster settings lost on the way: %+v prefix %q", cfg.Store.Redis.Cluster, cfg.Store.Redis.Prefix)
		}
	})
	refused := []struct {
		name string
		set  []string
		want string
	}{
		{"sentinel address without a port", []string{"config.store.redis.sentinel.addrs={sentinel-0}"}, "sentinel"},
		{"unknown sentinel key", []string{"config.store.redis.sentinel.master=x"}, "master"},
		{"cluster without a hash tag", []string{"config.store.redis.addr=", "config.store.redis.cluster.addrs={r-0:6379}"}, "hash tag"},
		{"cluster with waitReplicas", []string{"config.store.redis.addr=", "config.store.redis.prefix=ferry-{x}:", "config.store.redis.waitReplicas=1", "config.store.redis.cluster.addrs={r-0:6379}"}, "store.redis.waitReplicas"},
		{"sentinel without a master name", []string{"config.store.redis.addr=", "config.store.redis.sentinel.addrs={s-0:26379}"}, "store.redis.sentinel.masterName"},
		{"addr and cluster together", []string{"config.store.redis.prefix=ferry-{x}:", "config.store.redis.cluster.addrs={r-0:6379}"}, "set only one of"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, stderr, err := renderErr(t, nil, args...)
			if err != nil {
				if !strings.Contains(stderr, tc.want) {
					t.Errorf("helm refused with %q, want it to name %q", stderr, tc.want)
				}
				return
			}
			_, err = loadRenderedWith(t, decode(t, out), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ferry accepted or refused without naming %q: %v", tc.want, err)
			}
		})
	}
}

// clusterValues writes a values file for Redis Cluster (a prefix of
// "{ferry}:" cannot be given with --set, which reads braces as a list).
func clusterValues(t testing.TB, noAddr bool) string {
	t.Helper()
	v := "config:\n  store:\n    redis:\n      prefix: \"{ferry}:\"\n"
	if noAddr {
		v += "      addr: \"\"\n"
	}
	p := filepath.Join(t.TempDir(), "cluster-values.yaml")
	if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
