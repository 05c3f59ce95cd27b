package kubeplugin

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Write renders the result as a ferry configuration fragment
// (agents.templates), each template preceded by where it came from and what
// was left out, and the notes for all of them at the top.
func Write(res Result, source string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Agent templates imported from %s by `ferry import kubernetes-plugin`.\n", source)
	b.WriteString("# Check them with `ferry check-config`, see each pod with `ferry render-pod`.\n#\n")
	for _, n := range res.Notes {
		comment(&b, "", "- "+n)
	}
	for _, s := range res.Skipped {
		comment(&b, "", "- not written: "+s)
	}
	b.WriteString("agents:\n  templates:\n")
	for _, im := range res.Templates {
		head := fmt.Sprintf("%s ← template %q of cloud %q", im.Template.Name, im.From, im.Cloud)
		if len(im.Chain) > 0 {
			head += ", inheriting " + strings.Join(im.Chain, ", ") + " (resolved with the plugin's rules and written whole)"
		}
		if im.Strategy != "" {
			head += "; yaml merged by " + im.Strategy
		}
		comment(&b, "  ", head)
		for _, n := range im.Notes {
			comment(&b, "  ", "  - "+n)
		}
		if im.Invalid != nil {
			comment(&b, "  ", "  INVALID for ferry, fix before use:")
			for _, line := range strings.Split(im.Invalid.Error(), "\n") {
				comment(&b, "  ", "    "+line)
			}
		}
		out, err := yaml.Marshal(im.Template)
		if err != nil {
			return nil, fmt.Errorf("write template %s: %w", im.Template.Name, err)
		}
		for i, line := range firstKeys(strings.Split(strings.TrimRight(string(out), "\n"), "\n"), "name", "labels", "image") {
			if i == 0 {
				b.WriteString("  - " + line + "\n")
			} else {
				b.WriteString("    " + line + "\n")
			}
		}
	}
	return b.Bytes(), nil
}

// comment writes text as comment lines of at most about 100 columns.
func comment(b *bytes.Buffer, indent, text string) {
	lead := indent + "# "
	cont := lead + strings.Repeat(" ", len(text)-len(strings.TrimLeft(text, " -"))) + "  "
	line := lead
	for i, w := range strings.Fields(text) {
		if i > 0 && len(line)+len(w)+1 > 100 {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = cont
		}
		if i == 0 {
			line += strings.Repeat(" ", len(text)-len(strings.TrimLeft(text, " ")))
		}
		line += w + " "
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
}

// firstKeys moves the named top-level keys (with their values) of a YAML
// mapping to the front, in that order, so a template reads name first.
func firstKeys(lines []string, keys ...string) []string {
	var blocks [][]string
	for _, l := range lines {
		if len(blocks) == 0 || (l != "" && l[0] != ' ' && l[0] != '-') {
			blocks = append(blocks, nil)
		}
		blocks[len(blocks)-1] = append(blocks[len(blocks)-1], l)
	}
	var front, rest []string
	for _, k := range keys {
		for _, b := range blocks {
			if strings.HasPrefix(b[0], k+":") {
				front = append(front, b...)
			}
		}
	}
	for _, b := range blocks {
		if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(b[0], k+":") }) {
			rest = append(rest, b...)
		}
	}
	return append(front, rest...)
}
