package langtest

import (
	"runtime"
	"time"
)

// PeakHeap runs f and returns the most heap memory in use
// (runtime.MemStats.HeapInuse) seen while it ran, sampled every 10 ms and
// once at the end: the figure behind the peak RSS of a command doing f.
// Benchmarks report it next to the time.
func PeakHeap(f func()) uint64 {
	var peak uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	f()
	close(done)
	<-stopped
	sample()
	return peak
}
