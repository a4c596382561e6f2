package nfq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"golang.org/x/sys/unix"
)

// ne16/ne32 write host-order fields (netlink headers) of the expected
// bytes; be16/be32b network-order ones (nfnetlink payloads).
func ne16(v uint16) []byte  { return binary.NativeEndian.AppendUint16(nil, v) }
func ne32(v uint32) []byte  { return binary.NativeEndian.AppendUint32(nil, v) }
func be16(v uint16) []byte  { return binary.BigEndian.AppendUint16(nil, v) }
func be32b(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// nlhdr is a struct nlmsghdr.
func nlhdr(n int, typ, flags uint16, seq uint32) []byte {
	return cat(ne32(uint32(n)), ne16(typ), ne16(flags), ne32(seq), ne32(0))
}

func TestAppendVerdict(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch bool
		typ   uint16
	}{
		{"NFQNL_MSG_VERDICT", false, 0x0301},
		{"NFQNL_MSG_VERDICT_BATCH", true, 0x0303},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := appendVerdict(nil, 0x0102, 0xa0b0c0d0, Accept, tc.batch)
			want := cat(
				nlhdr(32, tc.typ, unix.NLM_F_REQUEST, 0),
				[]byte{unix.AF_UNSPEC, 0}, be16(0x0102), // nfgenmsg, res_id = queue
				ne16(12), ne16(nfqaVerdictHdr), // nlattr
				be32b(1), be32b(0xa0b0c0d0), // verdict NF_ACCEPT, id
			)
			if !bytes.Equal(got, want) {
				t.Errorf("got  %x\nwant %x", got, want)
			}
		})
	}
}

func TestAppendQueueConfig(t *testing.T) {
	got := appendQueueConfig(nil, 5, 77, queueConfig{cmd: nfqnlCfgCmdBind, params: true, copyRange: 0x1234, maxLen: 9})
	flags := uint16(unix.NLM_F_REQUEST | unix.NLM_F_ACK)
	want := cat(
		nlhdr(16+4+8+12+8, 0x0302, flags, 77),
		[]byte{unix.AF_UNSPEC, 0}, be16(5),
		ne16(8), ne16(nfqaCfgCmd), []byte{1, 0, 0, 0}, // BIND, pad, pf
		ne16(9), ne16(nfqaCfgParams), be32b(0x1234), []byte{2, 0, 0, 0}, // range, NFQNL_COPY_PACKET, padding
		ne16(8), ne16(nfqaCfgQueueMaxlen), be32b(9),
	)
	if !bytes.Equal(got, want) {
		t.Errorf("got  %x\nwant %x", got, want)
	}
}

func TestAppendLogConfig(t *testing.T) {
	got := appendLogConfig(nil, 7, 3, logConfig{cmd: nfulnlCfgCmdBind, mode: true, copyRange: 0xffff,
		setTimeout: true, timeout: 0, qthresh: 4, bufSize: 8192, setFlags: true, flags: nfulnlCfgFSeq})
	flags := uint16(unix.NLM_F_REQUEST | unix.NLM_F_ACK)
	want := cat(
		nlhdr(16+4+8+12+8+8+8+8, 0x0401, flags, 3),
		[]byte{unix.AF_UNSPEC, 0}, be16(7),
		ne16(5), ne16(nfulaCfgCmd), []byte{1, 0, 0, 0},
		ne16(10), ne16(nfulaCfgMode), be32b(0xffff), []byte{2, 0, 0, 0},
		ne16(8), ne16(nfulaCfgTimeout), be32b(0),
		ne16(8), ne16(nfulaCfgQthresh), be32b(4),
		ne16(8), ne16(nfulaCfgNlbufsiz), be32b(8192),
		ne16(6), ne16(nfulaCfgFlags), be16(1), []byte{0, 0},
	)
	if !bytes.Equal(got, want) {
		t.Errorf("got  %x\nwant %x", got, want)
	}
}

// packetMsg builds an NFQNL_MSG_PACKET as the kernel does: the payload
// attribute last and not padded.
func packetMsg(queue uint16, id uint32, payload []byte, extra ...[]byte) []byte {
	data := cat([]byte{unix.AF_INET, 0}, be16(queue))
	data = nlmsg.AppendAttr(data, nfqaPacketHdr, cat(be32b(id), be16(unix.ETH_P_IP), []byte{3}))
	for _, e := range extra {
		data = append(data, e...)
	}
	n := 4 + len(payload)
	data = cat(data, ne16(uint16(n)), ne16(nfqaPayload), payload)
	m := cat(nlhdr(16+len(data), 0x0300, 0, 0), data)
	return m
}

