package nfq

import (
	"fmt"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"golang.org/x/sys/unix"
)

// QueueConfig configures a Queue.
type QueueConfig struct {
	Num uint16 // the queue number of the rules (nft "queue num N")
	// CopyRange is how many bytes of each packet to copy (copy mode
	// NFQNL_COPY_PACKET); 0 means all of it, up to 65535.
	CopyRange uint32
	// MaxLen, if not zero, is the number of packets the kernel keeps
	// waiting for a verdict before it drops (NFQA_CFG_QUEUE_MAXLEN).
	MaxLen uint32
	// VerdictsBySendmsg sends verdicts with sendmsg even if the Conn has a
	// TX ring.
	VerdictsBySendmsg bool
}

// A Queue is a listener of one nfnetlink_queue queue.
//
// ReadPackets may be called by one goroutine at a time; the verdict methods
// may be called from any goroutine, also while ReadPackets waits.
type Queue struct {
	c    *Conn
	num  uint16
	send func([]byte) error
	// bySendmsg: send is c.SendMsg although c may have a TX ring.
	bySendmsg bool
}

// OpenQueue binds the queue cfg.Num to c (NFQNL_CFG_CMD_BIND) and sets
// copy mode NFQNL_COPY_PACKET. The Queue does not own c.
func OpenQueue(c *Conn, cfg QueueConfig) (*Queue, error) {
	q := &Queue{c: c, num: cfg.Num, send: c.Send, bySendmsg: cfg.VerdictsBySendmsg}
	if cfg.VerdictsBySendmsg {
		q.send = c.SendMsg
	}
	err := c.request("bind queue", func(seq uint32) []byte {
		return appendQueueConfig(nil, cfg.Num, seq, queueConfig{
			cmd: nfqnlCfgCmdBind, params: true, copyRange: cfg.CopyRange, maxLen: cfg.MaxLen})
	})
	if err != nil {
		return nil, err
	}
	return q, nil
}

// Conn returns the connection of the Queue.
func (q *Queue) Conn() *Conn { return q.c }

// Close unbinds the queue (NFQNL_CFG_CMD_UNBIND); the kernel drops the
// packets still waiting for a verdict. It does not close the Conn.
func (q *Queue) Close() error {
	return q.c.request("unbind queue", func(seq uint32) []byte {
		return appendQueueConfig(nil, q.num, seq, queueConfig{cmd: nfqnlCfgCmdUnbind})
	})
}

// ReadPackets reads one datagram and calls fn for each queued packet in
// it, in order. The Packet's Payload must not be used after fn returns.
// An NLMSG_ERROR in the datagram (the kernel rejected a verdict) is
// returned as an *nlmsg.Error after the packets before it were passed to
// fn; messages of other types are an error.
func (q *Queue) ReadPackets(fn func(Packet) error) error {
	return q.c.Read(func(d Datagram) error {
		msgs, err := nlmsg.Parse(d.Data)
		if err != nil {
			return opError("parse", err)
		}
		for _, m := range msgs {
			switch {
			case m.Type == unix.NLMSG_ERROR:
				if err := m.Err(); err != nil {
					return opError("verdict", err)
				}
				continue // an ack someone asked for
			case m.Type == unix.NLMSG_DONE, m.Type == unix.NLMSG_NOOP:
				continue
			}
			p, err := parsePacket(m)
			if err != nil {
				return opError("parse", err)
			}
			if p.Queue != q.num {
				return opError("parse", fmt.Errorf("packet of queue %d on the listener of queue %d: %w",
					p.Queue, q.num, nlmsg.ErrMalformed))
			}
			p.Copied = d.Copied
			if err := fn(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// Verdict sets the verdict of the packet with the given id.
func (q *Queue) Verdict(id uint32, v Verdict) error {
	return opError("verdict", q.send(appendVerdict(nil, q.num, id, v, false)))
}

// VerdictBatch sets the verdict of every packet waiting in the queue whose
// id is id or lower (NFQNL_MSG_VERDICT_BATCH). Packet ids increase in the
// order the packets are read, so these are the packets read so far up to
// and including id that have no verdict yet.
func (q *Queue) VerdictBatch(id uint32, v Verdict) error {
	return opError("verdict", q.send(appendVerdict(nil, q.num, id, v, true)))
}

// A PacketVerdict is a verdict for one packet, for Verdicts.
type PacketVerdict struct {
	ID      uint32
	Verdict Verdict
}

// Verdicts sets several verdicts at once: through the TX ring, one frame
// each and one system call for all; by sendmsg, one datagram holding them
// all.
func (q *Queue) Verdicts(vs []PacketVerdict) error {
	if len(vs) == 0 {
		return nil
	}
	if q.c.MappedTX() && !q.bySendmsg {
		bs := make([][]byte, len(vs))
		for i, v := range vs {
			bs[i] = appendVerdict(nil, q.num, v.ID, v.Verdict, false)
		}
		return opError("verdict", q.c.SendBatch(bs))
	}
	var b []byte
	for _, v := range vs {
		b = appendVerdict(b, q.num, v.ID, v.Verdict, false)
	}
	return opError("verdict", q.send(b))
}
