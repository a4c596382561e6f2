// Package nfq is a small listener library for nfnetlink_queue (packets
// queued to user space for a verdict) and nfnetlink_log (logged packets),
// built on the memory-mapped rings of package ring.
//
// With memory-mapped netlink, the kernel builds each queued packet, and
// each batch of logged packets, directly in a frame of the listener's RX
// ring; Queue and Log read them there without copying, and verdicts go out
// through the TX ring. On a kernel without rings (ring.Dial fails with
// ring.ErrNotSupported) Dial falls back to a plain socket and the same
// code runs unchanged through recvmsg and sendmsg, so that the two can be
// compared with the same listener. Options.NoRings forces the fallback.
//
// # Example
//
//	c, err := nfq.Dial(nfq.Options{})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	q, err := nfq.OpenQueue(c, nfq.QueueConfig{Num: 0})
//	if err != nil {
//		return err
//	}
//	defer q.Close()
//	for {
//		err := q.ReadPackets(func(p nfq.Packet) error {
//			v := nfq.Accept
//			if bad(p.Payload) { // p.Payload aliases the RX frame
//				v = nfq.Drop
//			}
//			return q.Verdict(p.ID, v)
//		})
//		if err != nil {
//			return err
//		}
//	}
//
// Packet ids increase in the order packets are read, so VerdictBatch(id)
// decides exactly the packets read so far up to id that are still waiting.
//
// # What it does not do
//
// It does not install the rules that queue or log packets (see the guest
// tests for nftables rules), parse packet headers, or handle conntrack,
// GSO, or the other optional attributes (NFQA_CT, NFQA_CFG_F_GSO, ...).
// Frames are released when the callback returns; a listener that wants
// to keep a packet without copying it uses package ring directly.
package nfq