func TestParsePacket(t *testing.T) {
	payload := []byte("0123456789abc") // odd length: the message ends unpadded
	b := packetMsg(3, 42, payload,
		nlmsg.AppendAttr(nil, nfqaMark, be32b(0x55)),
		nlmsg.AppendAttr(nil, nfqaIfindexOutdev, be32b(1)),
		nlmsg.AppendAttr(nil, nfqaCapLen, be32b(1500)),
		nlmsg.AppendAttr(nil, 0x7f, []byte{1, 2, 3}), // unknown: ignored
	)
	msgs, err := nlmsg.Parse(b)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Parse: %d messages, %v", len(msgs), err)
	}
	p, err := parsePacket(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := Packet{Queue: 3, ID: 42, HWProto: unix.ETH_P_IP, Hook: 3, Mark: 0x55, OutDev: 1, CapLen: 1500, Payload: payload}
	if p.Queue != want.Queue || p.ID != want.ID || p.HWProto != want.HWProto || p.Hook != want.Hook ||
		p.Mark != want.Mark || p.OutDev != want.OutDev || p.CapLen != want.CapLen || !bytes.Equal(p.Payload, payload) {
		t.Errorf("got %+v\nwant %+v", p, want)
	}
}

func TestParsePacketMalformed(t *testing.T) {
	good := packetMsg(0, 1, []byte("x"))
	for _, tc := range []struct {
		name string
		m    nlmsg.Message
	}{
		{"wrong type", nlmsg.Message{Header: nlmsg.Header{Type: 0x0301}, Data: good[16:]}},
		{"no nfgenmsg", nlmsg.Message{Header: nlmsg.Header{Type: 0x0300}, Data: []byte{0, 0}}},
		{"no packet header", nlmsg.Message{Header: nlmsg.Header{Type: 0x0300},
			Data: cat([]byte{2, 0, 0, 0}, nlmsg.AppendAttr(nil, nfqaPayload, []byte("x")))}},
		{"short packet header", nlmsg.Message{Header: nlmsg.Header{Type: 0x0300},
			Data: cat([]byte{2, 0, 0, 0}, nlmsg.AppendAttr(nil, nfqaPacketHdr, []byte{0, 0, 0, 1}))}},
		{"short mark", nlmsg.Message{Header: nlmsg.Header{Type: 0x0300},
			Data: cat(good[16:16+16], nlmsg.AppendAttr(nil, nfqaMark, []byte{1}))}},
		{"truncated attribute", nlmsg.Message{Header: nlmsg.Header{Type: 0x0300}, Data: good[16 : len(good)-1]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parsePacket(tc.m); !errors.Is(err, nlmsg.ErrMalformed) {
				t.Errorf("parsePacket = %v, want ErrMalformed", err)
			}
		})
	}
}

// logMsg builds an NFULNL_MSG_PACKET.
func logMsg(group uint16, prefix string, payload []byte) []byte {
	data := cat([]byte{unix.AF_INET, 0}, be16(group))
	data = nlmsg.AppendAttr(data, nfulaPacketHdr, cat(be16(unix.ETH_P_IP), []byte{3, 0}))
	data = nlmsg.AppendString(data, nfulaPrefix, prefix)
	data = nlmsg.AppendAttr(data, nfulaSeq, be32b(9))
	data = nlmsg.AppendAttr(data, nfulaPayload, payload)
	return nlmsg.Message{Header: nlmsg.Header{Type: 0x0400, Flags: unix.NLM_F_MULTI}, Data: data}.Append(nil)
}

func TestParseLogPacket(t *testing.T) {
	msgs, err := nlmsg.Parse(logMsg(7, "pfx: ", []byte("abcde")))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseLogPacket(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.Group != 7 || p.Prefix != "pfx: " || p.Hook != 3 || p.HWProto != unix.ETH_P_IP ||
		!p.HasSeq || p.Seq != 9 || string(p.Payload) != "abcde" {
		t.Errorf("got %+v", p)
	}
	if _, err := parseLogPacket(nlmsg.Message{Header: nlmsg.Header{Type: 0x0400}, Data: []byte{2, 0, 0, 7}}); !errors.Is(err, nlmsg.ErrMalformed) {
		t.Errorf("packet without header: %v, want ErrMalformed", err)
	}
}
