package guesttest

import (
	"os"
	"testing"
)

// InVM reports whether the test runs in the harness's VM: the guest runner
// sets NLMMAP_IN_GUEST=1.
func InVM() bool { return os.Getenv("NLMMAP_IN_GUEST") == "1" }

// SkipIfNotInVM skips t unless it runs in the harness's VM.
func SkipIfNotInVM(t testing.TB) {
	t.Helper()
	if !InVM() {
		t.Skip("guest test: runs only in the VM (make vmtest); NLMMAP_IN_GUEST is not 1")
	}
}

// KernelRelease is the release string of the kernel the host built for
// this run (its make kernelrelease), or "" outside the VM.
func KernelRelease() string { return os.Getenv("NLMMAP_KERNEL_RELEASE") }
