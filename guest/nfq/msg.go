package nfq

import (
	"encoding/binary"
	"fmt"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"golang.org/x/sys/unix"
)

// Constants of include/uapi/linux/netfilter/nfnetlink.h,
// nfnetlink_queue.h and nfnetlink_log.h, byte for byte.
const (
	nfnlSubsysQueue = 3 // NFNL_SUBSYS_QUEUE
	nfnlSubsysULOG  = 4 // NFNL_SUBSYS_ULOG
	nfnetlinkV0     = 0 // NFNETLINK_V0
	nfgenmsgLen     = 4 // sizeof(struct nfgenmsg)

	// enum nfqnl_msg_types
	nfqnlMsgPacket       = 0
	nfqnlMsgVerdict      = 1
	nfqnlMsgConfig       = 2
	nfqnlMsgVerdictBatch = 3

	// enum nfqnl_attr_type
	nfqaPacketHdr      = 1
	nfqaVerdictHdr     = 2
	nfqaMark           = 3
	nfqaIfindexIndev   = 5
	nfqaIfindexOutdev  = 6
	nfqaPayload        = 10
	nfqaCapLen         = 13
	nfqaSkbInfo        = 14
	nfqaPacketHdrLen   = 7 // sizeof(struct nfqnl_msg_packet_hdr), packed
	nfqaVerdictHdrSize = 8 // sizeof(struct nfqnl_msg_verdict_hdr)

	// enum nfqnl_msg_config_cmds
	nfqnlCfgCmdBind   = 1
	nfqnlCfgCmdUnbind = 2

	// enum nfqnl_attr_config
	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxlen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	// enum nfqnl_config_mode
	nfqnlCopyPacket = 2

	// enum nfulnl_msg_types
	nfulnlMsgPacket = 0
	nfulnlMsgConfig = 1

	// enum nfulnl_attr_type
	nfulaPacketHdr     = 1
	nfulaMark          = 2
	nfulaIfindexIndev  = 4
	nfulaIfindexOutdev = 5
	nfulaPayload       = 9
	nfulaPrefix        = 10
	nfulaSeq           = 12
	nfulaPacketHdrLen  = 4 // sizeof(struct nfulnl_msg_packet_hdr)

	// enum nfulnl_msg_config_cmds
	nfulnlCfgCmdBind   = 1
	nfulnlCfgCmdUnbind = 2

	// enum nfulnl_attr_config
	nfulaCfgCmd      = 1
	nfulaCfgMode     = 2
	nfulaCfgNlbufsiz = 3
	nfulaCfgTimeout  = 4
	nfulaCfgQthresh  = 5
	nfulaCfgFlags    = 6

	// NFULNL_COPY_PACKET
	nfulnlCopyPacket = 2
	// NFULNL_CFG_F_SEQ
	nfulnlCfgFSeq = 1
)

// msgType is the nlmsg_type of a message of an nfnetlink subsystem.
func msgType(subsys, msg uint16) uint16 { return subsys<<8 | msg }

// appendNfgen appends struct nfgenmsg: family, version, resource id in
// network order.
func appendNfgen(b []byte, family uint8, resID uint16) []byte {
	b = append(b, family, nfnetlinkV0)
	return binary.BigEndian.AppendUint16(b, resID)
}

func appendBE32(b []byte, typ uint16, v uint32) []byte {
	return nlmsg.AppendAttr(b, typ, binary.BigEndian.AppendUint32(nil, v))
}

// A Verdict is what a listener decides about a queued packet: NF_DROP,
// NF_ACCEPT and the others of include/uapi/linux/netfilter.h.
type Verdict uint32

// Verdicts.
const (
	Drop   Verdict = 0 // NF_DROP
	Accept Verdict = 1 // NF_ACCEPT
	Repeat Verdict = 4 // NF_REPEAT
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "drop"
	case Accept:
		return "accept"
	case Repeat:
		return "repeat"
	}
	return fmt.Sprintf("verdict(%d)", uint32(v))
}

// appendVerdict appends an NFQNL_MSG_VERDICT (or, with batch, an
// NFQNL_MSG_VERDICT_BATCH: every packet with an id up to id) message.
func appendVerdict(b []byte, queue uint16, id uint32, v Verdict, batch bool) []byte {
	typ := uint16(nfqnlMsgVerdict)
	if batch {
		typ = nfqnlMsgVerdictBatch
	}
	data := appendNfgen(make([]byte, 0, nfgenmsgLen+4+nfqaVerdictHdrSize), unix.AF_UNSPEC, queue)
	hdr := binary.BigEndian.AppendUint32(nil, uint32(v))
	hdr = binary.BigEndian.AppendUint32(hdr, id)
	data = nlmsg.AppendAttr(data, nfqaVerdictHdr, hdr)
	return nlmsg.Message{
		Header: nlmsg.Header{Type: msgType(nfnlSubsysQueue, typ), Flags: unix.NLM_F_REQUEST},
		Data:   data,
	}.Append(b)
}

