package exec

import (
	"runtime"
	"sync"

	"github.com/rolltpl/rolltpl/runtime/fp8"
	"github.com/rolltpl/rolltpl/runtime/tensor"
)

// deqCache shares dequantized FP8 weights between the executors of one
// HF -> MCA conversion. At TP > 1 every rank file's executor runs the
// steps of every tensor-parallel weight (each keeps its own slice), in
// the same order and concurrently, so without sharing each would decode
// the whole weight again (TP times the work). The first executor to
// reach a weight decodes it; the others wait for it and use the same
// bytes. A weight stays in the cache while an executor uses it, then
// while the bytes of the unused ones stay under deqBudget (the least
// recently used go first), so memory is bounded by deqBudget plus one
// step's weights per running executor, whatever the model size.
type deqCache struct {
	mu      sync.Mutex
	entries map[int]*deqEntry
	idle    int64 // bytes of entries nobody uses
	tick    int64
}

// deqBudget is how many bytes of dequantized weights no executor is
// using the cache keeps.
const deqBudget = 256 << 20

type deqEntry struct {
	ready chan struct{} // closed once buf or err is set
	buf   []byte
	err   error
	users int
	last  int64
}

// get returns the dequantized bytes of plan input i (n bytes, produced by
// fill the first time) and the function to call when done with them.
func (c *deqCache) get(i, n int, fill func(buf []byte) error) ([]byte, func(), error) {
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[int]*deqEntry{}
	}
	e, ok := c.entries[i]
	if ok {
		if e.users == 0 && e.buf != nil {
			c.idle -= int64(len(e.buf))
		}
		e.users++
		c.mu.Unlock()
		<-e.ready
	} else {
		e = &deqEntry{ready: make(chan struct{}), users: 1}
		c.entries[i] = e
		c.mu.Unlock()
		buf := bigAlloc(n)
		if err := fill(buf); err != nil {
			bigFree(buf)
			e.err = err
		} else {
			e.buf = buf
		}
		close(e.ready)
	}
	release := func() { c.release(i, e) }
	if e.err != nil {
		release()
		return nil, func() {}, e.err
	}
	return e.buf, release, nil
}

// release ends one use of entry e of input i, evicting the least recently
// used unused entries beyond the budget.
func (c *deqCache) release(i int, e *deqEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.users--
	if e.users > 0 {
		return
	}
	if e.err != nil {
		delete(c.entries, i)
		return
	}
	c.tick++
	e.last = c.tick
	c.idle += int64(len(e.buf))
	for c.idle > deqBudget {
		oldest, at := -1, int64(0)
		for k, x := range c.entries {
			if x.users == 0 && x.buf != nil && (oldest < 0 || x.last < at) {
				oldest, at = k, x.last
			}
		}
		if oldest < 0 {
			break
		}
		x := c.entries[oldest]
		delete(c.entries, oldest)
		c.idle -= int64(len(x.buf))
		bigFree(x.buf)
	}
}

// free releases every cached weight; no executor may use them any more.
func (c *deqCache) free() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, x := range c.entries {
		if x.buf != nil {
			bigFree(x.buf)
		}
		delete(c.entries, k)
	}
	c.idle = 0
}

// dequantized returns the dequantized bytes of an FP8 input of the
// executor's current step, through the conversion's cache when there is
// one; the executor releases them when the step is done (releaseDeq).
func (ex *executor) dequantized(in inputData, i int) ([]byte, error) {
	d := in.deq
	fill := func(buf []byte) error {
		scales, err := fp8.Scales(d.scaleName, d.scaleDT, d.grid, d.scales)
		if err != nil {
			return err
		}
		return dequantizeAll(d.layout, d.name, buf, d.out, in.data, 0, scales)
	}
	n := len(in.data) * d.out.Size()
	if d.cache == nil {
		buf := ex.arena.alloc(n)
		return buf, fill(buf)
	}
	buf, release, err := d.cache.get(i, n, fill)
	if err != nil {
		return nil, err
	}
	ex.deqHeld = append(ex.deqHeld, release)
	return buf, nil
}

// releaseDeq ends the executor's use of the dequantized weights of its
// last step.
func (ex *executor) releaseDeq() {
	for _, r := range ex.deqHeld {
		r()
	}
	ex.deqHeld = ex.deqHeld[:0]
}

// shareFor keeps f's cache only for a layout whose rank files read the
// same weights (TP·EP > 1: tensor-parallel shards, replicas across
// expert ranks); otherwise each weight is dequantized once anyway, into
// the executor's arena. It returns f.
func (f *FP8Info) shareFor(l Layout) *FP8Info {
	if f != nil {
		if n := l.Normalized(); n.TP*n.EP <= 1 {
			f.cache = nil
		}
	}
	return f
}

// free drops the cached dequantized weights of a finished conversion.
func (f *FP8Info) free() {
	if f != nil && f.cache != nil {
		f.cache.free()
	}
}

// dequantizeAll dequantizes the run of a weight's elements from e0 whose
// codes are codes into buf, cut into up to GOMAXPROCS runs of at least
// 512 KiB of codes decoded concurrently (fp8.Layout.Dequantize takes any
// run). The error of the first run that fails is returned, so the element
// named is the first bad one.
func dequantizeAll(l fp8.Layout, name string, buf []byte, out tensor.DType, codes []byte, e0 int64, scales []float32) error {
	parts := min(runtime.GOMAXPROCS(0), len(codes)>>19)
	if parts <= 1 {
		return l.Dequantize(name, buf, out, codes, e0, scales)
	}
	size := out.Size()
	per := (len(codes) + parts - 1) / parts
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := p*per, min(len(codes), (p+1)*per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = l.Dequantize(name, buf[lo*size:hi*size], out, codes[lo:hi], e0+int64(lo), scales)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
