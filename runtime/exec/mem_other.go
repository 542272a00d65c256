//go:build !linux

package exec

func virtualRegion(n int64) ([]byte, func(), error) { return make([]byte, n), func() {}, nil }

func dropPages(b []byte) {}

func dropRange(start, end uintptr) {}

func addrRange(b []byte) (uintptr, uintptr) { return 0, 0 }

type arena struct{}

func (a *arena) alloc(n int) []byte { return make([]byte, n) }
func (a *arena) reset()             {}
func (a *arena) free()              {}