// queueConfig is what an NFQNL_MSG_CONFIG message sets.
type queueConfig struct {
	cmd       uint8 // NFQNL_CFG_CMD_*, 0 for none
	params    bool  // send NFQA_CFG_PARAMS with copyRange, copy mode packet
	copyRange uint32
	maxLen    uint32 // NFQA_CFG_QUEUE_MAXLEN, 0 for none
	mask      uint32 // NFQA_CFG_MASK and NFQA_CFG_FLAGS, if mask is not 0
	flags     uint32
}

func appendQueueConfig(b []byte, queue uint16, seq uint32, c queueConfig) []byte {
	data := appendNfgen(nil, unix.AF_UNSPEC, queue)
	if c.cmd != 0 {
		// struct nfqnl_msg_config_cmd: command, pad, pf (unused by BIND).
		data = nlmsg.AppendAttr(data, nfqaCfgCmd, []byte{c.cmd, 0, 0, 0})
	}
	if c.params {
		// struct nfqnl_msg_config_params, packed: copy_range, copy_mode.
		p := binary.BigEndian.AppendUint32(nil, c.copyRange)
		data = nlmsg.AppendAttr(data, nfqaCfgParams, append(p, nfqnlCopyPacket))
	}
	if c.maxLen != 0 {
		data = appendBE32(data, nfqaCfgQueueMaxlen, c.maxLen)
	}
	if c.mask != 0 {
		data = appendBE32(data, nfqaCfgMask, c.mask)
		data = appendBE32(data, nfqaCfgFlags, c.flags)
	}
	return nlmsg.Message{
		Header: nlmsg.Header{Type: msgType(nfnlSubsysQueue, nfqnlMsgConfig),
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: seq},
		Data: data,
	}.Append(b)
}

// logConfig is what an NFULNL_MSG_CONFIG message sets.
type logConfig struct {
	cmd       uint8 // NFULNL_CFG_CMD_*, 0 for none
	mode      bool  // send NFULA_CFG_MODE with copyRange, copy mode packet
	copyRange uint32
	timeout   uint32 // NFULA_CFG_TIMEOUT in 1/100 s, if setTimeout
	qthresh   uint32 // NFULA_CFG_QTHRESH, 0 for none
	bufSize   uint32 // NFULA_CFG_NLBUFSIZ, 0 for none
	flags     uint16 // NFULA_CFG_FLAGS, if setFlags

	setTimeout, setFlags bool
}

func appendLogConfig(b []byte, group uint16, seq uint32, c logConfig) []byte {
	data := appendNfgen(nil, unix.AF_UNSPEC, group)
	if c.cmd != 0 {
		// struct nfulnl_msg_config_cmd, packed: command.
		data = nlmsg.AppendAttr(data, nfulaCfgCmd, []byte{c.cmd})
	}
	if c.mode {
		// struct nfulnl_msg_config_mode, packed: copy_range, copy_mode, pad.
		m := binary.BigEndian.AppendUint32(nil, c.copyRange)
		data = nlmsg.AppendAttr(data, nfulaCfgMode, append(m, nfulnlCopyPacket, 0))
	}
	if c.setTimeout {
		data = appendBE32(data, nfulaCfgTimeout, c.timeout)
	}
	if c.qthresh != 0 {
		data = appendBE32(data, nfulaCfgQthresh, c.qthresh)
	}
	if c.bufSize != 0 {
		data = appendBE32(data, nfulaCfgNlbufsiz, c.bufSize)
	}
	if c.setFlags {
		data = nlmsg.AppendAttr(data, nfulaCfgFlags, binary.BigEndian.AppendUint16(nil, c.flags))
	}
	return nlmsg.Message{
		Header: nlmsg.Header{Type: msgType(nfnlSubsysULOG, nfulnlMsgConfig),
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: seq},
		Data: data,
	}.Append(b)
}

// A Packet is a packet queued to user space (NFQNL_MSG_PACKET).
type Packet struct {
	Queue   uint16 // queue number (res_id)
	ID      uint32 // packet id, for the verdict
	HWProto uint16 // hardware protocol (ETH_P_IP, ...)
	Hook    uint8  // netfilter hook (NF_INET_LOCAL_OUT, ...)
	Mark    uint32
	InDev   uint32 // input interface index, 0 if none
	OutDev  uint32 // output interface index, 0 if none
	// CapLen is the length of the packet if Payload holds less of it (the
	// copy range cut it short), else 0.
	CapLen uint32
	// SkbInfo is NFQA_SKB_INFO (NFQA_SKB_CSUMNOTREADY, ...).
	SkbInfo uint32
	// Payload is the packet from its network header on, as far as the copy
	// range allows. It aliases the datagram.
	Payload []byte
	// Copied reports that the message came through the receive queue, not
	// in an RX frame.
	Copied bool
}

