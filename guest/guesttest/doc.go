// Package guesttest holds helpers for guest tests: tests under guest/ that
// the harness compiles into the initramfs and runs inside the VM, one
// process per top-level test.
//
//	func TestRing(t *testing.T) {
//		guesttest.SkipIfNotInVM(t)
//		...
//	}
//
// On the host, "go test ./..." compiles guest tests and SkipIfNotInVM skips
// them, so they never touch the host's kernel.
package guesttest
