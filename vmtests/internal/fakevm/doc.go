// Package fakevm lays out what a run of the guest tests needs — a kernel,
// its release file, an initramfs with its test manifest — and a shell
// script that stands in for QEMU, for host tests of the harness that must
// not boot anything.
//
// The script finds the 9p share on its command line, copies the recorded
// guest results there as the guest runner would, prints the recorded
// console and exits as if the guest had powered off; with FAKE_HANG=1 in
// its environment it then hangs instead, like a guest that stops
// answering.
package fakevm
