package provision

import (
	"errors"
	"fmt"
	"strings"
)

// labelExpr is a parsed Jenkins label expression (hudson.model.Label's
// grammar: atoms, optionally double-quoted, combined with !, &&, ||, ->
// and <->, and parentheses). The queue shows the expression a build waits
// for only in its localized why text, so ferry parses it to find the
// template whose labels satisfy it.
type labelExpr interface {
	match(atoms map[string]bool) bool
}

type (
	atomExpr string
	notExpr  struct{ x labelExpr }
	binExpr  struct {
		op   string
		l, r labelExpr
	}
)

func (a atomExpr) match(atoms map[string]bool) bool { return atoms[string(a)] }
func (n notExpr) match(atoms map[string]bool) bool  { return !n.x.match(atoms) }
func (b binExpr) match(atoms map[string]bool) bool {
	l, r := b.l.match(atoms), b.r.match(atoms)
	switch b.op {
	case "&&":
		return l && r
	case "||":
		return l || r
	case "->":
		return !l || r
	default: // <->
		return l == r
	}
}

var errLabelSyntax = errors.New("label expression syntax")

// parseLabel parses expr; precedence from low to high: <->, ->, ||, &&, !.
func parseLabel(expr string) (labelExpr, error) {
	toks, err := tokenizeLabel(expr)
	if err != nil {
		return nil, err
	}
	p := &labelParser{toks: toks}
	x, err := p.binary(0)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected %q in %q", errLabelSyntax, p.toks[p.i].s, expr)
	}
	return x, nil
}

type labelToken struct {
	s    string
	atom bool
}

var labelOps = []string{"<->", "->", "&&", "||", "!", "(", ")"}

func tokenizeLabel(s string) ([]labelToken, error) {
	var out []labelToken
	for i := 0; i < len(s); {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\n' {
			i++
			continue
		}
		if c == '"' {
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("%w: unterminated quote in %q", errLabelSyntax, s)
			}
			out = append(out, labelToken{s: s[i+1 : i+1+j], atom: true})
			i += j + 2
			continue
		}
		op := ""
		for _, o := range labelOps {
			if strings.HasPrefix(s[i:], o) {
				op = o
				break
			}
		}
		if op != "" {
			out = append(out, labelToken{s: op})
			i += len(op)
			continue
		}
		j := i
		for j < len(s) && !strings.ContainsRune(" \t\n\"()!&|<", rune(s[j])) && !strings.HasPrefix(s[j:], "->") {
			j++
		}
		if j == i {
			return nil, fmt.Errorf("%w: unexpected %q in %q", errLabelSyntax, s[i:i+1], s)
		}
		out = append(out, labelToken{s: s[i:j], atom: true})
		i = j
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty expression", errLabelSyntax)
	}
	return out, nil
}

type labelParser struct {
	toks []labelToken
	i    int
}

var labelLevels = []string{"<->", "->", "||", "&&"}

func (p *labelParser) binary(level int) (labelExpr, error) {
	if level == len(labelLevels) {
		return p.unary()
	}
	l, err := p.binary(level + 1)
	if err != nil {
		return nil, err
	}
	for p.i < len(p.toks) && !p.toks[p.i].atom && p.toks[p.i].s == labelLevels[level] {
		p.i++
		r, err := p.binary(level + 1)
		if err != nil {
			return nil, err
		}
		l = binExpr{op: labelLevels[level], l: l, r: r}
	}
	return l, nil
}

func (p *labelParser) unary() (labelExpr, error) {
	if p.i >= len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected end", errLabelSyntax)
	}
	t := p.toks[p.i]
	p.i++
	switch {
	case t.atom:
		return atomExpr(t.s), nil
	case t.s == "!":
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notExpr{x}, nil
	case t.s == "(":
		x, err := p.binary(0)
		if err != nil {
			return nil, err
		}
		if p.i >= len(p.toks) || p.toks[p.i].atom || p.toks[p.i].s != ")" {
			return nil, fmt.Errorf("%w: missing )", errLabelSyntax)
		}
		p.i++
		return x, nil
	}
	return nil, fmt.Errorf("%w: unexpected %q", errLabelSyntax, t.s)
}
