package jenkinsemu

import (
	"fmt"
	"strconv"
	"strings"
)

// treeSpec is a parsed "?tree=" parameter (Stapler's TreePruner): a comma
// separated list of property names, each optionally followed by [sub,tree]
// and by a {M,N} / {M,} / {,N} / {N} range on arrays. Real Jenkins returns
// exactly the named properties (plus "_class" on every object) and silently
// skips names that do not exist; the emulator does the same, so a client that
// forgets a field in its tree fails here as it would against Jenkins.
type treeSpec struct {
	fields map[string]*treeField
}

type treeField struct {
	sub        *treeSpec // nil: the whole value
	hasRange   bool
	start, end int // end < 0: open
}

func parseTree(s string) (*treeSpec, error) {
	p := &treeParser{s: s}
	t, err := p.spec()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.s) {
		return nil, fmt.Errorf("tree %q: unexpected %q at %d", s, p.s[p.i], p.i)
	}
	return t, nil
}

type treeParser struct {
	s string
	i int
}

func (p *treeParser) spec() (*treeSpec, error) {
	t := &treeSpec{fields: map[string]*treeField{}}
	for {
		start := p.i
		for p.i < len(p.s) && !strings.ContainsRune(",[]{}", rune(p.s[p.i])) {
			p.i++
		}
		name := strings.TrimSpace(p.s[start:p.i])
		f := &treeField{}
		if p.i < len(p.s) && p.s[p.i] == '[' {
			p.i++
			sub, err := p.spec()
			if err != nil {
				return nil, err
			}
			if p.i >= len(p.s) || p.s[p.i] != ']' {
				return nil, fmt.Errorf("tree %q: missing ]", p.s)
			}
			p.i++
			f.sub = sub
		}
		if p.i < len(p.s) && p.s[p.i] == '{' {
			end := strings.IndexByte(p.s[p.i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("tree %q: missing }", p.s)
			}
			r := p.s[p.i+1 : p.i+end]
			p.i += end + 1
			f.hasRange, f.start, f.end = true, 0, -1
			lo, hi, comma := strings.Cut(r, ",")
			var err error
			if lo != "" {
				if f.start, err = strconv.Atoi(lo); err != nil {
					return nil, fmt.Errorf("tree range %q: %w", r, err)
				}
			}
			switch {
			case !comma: // {N}: exactly element N
				f.end = f.start + 1
			case hi != "":
				if f.end, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("tree range %q: %w", r, err)
				}
			}
		}
		if name != "" {
			t.fields[name] = f
		}
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		return t, nil
	}
}

// prune applies a tree to an exported value. A nil tree keeps everything.
func prune(v any, t *treeSpec) any {
	if t == nil {
		return v
	}
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		if c, ok := x["_class"]; ok {
			out["_class"] = c
		}
		for name, f := range t.fields {
			val, ok := x[name]
			if !ok {
				continue
			}
			if arr, isArr := val.([]any); isArr && f.hasRange {
				lo, hi := f.start, f.end
				if hi < 0 || hi > len(arr) {
					hi = len(arr)
				}
				if lo > hi {
					lo = hi
				}
				val = arr[lo:hi]
			}
			out[name] = prune(val, f.sub)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = prune(e, t)
		}
		return out
	default:
		return v
	}
}
