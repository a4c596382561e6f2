// Package ring reads and writes netlink messages through memory-mapped
// RX and TX rings (NETLINK_RX_RING, NETLINK_TX_RING): the kernel puts
// messages straight into frames user space has mapped, and takes messages
// from frames user space wrote, without a copy through recvmsg/sendmsg.
//
// It needs a kernel with memory-mapped netlink (CONFIG_NETLINK_MMAP) and
// CAP_NET_ADMIN. On a kernel without it, Dial and New return an error
// wrapping ErrNotSupported.
//
// # Example
//
//	rx, _ := ring.ParamsFor(4096, 64) // 64 frames of 4 KiB
//	c, err := ring.Dial(unix.NETLINK_ROUTE, ring.Config{RX: rx, TX: rx})
//	if errors.Is(err, ring.ErrNotSupported) {
//		// fall back to plain netlink
//	}
//	defer c.Close()
//
//	if err := c.Send(request); err != nil { // through the TX ring
//		return err
//	}
//	for {
//		rec, err := c.Receive() // a copy; the frame goes back at once
//		if err != nil {
//			return err
//		}
//		handle(rec.Data) // one or more netlink messages
//	}
//
// Next is the zero-copy reader: its Frame aliases the ring until Release,
// and Hold keeps a frame (the kernel skips it) while the reader moves on.
// Enqueue, Reserve/Commit and Flush batch TX frames into one system call.
//
// # Ordering and what user space promises
//
// The reader returns datagrams in the order the kernel published them,
// including those that arrive as COPY frames and are read with recvmsg.
// Every status word is read and written with sync/atomic next to a comment
// naming the kernel access it pairs with. The one subtle rule, releasing a
// held frame without letting the kernel leave a free frame behind the
// reader, is explained at the top of rx.go. The reader assumes that it is
// the only consumer of its ring, and that the kernel serializes deliveries
// into one ring.
//
// A frame the kernel claimed and then did not use comes back VALID with
// nm_len 0; the reader steps over it and gives it back, so Receive and
// Next never return an empty datagram. SKIP is only ever written by this
// package (Hold).
//
// # Dumps
//
// The kernel continues a dump that ran out of free frames only when the
// socket is polled, or read with recvmsg while its receive queue is
// empty. The Go runtime's network poller waits with edge-triggered epoll,
// which does neither, so before a reader sleeps it calls poll(fd, POLLIN,
// 0) once itself, and while a reader sleeps Frame.Release does the same
// after giving a frame back. Code that waits on the descriptor itself
// (SyscallConn) must use poll, select or level-triggered epoll.
//
// # What it does not do
//
// It does not parse netlink messages (see package nlmsg next to it), join
// the rings of several sockets, or poll several Conns at once. A Conn owns
// its socket: do not read from it with recvmsg behind the Conn's back, and
// do not set NETLINK_NO_ENOBUFS on it while holding frames (the reader
// learns of some kernel states only through the ENOBUFS it reports).
// There is no per-message context; use SetReadDeadline.
//
// The package runs on Linux only. Its host tests run the ring logic and
// the Conn against a simulated kernel; tests against a real kernel with
// the feature live with the guest tests.
package ring
