// Package rxring holds the guest tests of the RX side of memory-mapped
// netlink (issue 4, patches 01-06): ring set-up and its errors, mmap and
// the mapping count (across fork), delivery through COPY frames for
// subsystems that do not build their messages in the ring, delivery in
// VALID frames for those that do (acknowledgements), SKIP frames, empty
// VALID frames for claims the kernel gave up, overrun, poll() (POLLIN and
// dumps continued from it), dumps larger than the ring through the
// library's reader, and NETLINK_SOCK_DIAG.
//
// The tests talk to the kernel directly where the kernel is what is under
// test (raw setsockopt, mmap and frame views), and through package ring
// where the library's reader is part of the claim. Every test needs the
// series: on a kernel without it they skip, naming ENOPROTOOPT.
package rxring
