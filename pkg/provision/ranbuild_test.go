package provision

import (
	"testing"

	"github.com/ferryci/ferry/pkg/jenkins"
)

// An agent ferry took offline after its build is recognised whatever
// language Jenkins renders the offline cause in: in zh_CN, ja and zh_TW
// offlineCauseReason keeps Jenkins' "Disconnected by" sentence around
// ferry's message.
func TestRanBuildLocalizedReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		reason string
		want   bool
	}{
		{"English", OneBuildReason, true},
		{"zh_CN", "被 ferry : " + OneBuildReason + "断开连接", true},
		{"ja", "ferryがオフラインにしています。 : " + OneBuildReason, true},
		{"zh_TW", "由 ferry 中斷連線 : " + OneBuildReason, true},
		{"an operator's reason", "被 ops : maintenance断开连接", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := &jenkins.Computer{Offline: true, TemporarilyOffline: true, OfflineReason: tt.reason}
			if got := ranBuild(n); got != tt.want {
				t.Errorf("ranBuild(reason %q) = %v, want %v", tt.reason, got, tt.want)
			}
		})
	}
}