// parsePacket decodes an NFQNL_MSG_PACKET message.
func parsePacket(m nlmsg.Message) (Packet, error) {
	var p Packet
	var attrs []nlmsg.Attr
	var err error
	p.Queue, attrs, err = nfgenAttrs(m, msgType(nfnlSubsysQueue, nfqnlMsgPacket), "NFQNL_MSG_PACKET")
	if err != nil {
		return p, err
	}
	var hdr bool
	for _, a := range attrs {
		switch a.Type {
		case nfqaPacketHdr:
			if len(a.Data) < nfqaPacketHdrLen {
				return p, fmt.Errorf("NFQA_PACKET_HDR of %d bytes: %w", len(a.Data), nlmsg.ErrMalformed)
			}
			p.ID = binary.BigEndian.Uint32(a.Data)
			p.HWProto = binary.BigEndian.Uint16(a.Data[4:])
			p.Hook = a.Data[6]
			hdr = true
		case nfqaMark:
			p.Mark, err = be32(a, "NFQA_MARK")
		case nfqaIfindexIndev:
			p.InDev, err = be32(a, "NFQA_IFINDEX_INDEV")
		case nfqaIfindexOutdev:
			p.OutDev, err = be32(a, "NFQA_IFINDEX_OUTDEV")
		case nfqaCapLen:
			p.CapLen, err = be32(a, "NFQA_CAP_LEN")
		case nfqaSkbInfo:
			p.SkbInfo, err = be32(a, "NFQA_SKB_INFO")
		case nfqaPayload:
			p.Payload = a.Data
		}
		if err != nil {
			return p, err
		}
	}
	if !hdr {
		return p, fmt.Errorf("NFQNL_MSG_PACKET without NFQA_PACKET_HDR: %w", nlmsg.ErrMalformed)
	}
	return p, nil
}

// A LogPacket is a logged packet (NFULNL_MSG_PACKET).
type LogPacket struct {
	Group   uint16 // log group (res_id)
	HWProto uint16
	Hook    uint8
	Prefix  string // NFULA_PREFIX without its NUL
	Mark    uint32
	InDev   uint32
	OutDev  uint32
	Seq     uint32 // instance sequence number, with Log's Seq option
	HasSeq  bool
	// Payload is the packet from its network header on, as far as the copy
	// range allows. It aliases the datagram.
	Payload []byte
}

// parseLogPacket decodes an NFULNL_MSG_PACKET message.
func parseLogPacket(m nlmsg.Message) (LogPacket, error) {
	var p LogPacket
	var attrs []nlmsg.Attr
	var err error
	p.Group, attrs, err = nfgenAttrs(m, msgType(nfnlSubsysULOG, nfulnlMsgPacket), "NFULNL_MSG_PACKET")
	if err != nil {
		return p, err
	}
	var hdr bool
	for _, a := range attrs {
		switch a.Type {
		case nfulaPacketHdr:
			if len(a.Data) < nfulaPacketHdrLen {
				return p, fmt.Errorf("NFULA_PACKET_HDR of %d bytes: %w", len(a.Data), nlmsg.ErrMalformed)
			}
			p.HWProto = binary.BigEndian.Uint16(a.Data)
			p.Hook = a.Data[2]
			hdr = true
		case nfulaPrefix:
			d := a.Data
			for len(d) > 0 && d[len(d)-1] == 0 {
				d = d[:len(d)-1]
			}
			p.Prefix = string(d)
		case nfulaMark:
			p.Mark, err = be32(a, "NFULA_MARK")
		case nfulaIfindexIndev:
			p.InDev, err = be32(a, "NFULA_IFINDEX_INDEV")
		case nfulaIfindexOutdev:
			p.OutDev, err = be32(a, "NFULA_IFINDEX_OUTDEV")
		case nfulaSeq:
			p.Seq, err = be32(a, "NFULA_SEQ")
			p.HasSeq = true
		case nfulaPayload:
			p.Payload = a.Data
		}
		if err != nil {
			return p, err
		}
	}
	if !hdr {
		return p, fmt.Errorf("NFULNL_MSG_PACKET without NFULA_PACKET_HDR: %w", nlmsg.ErrMalformed)
	}
	return p, nil
}

// nfgenAttrs checks that m is an nfnetlink message of type typ (named
// name in errors) and returns the res_id of its struct nfgenmsg (the
// queue number or log group) and its attributes.
func nfgenAttrs(m nlmsg.Message, typ uint16, name string) (uint16, []nlmsg.Attr, error) {
	if m.Type != typ {
		return 0, nil, fmt.Errorf("message type %#x is not %s: %w", m.Type, name, nlmsg.ErrMalformed)
	}
	if len(m.Data) < nfgenmsgLen {
		return 0, nil, fmt.Errorf("%s of %d bytes: %w", name, len(m.Data), nlmsg.ErrMalformed)
	}
	attrs, err := nlmsg.Attrs(m.Data[nfgenmsgLen:])
	return binary.BigEndian.Uint16(m.Data[2:]), attrs, err
}

func be32(a nlmsg.Attr, name string) (uint32, error) {
	if len(a.Data) < 4 {
		return 0, fmt.Errorf("%s of %d bytes: %w", name, len(a.Data), nlmsg.ErrMalformed)
	}
	return binary.BigEndian.Uint32(a.Data), nil
}
