package nldiag

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"unsafe"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// Show is ndiag_show: what a dump reports besides struct
// netlink_diag_msg (NDIAG_SHOW_* in include/uapi/linux/netlink_diag.h).
type Show uint32

const (
	ShowMeminfo Show = 0x1 // NETLINK_DIAG_MEMINFO
	ShowGroups  Show = 0x2 // NETLINK_DIAG_GROUPS
	ShowRingCfg Show = 0x4 // NETLINK_DIAG_RX_RING, _TX_RING, _RING_STATS
	ShowFlags   Show = 0x8 // NETLINK_DIAG_FLAGS

	ShowAll = ShowMeminfo | ShowGroups | ShowRingCfg | ShowFlags
)

// Attribute types of a netlink_diag_msg (NETLINK_DIAG_*).
const (
	AttrMeminfo   uint16 = 0 // u32[SK_MEMINFO_VARS]
	AttrGroups    uint16 = 1 // bitmap of unsigned longs
	AttrRXRing    uint16 = 2 // struct netlink_diag_ring
	AttrTXRing    uint16 = 3 // struct netlink_diag_ring
	AttrFlags     uint16 = 4 // u32, NDIAG_FLAG_*
	AttrRingStats uint16 = 5 // struct netlink_diag_ring_stats
	AttrPad       uint16 = 6 // empty; aligns AttrRingStats (nla_reserve_64bit)
)

// AttrName returns the NETLINK_DIAG_* name of an attribute type.
func AttrName(typ uint16) string {
	if int(typ) < len(attrNames) {
		return attrNames[typ]
	}
	return "NETLINK_DIAG_" + strconv.Itoa(int(typ))
}

var attrNames = [...]string{
	AttrMeminfo:   "NETLINK_DIAG_MEMINFO",
	AttrGroups:    "NETLINK_DIAG_GROUPS",
	AttrRXRing:    "NETLINK_DIAG_RX_RING",
	AttrTXRing:    "NETLINK_DIAG_TX_RING",
	AttrFlags:     "NETLINK_DIAG_FLAGS",
	AttrRingStats: "NETLINK_DIAG_RING_STATS",
	AttrPad:       "NETLINK_DIAG_PAD",
}

// Flags is the value of NETLINK_DIAG_FLAGS (NDIAG_FLAG_*).
type Flags uint32

const (
	FlagCBRunning      Flags = 0x01 // a dump is in progress
	FlagPktinfo        Flags = 0x02 // NETLINK_PKTINFO
	FlagBroadcastError Flags = 0x04 // NETLINK_BROADCAST_ERROR
	FlagNoENOBUFS      Flags = 0x08 // NETLINK_NO_ENOBUFS
	FlagListenAllNSID  Flags = 0x10 // NETLINK_LISTEN_ALL_NSID
	FlagCapAck         Flags = 0x20 // NETLINK_CAP_ACK
)

// AllProtocols is NDIAG_PROTO_ALL: Dump every netlink protocol.
const AllProtocols = 0xff

// Sizes of the structures, from include/uapi/linux/netlink_diag.h.
const (
	sizeofReq       = 20 // struct netlink_diag_req
	sizeofMsg       = 28 // struct netlink_diag_msg
	sizeofRing      = 16 // struct netlink_diag_ring
	sizeofRingStats = 24 // struct netlink_diag_ring_stats
	sizeofFlags     = 4
	sizeofMeminfo   = 4 * unix.SK_MEMINFO_VARS
	sizeofLong      = int(unsafe.Sizeof(uintptr(0))) // the groups bitmap's word
)

// RingStats is struct netlink_diag_ring_stats. Its ndrs_pad must be zero
// (Parse rejects anything else), so it has no field here.
type RingStats struct {
	TXFrames  uint64 // ndrs_tx_frames: TX frames copied and sent on
	TXInvalid uint64 // ndrs_tx_invalid: TX frames rejected as invalid
	Mapped    uint32 // ndrs_mapped: mappings of the rings
}

