package promote

// Apps returns the configured apps' names, in configuration order.
func (p *Promoter) Apps() []string {
	out := make([]string, 0, len(p.cfg.Apps))
	for _, a := range p.cfg.Apps {
		out = append(out, a.Name)
	}
	return out
}
