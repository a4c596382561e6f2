package nfq

import (
	"fmt"
	"time"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"golang.org/x/sys/unix"
)

// LogConfig configures a Log.
type LogConfig struct {
	Group uint16 // the log group of the rules (nft "log group N")
	// CopyRange is how many bytes of each packet to copy (copy mode
	// NFULNL_COPY_PACKET); 0 means all of it, up to 65535 bytes.
	CopyRange uint32
	// FlushTimeout is how long the kernel keeps a batch that is not full
	// before it sends it, in steps of 10 ms; 0 leaves the kernel's
	// default (1 s).
	FlushTimeout time.Duration
	// QThreshold is the number of packets after which the kernel sends a
	// batch; 0 leaves the kernel's default (100).
	QThreshold uint32
	// BufSize is the size of the kernel's batch buffer (NFULA_CFG_NLBUFSIZ);
	// 0 leaves the default (a page). A batch built in an RX frame is
	// limited by the frame instead.
	BufSize uint32
	// Seq asks for instance sequence numbers (NFULNL_CFG_F_SEQ).
	Seq bool
}

// A Log is a listener of one nfnetlink_log group.
type Log struct {
	c     *Conn
	group uint16
}

// OpenLog binds the log group cfg.Group to c (NFULNL_CFG_CMD_BIND) and
// configures it. The Log does not own c.
//
// The kernel batches logged packets: a batch waits for the flush timeout
// or the queue threshold and, in an RX ring, holds its frame meanwhile, so
// that nothing behind it can be read. Use a short FlushTimeout where
// latency matters.
func OpenLog(c *Conn, cfg LogConfig) (*Log, error) {
	lc := logConfig{cmd: nfulnlCfgCmdBind, mode: true, copyRange: cfg.CopyRange,
		qthresh: cfg.QThreshold, bufSize: cfg.BufSize}
	if cfg.FlushTimeout > 0 {
		lc.setTimeout = true
		lc.timeout = uint32((cfg.FlushTimeout + 10*time.Millisecond - 1) / (10 * time.Millisecond))
	}
	if cfg.Seq {
		lc.setFlags, lc.flags = true, nfulnlCfgFSeq
	}
	err := c.request("bind log group", func(seq uint32) []byte {
		return appendLogConfig(nil, cfg.Group, seq, lc)
	})
	if err != nil {
		return nil, err
	}
	return &Log{c: c, group: cfg.Group}, nil
}

// Conn returns the connection of the Log.
func (l *Log) Conn() *Conn { return l.c }

// Close unbinds the group (NFULNL_CFG_CMD_UNBIND). The kernel sends the
// batch it holds first; the Conn keeps it, and ReadBatch still returns it
// after Close. Close does not close the Conn.
func (l *Log) Close() error {
	return l.c.request("unbind log group", func(seq uint32) []byte {
		return appendLogConfig(nil, l.group, seq, logConfig{cmd: nfulnlCfgCmdUnbind})
	})
}

// A Batch is one datagram of logged packets.
type Batch struct {
	Packets []LogPacket
	// Done reports that the batch ended with NLMSG_DONE, as the kernel
	// ends batches of more than one packet.
	Done bool
	// Copied reports that the batch came through the receive queue, not
	// in an RX frame.
	Copied bool
	// Len is the length of the datagram.
	Len int
}

// ReadBatch reads one datagram and calls fn with the logged packets in it.
// The packets' payloads must not be used after fn returns. A datagram
// without packets (an acknowledgement) is consumed without calling fn.
func (l *Log) ReadBatch(fn func(Batch) error) error {
	return l.c.Read(func(d Datagram) error {
		msgs, err := nlmsg.Parse(d.Data)
		if err != nil {
			return opError("parse", err)
		}
		b := Batch{Packets: make([]LogPacket, 0, len(msgs)), Copied: d.Copied, Len: len(d.Data)}
		for i, m := range msgs {
			switch m.Type {
			case unix.NLMSG_ERROR:
				if err := m.Err(); err != nil {
					return opError("receive", err)
				}
				continue
			case unix.NLMSG_DONE:
				if i != len(msgs)-1 {
					return opError("parse", fmt.Errorf("NLMSG_DONE is message %d of %d: %w", i+1, len(msgs), nlmsg.ErrMalformed))
				}
				b.Done = true
				continue
			}
			p, err := parseLogPacket(m)
			if err != nil {
				return opError("parse", err)
			}
			if p.Group != l.group {
				return opError("parse", fmt.Errorf("packet of group %d on the listener of group %d: %w",
					p.Group, l.group, nlmsg.ErrMalformed))
			}
			b.Packets = append(b.Packets, p)
		}
		if len(b.Packets) == 0 {
			return nil
		}
		return fn(b)
	})
}