func (r *RingStats) String() string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{TXFrames:%d TXInvalid:%d Mapped:%d}", r.TXFrames, r.TXInvalid, r.Mapped)
}

// A Socket is one record of a dump: struct netlink_diag_msg and the
// attributes that came with it. What was not asked for (Show) or not
// reported is absent: nil, or zero for Flags (see Has).
type Socket struct {
	Type      uint8  // ndiag_type: SOCK_RAW or SOCK_DGRAM
	Protocol  uint8  // ndiag_protocol: NETLINK_ROUTE, ...
	State     uint8  // ndiag_state
	PortID    uint32 // ndiag_portid
	DstPortID uint32 // ndiag_dst_portid
	DstGroup  uint32 // ndiag_dst_group
	Inode     uint32 // ndiag_ino
	Cookie    uint64 // ndiag_cookie, [0] in the low half

	// Groups is NETLINK_DIAG_GROUPS, the multicast group bitmap in
	// unsigned longs of the machine (see Member).
	Groups []byte
	// Meminfo is NETLINK_DIAG_MEMINFO, indexed by unix.SK_MEMINFO_*.
	Meminfo []uint32
	// Flags is NETLINK_DIAG_FLAGS.
	Flags Flags
	// RX and TX are NETLINK_DIAG_RX_RING and NETLINK_DIAG_TX_RING, the
	// geometry of a configured ring.
	RX, TX *ring.Params
	// Stats is NETLINK_DIAG_RING_STATS, reported for a socket with a
	// ring or a mapping of one.
	Stats *RingStats

	// Attrs are the attribute types in the order they came, unknown
	// ones included.
	Attrs []uint16
}

// Has reports whether the record carried an attribute of type typ.
func (s Socket) Has(typ uint16) bool {
	for _, a := range s.Attrs {
		if a == typ {
			return true
		}
	}
	return false
}

// Drops returns SK_MEMINFO_DROPS, 0 without NETLINK_DIAG_MEMINFO.
func (s Socket) Drops() uint32 {
	if len(s.Meminfo) <= unix.SK_MEMINFO_DROPS {
		return 0
	}
	return s.Meminfo[unix.SK_MEMINFO_DROPS]
}

// Member reports whether the Groups bitmap has multicast group group
// (1-based, as in NETLINK_ADD_MEMBERSHIP).
func (s Socket) Member(group uint32) bool {
	if group == 0 {
		return false
	}
	bit := int(group - 1)
	bits := 8 * sizeofLong
	w := bit / bits * sizeofLong
	if w+sizeofLong > len(s.Groups) {
		return false
	}
	var word uint64
	if sizeofLong == 8 {
		word = binary.NativeEndian.Uint64(s.Groups[w:])
	} else {
		word = uint64(binary.NativeEndian.Uint32(s.Groups[w:]))
	}
	return word&(1<<(bit%bits)) != 0
}

// Parse parses the payload of one SOCK_DIAG_BY_FAMILY answer: a struct
// netlink_diag_msg and its attributes. The slices of the result do not
// alias b. Errors wrap nlmsg.ErrMalformed.
func Parse(b []byte) (Socket, error) {
	if len(b) < sizeofMsg {
		return Socket{}, fmt.Errorf("netlink_diag_msg of %d bytes, want %d: %w", len(b), sizeofMsg, nlmsg.ErrMalformed)
	}
	s := Socket{
		Type:      b[1],
		Protocol:  b[2],
		State:     b[3],
		PortID:    binary.NativeEndian.Uint32(b[4:]),
		DstPortID: binary.NativeEndian.Uint32(b[8:]),
		DstGroup:  binary.NativeEndian.Uint32(b[12:]),
		Inode:     binary.NativeEndian.Uint32(b[16:]),
		Cookie:    uint64(binary.NativeEndian.Uint32(b[20:])) | uint64(binary.NativeEndian.Uint32(b[24:]))<<32,
	}
	if b[0] != unix.AF_NETLINK {
		return s, fmt.Errorf("inode %d: ndiag_family %d, want AF_NETLINK: %w", s.Inode, b[0], nlmsg.ErrMalformed)
	}
	attrs, err := nlmsg.Attrs(b[nlmsg.Align(sizeofMsg):])
	if err != nil {
		return s, fmt.Errorf("inode %d: %w", s.Inode, err)
	}
	for i, a := range attrs {
		s.Attrs = append(s.Attrs, a.Type)
		if err := s.parseAttr(a, attrs[i+1:]); err != nil {
			return s, fmt.Errorf("inode %d: %s: %w", s.Inode, AttrName(a.Type), err)
		}
	}
	return s, nil
}

