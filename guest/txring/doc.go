// Package txring holds the guest tests of part 2 of the series: sending
// from the TX ring and the single-mapping rule that decides between
// processing a frame in place and copying it, hostile TX frames, dumps
// delivered through a small RX ring with poll()-driven continuation,
// poll() semantics, and the ring configuration and counters reported
// through NETLINK_SOCK_DIAG.
//
// The tests observe which TX path the kernel took through the counters of
// NETLINK_DIAG_RING_STATS, never through timing. A Go process always has
// several threads, so the kernel copies every frame it sends; the in-place
// path is exercised by a single-threaded child process that makes raw
// system calls only (see solo_test.go).
//
// The tests run in the VM only (guesttest.SkipIfNotInVM). On a kernel
// without memory-mapped netlink they skip, naming ENOPROTOOPT.
package txring
