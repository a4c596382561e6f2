// Package taps holds guest tests of the places where the netlink core hands
// messages built in an RX ring to code other than the receiver: netlink taps
// (nlmon) and socket filters. Those must get ordinary copies, never the ring
// skb itself, which has no shared info; on the debug kernel a mistake shows
// up as a KASAN report.
//
// The tests need root and a kernel with the series (CONFIG_NETLINK_MMAP) and
// CONFIG_NLMON; they skip elsewhere.
package taps
