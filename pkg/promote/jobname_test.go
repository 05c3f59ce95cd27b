package promote_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ferryci/ferry/pkg/promote"
)

// The verification Job's name is found again after a restart, so it must be
// the same for one promotion and environment, differ between promotions
// (else a later promotion would take an earlier one's Job and its outcome)
// and be a valid name, however long the environment's name (config allows
// 63 characters).
func TestVerifyJobNameUniqueAndValid(t *testing.T) {
	ids := []string{"20260102-150405-0a1b2c3d", "20260102-150405-0a1b2c3e", "20260102-150406-0a1b2c3d"}
	for _, env := range []string{"test", "production-cn-hangzhou-blue", strings.Repeat("e", 40), strings.Repeat("p", 63)} {
		t.Run(env, func(t *testing.T) {
			seen := map[string]string{}
			for _, id := range ids {
				n := promote.VerifyJobName(id, env)
				if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
					t.Errorf("name %q for %s: %v", n, id, errs)
				}
				if again := promote.VerifyJobName(id, env); again != n {
					t.Errorf("name for %s = %q, then %q; want it stable", id, n, again)
				}
				if other, dup := seen[n]; dup {
					t.Errorf("promotions %s and %s share verification job %q", other, id, n)
				}
				seen[n] = id
			}
		})
	}
	if got, want := promote.VerifyJobName(ids[0], "test"), "ferry-verify-test-"+ids[0]; got != want {
		t.Errorf("short name = %q, want %q (unchanged, so running promotions find their Jobs)", got, want)
	}
}
