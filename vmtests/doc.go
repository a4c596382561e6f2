// Package vmtests is the host side of the guest tests: TestGuest reports
// one run of the guest tests (package vmtests/suite) as host subtests
// TestGuest/<package>/<Test>[/<subtest>], so go test, gotestsum and JUnit
// see one case per guest test, plus TestGuest/console/boot and
// TestGuest/console/after-tests for kernel reports that belong to no test.
// A guest test that passed in Go fails here when the kernel reported
// something (a WARNING, a KASAN report, a leak...) while it ran.
//
//	make vmtest                  # nlmmap-vm boots and writes out/run/outcome.json, then gotestsum runs TestGuest on it
//	NLMMAP_OUTCOME=out/run/outcome.json go test ./vmtests -run TestGuest
//	NLMMAP_KERNEL=out/debug/bzImage NLMMAP_INITRAMFS=out/initramfs.cpio go test ./vmtests -run TestGuest
//
// Without NLMMAP_OUTCOME, NLMMAP_KERNEL and NLMMAP_INITRAMFS, TestGuest
// skips, so go test ./... works on any host.
package vmtests
