package kubeplugin

import (
	"errors"
	"strings"
)

// splitCommandLine splits a command the way the plugin does (Ant's
// Commandline.translateCommandline): on spaces, with single or double
// quotes grouping words and no escapes.
func splitCommandLine(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quote, inWord := rune(0), false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unbalanced quotes")
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}
