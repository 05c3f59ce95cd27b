package jenkinsemu

import (
	"fmt"
	"strings"
	"unicode"
)

// labelExpr is a parsed Jenkins label expression (hudson.model.labels).
// Jenkins' grammar (LabelExpression.g) knows atoms, parentheses, "!", "&&",
// "||", "->" and "<->"; precedence from lowest: "<->", "->", "||", "&&", "!".
// Atoms may be double-quoted when they contain operator characters.
type labelExpr interface {
	// match reports whether a node carrying the given label atoms satisfies
	// the expression.
	match(atoms map[string]bool) bool
	// name renders the expression the way Label.getName() does: atoms as is,
	// operators without spaces ("a&&b"), operands of a weaker-binding
	// operator in parentheses.
	name() string
	prec() int
}

type atomExpr string

func (a atomExpr) match(atoms map[string]bool) bool { return atoms[string(a)] }
func (a atomExpr) prec() int                        { return 100 }
func (a atomExpr) name() string {
	s := string(a)
	if strings.ContainsAny(s, "!&|()<>-\" \t") {
		return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
	}
	return s
}

type notExpr struct{ x labelExpr }

func (n notExpr) match(atoms map[string]bool) bool { return !n.x.match(atoms) }
func (n notExpr) prec() int                        { return 50 }
func (n notExpr) name() string                     { return "!" + paren(n, n.x) }

type binExpr struct {
	op   string
	l, r labelExpr
}

var binPrec = map[string]int{"<->": 10, "->": 20, "||": 30, "&&": 40}

func (b binExpr) prec() int { return binPrec[b.op] }
func (b binExpr) name() string {
	return paren(b, b.l) + b.op + paren(b, b.r)
}
func (b binExpr) match(atoms map[string]bool) bool {
	l, r := b.l.match(atoms), b.r.match(atoms)
	switch b.op {
	case "&&":
		return l && r
	case "||":
		return l || r
	case "->":
		return !l || r
	default: // "<->"
		return l == r
	}
}

func paren(outer, inner labelExpr) string {
	if inner.prec() < outer.prec() {
		return "(" + inner.name() + ")"
	}
	return inner.name()
}

// parseLabel parses a label expression; "" (or blanks) means "no label":
// the item may run on any NORMAL node.
func parseLabel(s string) (labelExpr, error) {
	p := &labelParser{toks: nil}
	if err := p.lex(s); err != nil {
		return nil, err
	}
	if len(p.toks) == 0 {
		return nil, nil
	}
	e, err := p.iff()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("label expression %q: unexpected %q", s, p.toks[p.pos].text)
	}
	return e, nil
}

type labelTok struct {
	op   bool
	text string
}

type labelParser struct {
	toks []labelTok
	pos  int
}

func (p *labelParser) lex(s string) error {
	rs := []rune(s)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case strings.HasPrefix(string(rs[i:]), "<->"):
			p.toks = append(p.toks, labelTok{true, "<->"})
			i += 3
		case strings.HasPrefix(string(rs[i:]), "->"), strings.HasPrefix(string(rs[i:]), "&&"), strings.HasPrefix(string(rs[i:]), "||"):
			p.toks = append(p.toks, labelTok{true, string(rs[i : i+2])})
			i += 2
		case c == '!' || c == '(' || c == ')':
			p.toks = append(p.toks, labelTok{true, string(c)})
			i++
		case c == '"':
			var b strings.Builder
			i++
			for ; i < len(rs) && rs[i] != '"'; i++ {
				if rs[i] == '\\' && i+1 < len(rs) {
					i++
				}
				b.WriteRune(rs[i])
			}
			if i >= len(rs) {
				return fmt.Errorf("label expression %q: unterminated quote", s)
			}
			i++
			p.toks = append(p.toks, labelTok{false, b.String()})
		default:
			j := i
			for j < len(rs) && !unicode.IsSpace(rs[j]) && !strings.ContainsRune("!()\"", rs[j]) &&
				!strings.HasPrefix(string(rs[j:]), "&&") && !strings.HasPrefix(string(rs[j:]), "||") &&
				!strings.HasPrefix(string(rs[j:]), "->") && !strings.HasPrefix(string(rs[j:]), "<->") {
				j++
			}
			p.toks = append(p.toks, labelTok{false, string(rs[i:j])})
			i = j
		}
	}
	return nil
}

func (p *labelParser) peekOp(op string) bool {
	return p.pos < len(p.toks) && p.toks[p.pos].op && p.toks[p.pos].text == op
}

func (p *labelParser) binary(op string, next func() (labelExpr, error)) (labelExpr, error) {
	l, err := next()
	if err != nil {
		return nil, err
	}
	for p.peekOp(op) {
		p.pos++
		r, err := next()
		if err != nil {
			return nil, err
		}
		l = binExpr{op: op, l: l, r: r}
	}
	return l, nil
}

func (p *labelParser) iff() (labelExpr, error)  { return p.binary("<->", p.impl) }
func (p *labelParser) impl() (labelExpr, error) { return p.binary("->", p.or) }
func (p *labelParser) or() (labelExpr, error)   { return p.binary("||", p.and) }
func (p *labelParser) and() (labelExpr, error)  { return p.binary("&&", p.not) }

func (p *labelParser) not() (labelExpr, error) {
	if p.peekOp("!") {
		p.pos++
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return notExpr{x}, nil
	}
	return p.primary()
}

func (p *labelParser) primary() (labelExpr, error) {
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("label expression: unexpected end")
	}
	t := p.toks[p.pos]
	if t.op && t.text == "(" {
		p.pos++
		e, err := p.iff()
		if err != nil {
			return nil, err
		}
		if !p.peekOp(")") {
			return nil, fmt.Errorf("label expression: missing )")
		}
		p.pos++
		return e, nil
	}
	if t.op {
		return nil, fmt.Errorf("label expression: unexpected %q", t.text)
	}
	p.pos++
	return atomExpr(t.text), nil
}

// parseLabelString splits a node's labelString into atoms the way
// Label.parse does: on whitespace.
func parseLabelString(s string) []string {
	return strings.Fields(s)
}
