// Package bisect checks the series patch by patch: Check builds every
// prefix of the series (kernel.BuildPrefixes) with CONFIG_NETLINK_MMAP=y and
// =n and boots each with the guest tests (package vmtests/suite); Bisect
// finds the first patch at which a guest test starts failing, with a binary
// search over the prefixes that reuses the prefix builds' object
// directories (kernel.BuildPrefix).
//
//	steps, err := bisect.Check(ctx, bisect.Options{Initramfs: "out/initramfs.cpio", Out: "out/bisect"}, bisect.CheckSets)
//	res, err := bisect.Bisect(ctx, bisect.Options{Initramfs: "out/initramfs.cpio", Out: "out/bisect", Run: "TestOverrun"}, bisect.Debug)
//
// Which guest tests apply to a prefix is declared by the tests themselves:
// the host passes NLMMAP_SERIES_PATCHES=<n> to the guest, and a test that
// needs patch k calls guesttest.NeedsPatch(t, k) and skips on a shorter
// prefix. Tests that need rings also skip where the kernel answers
// ENOPROTOOPT (before patch 02, and with CONFIG_NETLINK_MMAP=n), so every
// prefix must pass what runs, and with CONFIG_NETLINK_MMAP=n the ring test
// packages must skip entirely.
//
// A prefix's kernel, its runs and their outcomes stay in Out/<set>/<NN>/,
// each a run directory that make repro can bundle.
package bisect
