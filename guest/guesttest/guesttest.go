package guesttest

import (
	"os"
	"strconv"
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

// SeriesPatchesEnv names the variable through which the host tells the
// guest tests that the kernel is a prefix of the series: the number of
// patches applied (make check-bisect and make bisect set it). Unset for
// the whole series and for the unpatched baseline.
const SeriesPatchesEnv = "NLMMAP_SERIES_PATCHES"

// SeriesPatches is the number of patches of the series the kernel was
// built with when it is a prefix build, and ok is false otherwise.
func SeriesPatches() (n int, ok bool) {
	n, err := strconv.Atoi(os.Getenv(SeriesPatchesEnv))
	return n, err == nil
}

// NeedsPatch skips t on a prefix build of the series without patch n:
// the test relies on what that patch adds. It declares, next to the
// test, the first patch from which the test applies; on the whole series,
// on the baseline (where the ring tests skip with ENOPROTOOPT on their
// own) and outside prefix builds it does nothing.
func NeedsPatch(t testing.TB, n int) {
	t.Helper()
	if have, ok := SeriesPatches(); ok && have < n {
		t.Skipf("needs patch %02d of the series; this kernel is a prefix build with patches 01-%02d", n, have)
	}
}
