package provision

import (
	"strconv"
	"strings"
	"time"

	"github.com/ferryci/ferry/pkg/eci"
)

const (
	agentPrefix  = "ferry-agent-"
	anchorPrefix = "ferry-anchor-"
	// warmPrefix names warm agents (see warm.go): they serve no queue item
	// when made, so their names carry when and in which order a cycle
	// made them instead.
	warmPrefix = "ferry-warm-"
)

// warmName names the i-th warm agent a cycle at now makes: unique as
// cycles are spaced by at least MinInterval, and short enough for a label
// value.
func warmName(now time.Time, i int) string {
	return warmPrefix + strconv.FormatInt(now.UnixMilli(), 36) + "-" + strconv.Itoa(i)
}

// isWarmName reports a name warmName made.
func isWarmName(name string) bool {
	rest, ok := strings.CutPrefix(name, warmPrefix)
	if !ok {
		return false
	}
	ms, i, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseInt(ms, 36, 64)
	_, err2 := strconv.Atoi(i)
	return err1 == nil && err2 == nil
}

// parseAgentName splits a name made by eci.AgentName into the queue item
// id and the attempt.
func parseAgentName(name string) (queueID int64, attempt int, ok bool) {
	rest, found := strings.CutPrefix(name, agentPrefix)
	if !found {
		return 0, 0, false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return 0, 0, false
	}
	q, err1 := strconv.ParseInt(rest[:i], 10, 64)
	a, err2 := strconv.Atoi(rest[i+1:])
	if err1 != nil || err2 != nil || q <= 0 || a <= 0 {
		return 0, 0, false
	}
	if eci.AgentName(q, a) != name {
		return 0, 0, false
	}
	return q, a, true
}

// anchorName is the name of the never-connected node that keeps a
// template's labels known to Jenkins (see the package comment).
func anchorName(template string) string { return anchorPrefix + template }

func anchorTemplate(node string) (string, bool) {
	return strings.CutPrefix(node, anchorPrefix)
}
