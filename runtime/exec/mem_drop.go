package exec

// dropSmall is the size below which a finished range of mapped input is
// not dropped on its own but gathered with others (drop).
const dropSmall = 1 << 20

// pendingDrops are the finished ranges of mapped input gathered for
// dropping: per span (input file mapping, executor.spans) the address
// range covering that file's gathered ranges, and the bytes they hold in
// all.
type pendingDrops struct {
	hull  [][2]uintptr // per span; empty when hull[k][1] == 0
	bytes uintptr
	last  int // the span of the last range, looked at first
}

// drop releases the mapped input pages of [start, end) once they are no
// longer needed, keeping the process's memory bounded by what a step
// uses rather than by the input size. A range of at least dropSmall bytes
// is dropped at once. Smaller ones (norms, biases, the rows of a
// row-parallel shard: a real model has hundreds of thousands) are
// gathered, per input file, and once they add up to dropSmall bytes each
// file's are dropped as the one range covering them: every MADV_DONTNEED
// flushes the TLB of each core running the process, which one call per
// small tensor turned into most of the cost of dropping. Dropping the
// pages between gathered ranges is harmless: they belong to the same
// read-only file mapping, and a page read again is faulted back in from
// the page cache. A range outside every input mapping is dropped on its
// own.
func (ex *executor) drop(start, end uintptr) {
	if end <= start {
		return
	}
	if end-start >= dropSmall {
		dropRange(start, end)
		return
	}
	k := ex.spanOf(start, end)
	if k < 0 {
		dropRange(start, end)
		return
	}
	p := &ex.pending
	if len(p.hull) != len(ex.spans) {
		ex.flushDrops()
		p.hull = make([][2]uintptr, len(ex.spans))
	}
	if h := &p.hull[k]; h[1] == 0 {
		*h = [2]uintptr{start, end}
	} else {
		h[0], h[1] = min(h[0], start), max(h[1], end)
	}
	p.last = k
	if p.bytes += end - start; p.bytes >= dropSmall {
		ex.flushDrops()
	}
}

// spanOf returns the index of the span (ex.spans) holding [start, end),
// or -1.
func (ex *executor) spanOf(start, end uintptr) int {
	if k := ex.pending.last; k < len(ex.spans) && start >= ex.spans[k][0] && end <= ex.spans[k][1] {
		return k
	}
	for k, s := range ex.spans {
		if start >= s[0] && end <= s[1] {
			return k
		}
	}
	return -1
}

// flushDrops drops the gathered ranges (drop).
func (ex *executor) flushDrops() {
	p := &ex.pending
	for k, h := range p.hull {
		if h[1] != 0 {
			dropRange(h[0], h[1])
			p.hull[k] = [2]uintptr{}
		}
	}
	p.bytes = 0
}
