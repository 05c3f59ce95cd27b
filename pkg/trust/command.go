// Package trust decides which pull requests ferry builds and which comment
// commands it obeys.
//
// A pull request from a fork, or from an author who is not trusted, is held
// until a trusted user comments /ok-to-test. Trust is a per-pipeline policy
// (config.Trust): organization/project members, collaborators with write
// access, listed users and teams. GitHub's author_association proves trust
// where it can (OWNER, MEMBER, COLLABORATOR); otherwise the Git host is
// asked (Checker), and its answers are cached briefly.
//
// The decisions are pure functions over plain facts (Gate, Act), so that
// each is a row of a table test; the Checker only gathers the facts.
package trust

import (
	"strings"
	"unicode/utf8"
)

// Command is a PR command found in a comment.
type Command string

// Commands ferry obeys.
const (
	None     Command = ""
	OkToTest Command = "ok-to-test" // build a held pull request's head
	Retest   Command = "retest"     // build the pull request's head again
	Cancel   Command = "cancel"     // cancel the pull request's builds
)

// MaxCommentChars is the longest comment body read for commands: GitHub
// refuses longer comment bodies (65536 characters), GitLab notes are
// capped at 1,000,000; a body beyond this is not a human's command.
const MaxCommentChars = 65536

// ParseCommand returns the first command in a comment body, or None.
//
// A command is a line of its own that starts with /ok-to-test, /retest or
// /cancel (surrounding spaces allowed, anything after a space ignored, as
// Prow does). Lines inside fenced code blocks (``` or ~~~), indented code
// (four spaces or a tab) and quoted text (lines starting with >) are never
// commands: quoting a command or showing it in an example obeys nothing.
// A body longer than MaxCommentChars is not read.
func ParseCommand(body string) Command {
	if utf8.RuneCountInString(body) > MaxCommentChars {
		return None
	}
	fence := ""
	for _, raw := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		trimmed := strings.TrimSpace(raw)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				fence = ""
			}
			continue
		}
		if f := fenceOf(trimmed); f != "" && indent(raw) < 4 {
			fence = f
			continue
		}
		if indent(raw) >= 4 || strings.HasPrefix(trimmed, ">") {
			continue
		}
		word, _, _ := strings.Cut(trimmed, " ")
		word, _, _ = strings.Cut(word, "\t")
		switch strings.ToLower(word) {
		case "/ok-to-test":
			return OkToTest
		case "/retest":
			return Retest
		case "/cancel":
			return Cancel
		}
	}
	return None
}

// fenceOf returns the fence a line opens (``` or ~~~, three or more), "".
func fenceOf(line string) string {
	for _, c := range []string{"`", "~"} {
		n := len(line) - len(strings.TrimLeft(line, c))
		if n >= 3 {
			return strings.Repeat(c, n)
		}
	}
	return ""
}

// indent counts leading columns, a tab counting as four.
func indent(line string) int {
	n := 0
	for _, c := range line {
		switch c {
		case ' ':
			n++
		case '\t':
			n += 4
		default:
			return n
		}
	}
	return 0 // a blank line is not indented code
}
