package provision

import (
	"strconv"
	"strings"

	"github.com/ferryci/ferry/pkg/eci"
)

const (
	agentPrefix  = "ferry-agent-"
	anchorPrefix = "ferry-anchor-"
)

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
