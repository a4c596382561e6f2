// Package txring holds the guest tests of part 2 of the series: sending
// from the TX ring, hostile TX frames, dumps delivered through a small RX
// ring with poll()-driven continuation, poll() semantics, and the ring
// configuration and counters reported through NETLINK_SOCK_DIAG.
//
// The kernel copies every TX frame into an ordinary skb before it looks
// at the message; there is no in-place path. The tests check that through
// the counters of NETLINK_DIAG_RING_STATS (frames sent, frames rejected),
// never through timing, under every condition an in-place path could be
// tied to, including the strictest: a single-threaded child process that
// makes raw system calls only and maps its rings once (see solo_test.go).
// With such a child waiting inside sendto, they also show that the
// message delivered is the copy taken when the kernel took the frame.
//
// The tests run in the VM only (guesttest.SkipIfNotInVM). On a kernel
// without memory-mapped netlink they skip, naming ENOPROTOOPT.
package txring
