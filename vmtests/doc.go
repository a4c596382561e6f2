// Package vmtests is the host side of the guest tests: TestGuest boots the
// kernel and initramfs that make kernel and make initramfs built, runs every
// guest test in the VM, and turns each into a host subtest
// TestGuest/<package>/<Test>[/<subtest>], so go test, gotestsum and JUnit
// see one case per guest test.
//
//	NLMMAP_KERNEL=out/debug/bzImage NLMMAP_INITRAMFS=out/initramfs.cpio go test ./vmtests -run TestGuest
//
// Without NLMMAP_KERNEL and NLMMAP_INITRAMFS, TestGuest skips, so go test
// ./... works on any host. make vmtest sets them.
package vmtests
