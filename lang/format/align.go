package format

// align pads the operator column of runs of single-line items of the same
// shape (see the package doc).
func (p *printer) align(lines []*line) {
	var run []*line
	shape := ""
	flush := func() {
		if len(run) > 1 {
			max := 0
			for _, l := range run {
				if w := p.width(l, p.cellIndex(l)); w > max {
					max = w
				}
			}
			for _, l := range run {
				k := p.cellIndex(l)
				l.spaces[k] = max - p.width(l, k) + 1
			}
		}
		run, shape = run[:0], ""
	}
	for _, l := range lines {
		if l.blank {
			flush()
		}
		it := p.lineItem(l)
		switch {
		case it == nil || (it.shape == "" && !it.neutral):
			flush()
		case it.neutral:
		default:
			if it.shape != shape {
				flush()
				shape = it.shape
			}
			run = append(run, l)
		}
	}
	flush()
}

// lineItem returns the item that l holds entirely, or nil when l does not
// start an item or the item goes on past l. A trailing comment may follow.
func (p *printer) lineItem(l *line) *item {
	t := &p.toks[l.toks[0]]
	if t.comment || t.item == nil || t.item.last > l.toks[len(l.toks)-1] {
		return nil
	}
	return t.item
}

// cellIndex returns the position in l of its item's aligned token.
func (p *printer) cellIndex(l *line) int {
	cell := p.toks[l.toks[0]].item.cell
	for k, ti := range l.toks {
		if ti == cell {
			return k
		}
	}
	panic("format: aligned token not on its line")
}