// parseAttr fills s from one attribute; rest are the attributes after it.
func (s *Socket) parseAttr(a nlmsg.Attr, rest []nlmsg.Attr) error {
	if a.Type <= AttrPad && s.seen(a.Type) {
		return fmt.Errorf("given twice: %w", nlmsg.ErrMalformed)
	}
	size := func(want int) error {
		if len(a.Data) != want {
			return fmt.Errorf("%d bytes, want %d: %w", len(a.Data), want, nlmsg.ErrMalformed)
		}
		return nil
	}
	switch a.Type {
	case AttrMeminfo:
		// The kernel sends SK_MEMINFO_VARS words; a later one may send
		// more.
		if len(a.Data) < sizeofMeminfo || len(a.Data)%4 != 0 {
			return fmt.Errorf("%d bytes, want %d or more u32: %w", len(a.Data), sizeofMeminfo, nlmsg.ErrMalformed)
		}
		s.Meminfo = make([]uint32, len(a.Data)/4)
		for i := range s.Meminfo {
			s.Meminfo[i] = binary.NativeEndian.Uint32(a.Data[4*i:])
		}
	case AttrGroups:
		if len(a.Data)%sizeofLong != 0 {
			return fmt.Errorf("%d bytes, not whole unsigned longs: %w", len(a.Data), nlmsg.ErrMalformed)
		}
		s.Groups = append([]byte{}, a.Data...)
	case AttrRXRing, AttrTXRing:
		if err := size(sizeofRing); err != nil {
			return err
		}
		p := &ring.Params{
			BlockSize: binary.NativeEndian.Uint32(a.Data),
			BlockNr:   binary.NativeEndian.Uint32(a.Data[4:]),
			FrameSize: binary.NativeEndian.Uint32(a.Data[8:]),
			FrameNr:   binary.NativeEndian.Uint32(a.Data[12:]),
		}
		if a.Type == AttrRXRing {
			s.RX = p
		} else {
			s.TX = p
		}
	case AttrFlags:
		if err := size(sizeofFlags); err != nil {
			return err
		}
		s.Flags = Flags(binary.NativeEndian.Uint32(a.Data))
	case AttrRingStats:
		if err := size(sizeofRingStats); err != nil {
			return err
		}
		if pad := binary.NativeEndian.Uint32(a.Data[20:]); pad != 0 {
			return fmt.Errorf("ndrs_pad %#x, want 0: %w", pad, nlmsg.ErrMalformed)
		}
		s.Stats = &RingStats{
			TXFrames:  binary.NativeEndian.Uint64(a.Data),
			TXInvalid: binary.NativeEndian.Uint64(a.Data[8:]),
			Mapped:    binary.NativeEndian.Uint32(a.Data[16:]),
		}
	case AttrPad:
		// nla_reserve_64bit() puts an empty one right before the
		// attribute it aligns, where the architecture needs it (not on
		// x86), and RING_STATS is the only such attribute.
		if err := size(0); err != nil {
			return err
		}
		if len(rest) == 0 || rest[0].Type != AttrRingStats {
			return fmt.Errorf("not followed by %s: %w", AttrName(AttrRingStats), nlmsg.ErrMalformed)
		}
	}
	return nil
}

// seen reports whether Attrs has typ before its last element (the
// attribute being parsed).
func (s *Socket) seen(typ uint16) bool {
	for _, t := range s.Attrs[:len(s.Attrs)-1] {
		if t == typ {
			return true
		}
	}
	return false
}
