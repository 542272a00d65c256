//go:build !linux

package exec

// bigAlloc returns n bytes for a large buffer.
func bigAlloc(n int) []byte { return make([]byte, n) }

// bigFree releases a buffer of bigAlloc (to the garbage collector).
func bigFree(b []byte) {}
