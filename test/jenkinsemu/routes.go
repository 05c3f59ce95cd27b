package jenkinsemu

import (
	"net/http"
	"strconv"
	"strings"
)

// Route templates: the keys of Calls().
const (
	RouteRoot                = "GET /api/json"
	RouteCrumb               = "GET /crumbIssuer/api/json"
	RouteJob                 = "GET /job/{job}/api/json"
	RouteBuild               = "POST /job/{job}/build"
	RouteBuildWithParameters = "POST /job/{job}/buildWithParameters"
	RouteBuildInfo           = "GET /job/{job}/{number}/api/json"
	RoutePermalink           = "GET /job/{job}/{permalink}/api/json"
	RouteStopBuild           = "POST /job/{job}/{number}/stop"
	RouteQueue               = "GET /queue/api/json"
	RouteQueueItem           = "GET /queue/item/{id}/api/json"
	RouteCancelItem          = "POST /queue/cancelItem"
	RouteComputers           = "GET /computer/api/json"
	RouteCreateNode          = "POST /computer/doCreateItem"
	RouteComputer            = "GET /computer/{name}/api/json"
	RouteDeleteNode          = "POST /computer/{name}/doDelete"
	RouteToggleOffline       = "POST /computer/{name}/toggleOffline"
	RouteChangeOfflineCause  = "POST /computer/{name}/changeOfflineCause"
	RouteAgentJNLP           = "GET /computer/{name}/jenkins-agent.jnlp"
	RouteSlaveAgentJNLP      = "GET /computer/{name}/slave-agent.jnlp"
)

type routeArgs struct {
	job       string // full name a/b
	number    int
	permalink string
	id        int64
	name      string
	// withParams tells buildWithParameters from build.
	withParams bool
}

type handlerFunc func(s *Server, w http.ResponseWriter, r *http.Request, p principal, a routeArgs)

type route struct {
	key  string
	h    handlerFunc
	args routeArgs
}

var permalinks = map[string]bool{
	"lastBuild": true, "lastCompletedBuild": true, "lastSuccessfulBuild": true,
	"lastFailedBuild": true, "lastStableBuild": true, "lastUnstableBuild": true,
	"lastUnsuccessfulBuild": true, "firstBuild": true,
}

// matchRoute maps a request to its template and handler. Reads of api/json
// answer to any method, like Stapler; actions Jenkins marks @RequirePOST
// answer 405 to other methods.
func matchRoute(method, path string) route {
	// Empty segments ("/job/app//1/") are ignored, as Jetty and Stapler do;
	// gojenkins' GetBuild relies on it.
	var segs []string
	for _, seg := range strings.Split(path, "/") {
		if seg != "" {
			segs = append(segs, seg)
		}
	}
	isAPI := func(rest []string) bool {
		return len(rest) == 2 && rest[0] == "api" && rest[1] == "json"
	}
	other := route{key: method + " <other>", h: handleNotFound}
	tmpl := func(t string) string {
		// Reads are counted under their GET template whatever the method.
		if _, rest, ok := strings.Cut(t, " "); ok && strings.HasPrefix(t, "GET ") {
			return method + " " + rest
		}
		return t
	}
	post := func(t string, h handlerFunc, a routeArgs) route {
		if method != http.MethodPost {
			_, rest, _ := strings.Cut(t, " ")
			return route{key: method + " " + rest, h: handleRequirePOST, args: a}
		}
		return route{key: t, h: h, args: a}
	}
	switch {
	case len(segs) == 0:
		return route{key: method + " /", h: handleHTMLRoot}
	case isAPI(segs):
		return route{key: tmpl(RouteRoot), h: handleRoot}
	case len(segs) == 3 && segs[0] == "crumbIssuer" && isAPI(segs[1:]):
		return route{key: tmpl(RouteCrumb), h: handleCrumb}
	case segs[0] == "queue":
		switch {
		case isAPI(segs[1:]):
			return route{key: tmpl(RouteQueue), h: handleQueue}
		case len(segs) == 2 && segs[1] == "cancelItem":
			return post(RouteCancelItem, handleCancelItem, routeArgs{})
		case len(segs) >= 3 && segs[1] == "item":
			id, err := strconv.ParseInt(segs[2], 10, 64)
			if err != nil {
				return other
			}
			if isAPI(segs[3:]) {
				return route{key: tmpl(RouteQueueItem), h: handleQueueItem, args: routeArgs{id: id}}
			}
		}
		return other
	case segs[0] == "computer":
		switch {
		case len(segs) == 1:
			return route{key: method + " /computer/", h: handleHTMLComputers}
		case isAPI(segs[1:]):
			return route{key: tmpl(RouteComputers), h: handleComputers}
		case len(segs) == 2 && segs[1] == "doCreateItem":
			return post(RouteCreateNode, handleCreateNode, routeArgs{})
		}
		a := routeArgs{name: segs[1]}
		rest := segs[2:]
		switch {
		case len(rest) == 0:
			return route{key: method + " /computer/{name}/", h: handleHTMLComputer, args: a}
		case isAPI(rest):
			return route{key: tmpl(RouteComputer), h: handleComputer, args: a}
		case len(rest) == 1 && rest[0] == "doDelete":
			return post(RouteDeleteNode, handleDeleteNode, a)
		case len(rest) == 1 && rest[0] == "toggleOffline":
			return post(RouteToggleOffline, handleToggleOffline, a)
		case len(rest) == 1 && rest[0] == "changeOfflineCause":
			return post(RouteChangeOfflineCause, handleChangeOfflineCause, a)
		case len(rest) == 1 && rest[0] == "jenkins-agent.jnlp":
			return route{key: tmpl(RouteAgentJNLP), h: handleJNLP, args: a}
		case len(rest) == 1 && rest[0] == "slave-agent.jnlp":
			return route{key: tmpl(RouteSlaveAgentJNLP), h: handleJNLP, args: a}
		}
		return other
	case segs[0] == "job":
		var names []string
		i := 0
		for i+1 < len(segs) && segs[i] == "job" {
			names = append(names, segs[i+1])
			i += 2
		}
		a := routeArgs{job: strings.Join(names, "/")}
		rest := segs[i:]
		switch {
		case len(rest) == 0:
			return route{key: method + " /job/{job}/", h: handleHTMLJob, args: a}
		case isAPI(rest):
			return route{key: tmpl(RouteJob), h: handleJob, args: a}
		case len(rest) == 1 && rest[0] == "build":
			return post(RouteBuild, handleTrigger, a)
		case len(rest) == 1 && rest[0] == "buildWithParameters":
			a.withParams = true
			return post(RouteBuildWithParameters, handleTrigger, a)
		}
		if n, err := strconv.Atoi(rest[0]); err == nil && n > 0 {
			a.number = n
			switch {
			case len(rest) == 1:
				return route{key: method + " /job/{job}/{number}/", h: handleHTMLBuild, args: a}
			case isAPI(rest[1:]):
				return route{key: tmpl(RouteBuildInfo), h: handleBuildInfo, args: a}
			case len(rest) == 2 && rest[1] == "stop":
				return post(RouteStopBuild, handleStopBuild, a)
			}
		}
		if permalinks[rest[0]] && isAPI(rest[1:]) {
			a.permalink = rest[0]
			return route{key: tmpl(RoutePermalink), h: handleBuildInfo, args: a}
		}
		return other
	}
	return other
}
