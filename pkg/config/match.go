package config

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/ferryci/ferry/pkg/event"
)

// Match returns the pipelines that build ev. When there are none, reason
// says why, for the webhook's answer and the logs.
func (c Config) Match(ev event.Event) ([]Pipeline, string) {
	var out []Pipeline
	reason := fmt.Sprintf("no pipeline is configured for %s repository %s", ev.Provider, ev.Repo)
	for _, p := range c.Pipelines {
		ok, why := p.Matches(ev)
		if ok {
			out = append(out, p)
		} else if why != "" {
			reason = why
		}
	}
	if len(out) > 0 {
		reason = ""
	}
	return out, reason
}

// Matches reports whether the pipeline builds ev. When the repository
// matches but a filter does not, the reason names the filter.
func (p Pipeline) Matches(ev event.Event) (bool, string) {
	if p.Provider != "" && p.Provider != string(ev.Provider) {
		return false, ""
	}
	if ok, _ := path.Match(p.Repo, ev.Repo); !ok && !strings.EqualFold(p.Repo, ev.Repo) {
		return false, ""
	}
	kind := ev.Kind
	if kind == event.Comment {
		// A comment command acts on the pull request's builds.
		kind = event.PullRequest
	}
	if !contains(p.Events, string(kind)) {
		return false, fmt.Sprintf("pipeline %s does not build %s events", p.Name, ev.Kind)
	}
	switch ev.Kind {
	case event.Push:
		if b := ev.Branch(); !anyMatch(p.Branches, b) {
			return false, fmt.Sprintf("pipeline %s does not build branch %s", p.Name, b)
		}
	case event.Tag:
		if t := ev.TagName(); !anyMatch(p.Tags, t) {
			return false, fmt.Sprintf("pipeline %s does not build tag %s", p.Name, t)
		}
	case event.PullRequest, event.Comment:
		// A GitHub comment does not name the target branch; the PR's
		// own event was filtered on it.
		if ev.BaseRef != "" && !anyMatch(p.Branches, ev.BaseRef) {
			return false, fmt.Sprintf("pipeline %s does not build pull requests into %s", p.Name, ev.BaseRef)
		}
	}
	if ev.Kind == event.Push && ev.ChangedPaths != nil && !p.pathsMatch(ev.ChangedPaths) {
		return false, fmt.Sprintf("pipeline %s: no changed file matches its path filters", p.Name)
	}
	return true, ""
}

// pathsMatch applies the path filters. It is only asked when the payload
// listed the changed files; when it did not (or listed only part of them),
// the change is built, since nothing proves it irrelevant.
func (p Pipeline) pathsMatch(changed []string) bool {
	if len(p.Paths) == 0 && len(p.IgnorePaths) == 0 {
		return true
	}
	for _, f := range changed {
		if len(p.IgnorePaths) > 0 && anyMatch(p.IgnorePaths, f) {
			continue
		}
		if len(p.Paths) == 0 || anyMatch(p.Paths, f) {
			return true
		}
	}
	return false
}

func anyMatch(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if MatchPattern(p, name) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Params returns the Jenkins build parameters for ev in pipeline p: the
// pipeline's own parameters, expanded, and ferry's reserved ones.
// traceparent may be empty.
func (p Pipeline) Params(ev event.Event, traceparent string) map[string]string {
	vars := map[string]string{
		"sha": ev.SHA, "ref": ev.Ref, "branch": ev.Branch(), "tag": ev.TagName(),
		"repo": ev.Repo, "repo_url": ev.RepoURL, "event_id": ev.ID, "pipeline": p.Name,
	}
	if ev.Number > 0 {
		vars["number"] = fmt.Sprint(ev.Number)
	}
	out := make(map[string]string, len(p.Parameters)+len(ReservedParams))
	for k, v := range p.Parameters {
		out[k] = Expand(v, vars)
	}
	out[ParamSHA] = ev.SHA
	out[ParamRef] = ev.Ref
	out[ParamRepoURL] = ev.RepoURL
	out[ParamEventID] = ev.ID
	out[ParamPipeline] = p.Name
	out[ParamTriggerID] = TriggerID(ev.ID, p.Name)
	if traceparent != "" {
		out[ParamTraceParent] = traceparent
	}
	return out
}

// TriggerID is the correlation id of one event built by one pipeline: the
// value of FERRY_TRIGGER_ID, searched for in Jenkins before triggering.
func TriggerID(eventID, pipeline string) string { return eventID + "/" + pipeline }

// RerunTriggerID is the correlation id of attempt n (n ≥ 2) of a
// pipeline's build of an event, re-run after the earlier attempt was lost
// to infrastructure: TriggerID + "#n". Attempt 1 is TriggerID itself.
func RerunTriggerID(eventID, pipeline string, n int) string {
	if n <= 1 {
		return TriggerID(eventID, pipeline)
	}
	return fmt.Sprintf("%s#%d", TriggerID(eventID, pipeline), n)
}

// TriggerAttempt returns the attempt a correlation id names: n for one
// ending in "#n", else 1.
func TriggerAttempt(triggerID string) int {
	i := strings.LastIndexByte(triggerID, '#')
	if i < 0 {
		return 1
	}
	n, err := strconv.Atoi(triggerID[i+1:])
	if err != nil || n < 2 {
		return 1
	}
	return n
}
