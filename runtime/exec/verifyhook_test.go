package exec

// SetVerifyMCAHook sets the function Verify calls with the intermediate
// MCA checkpoint before converting it back; nil removes it.
func SetVerifyMCAHook(f func(mcaDir string) error) { verifyMCAHook = f }
