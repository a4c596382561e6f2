package nldiag

import (
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// Records captured from the y kernel (x86_64) with ShowAll, split into the
// header and its attributes: a NETLINK_ROUTE socket with an RX and a TX
// ring mapped once, in groups 1 and 7, with NETLINK_NO_ENOBUFS; and a
// plain bound one.
const (
	// AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, state 7, port 41, inode 25, cookie 2.
	ringHdr     = "10030007" + "29000000" + "00000000" + "00000000" + "19000000" + "02000000" + "00000000"
	ringGroups  = "0c000100" + "4100000000000000"
	ringMeminfo = "28000000" + "00000000" + "00400300" + "00000000" + "00400300" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000"
	ringFlags = "08000400" + "08000000"
	ringRX    = "14000200" + "00200000" + "02000000" + "00080000" + "08000000"
	ringTX    = "14000300" + "00100000" + "01000000" + "00040000" + "04000000"
	ringStats = "1c000500" + "0000000000000000" + "0000000000000000" + "01000000" + "00000000"

	// The same with port 0x9aaafb3e (autobound), inode 1633, cookie 3.
	plainHdr     = "10030007" + "3efbaa9a" + "00000000" + "00000000" + "61060000" + "03000000" + "00000000"
	plainMeminfo = "28000000" + "00000000" + "00400300" + "00000000" + "00400300" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000"
	plainFlags = "08000400" + "00000000"

	// NETLINK_DIAG_PAD as nla_reserve_64bit() puts it where the
	// architecture wants 64-bit alignment.
	pad = "04000600"
)

func unhex(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	rx := &ring.Params{BlockSize: 8192, BlockNr: 2, FrameSize: 2048, FrameNr: 8}
	tx := &ring.Params{BlockSize: 4096, BlockNr: 1, FrameSize: 1024, FrameNr: 4}
	meminfo := []uint32{0, 212992, 0, 212992, 0, 0, 0, 0, 0}
	ringSock := Socket{Type: unix.SOCK_RAW, Protocol: unix.NETLINK_ROUTE, State: 7, PortID: 41, Inode: 25, Cookie: 2}

	tests := []struct {
		name  string
		parts []string
		want  Socket
	}{
		{
			name:  "RingSocket",
			parts: []string{ringHdr, ringGroups, ringMeminfo, ringFlags, ringRX, ringTX, ringStats},
			want: func() Socket {
				s := ringSock
				s.Groups = []byte{0x41, 0, 0, 0, 0, 0, 0, 0}
				s.Meminfo, s.Flags, s.RX, s.TX = meminfo, FlagNoENOBUFS, rx, tx
				s.Stats = &RingStats{Mapped: 1}
				s.Attrs = []uint16{AttrGroups, AttrMeminfo, AttrFlags, AttrRXRing, AttrTXRing, AttrRingStats}
				return s
			}(),
		},
		{
			name:  "PadBeforeStats",
			parts: []string{ringHdr, ringRX, pad, ringStats},
			want: func() Socket {
				s := ringSock
				s.RX, s.Stats = rx, &RingStats{Mapped: 1}
				s.Attrs = []uint16{AttrRXRing, AttrPad, AttrRingStats}
				return s
			}(),
		},
		{
			name:  "StatsWithoutPad",
			parts: []string{ringHdr, ringTX, "1c000500" + "0300000000000000" + "0200000000000000" + "02000000" + "00000000"},
			want: func() Socket {
				s := ringSock
				s.TX, s.Stats = tx, &RingStats{TXFrames: 3, TXInvalid: 2, Mapped: 2}
				s.Attrs = []uint16{AttrTXRing, AttrRingStats}
				return s
			}(),
		},
		{
			name:  "PlainSocket",
			parts: []string{plainHdr, plainMeminfo, plainFlags},
			want: Socket{Type: unix.SOCK_RAW, Protocol: unix.NETLINK_ROUTE, State: 7, PortID: 0x9aaafb3e,
				Inode: 1633, Cookie: 3, Meminfo: meminfo, Attrs: []uint16{AttrMeminfo, AttrFlags}},
		},
		{
			name:  "NoAttributes",
			parts: []string{plainHdr},
			want:  Socket{Type: unix.SOCK_RAW, Protocol: unix.NETLINK_ROUTE, State: 7, PortID: 0x9aaafb3e, Inode: 1633, Cookie: 3},
		},
		{
			// Unknown types are listed in Attrs and otherwise ignored,
			// also with NLA_F_NESTED set and with a PAD-like body.
			name:  "UnknownAttributes",
			parts: []string{plainHdr, "0800070001020304", plainFlags, "0400ff80", "05000900aa000000"},
			want: Socket{Type: unix.SOCK_RAW, Protocol: unix.NETLINK_ROUTE, State: 7, PortID: 0x9aaafb3e,
				Inode: 1633, Cookie: 3, Attrs: []uint16{7, AttrFlags, 0xff, 9}},
		},
		{
			name:  "LongerMeminfo",
			parts: []string{plainHdr, "30000000" + strings.Repeat("00000000", 8) + "05000000" + "06000000" + "07000000"},
			want: Socket{Type: unix.SOCK_RAW, Protocol: unix.NETLINK_ROUTE, State: 7, PortID: 0x9aaafb3e,
				Inode: 1633, Cookie: 3, Meminfo: []uint32{0, 0, 0, 0, 0, 0, 0, 0, 5, 6, 7}, Attrs: []uint16{AttrMeminfo}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(unhex(t, tt.parts...))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		want  string // in the error
	}{
		{"ShortHeader", []string{ringHdr[:2*20]}, "netlink_diag_msg of 20 bytes"},
		{"NotNetlink", []string{"02" + ringHdr[2:]}, "ndiag_family 2"},
		{"TruncatedAttribute", []string{ringHdr, ringRX[:24]}, "attribute length 20"},
		{"TrailingBytes", []string{ringHdr, ringRX, "0800"}, "trailing bytes"},
		{"ShortRing", []string{ringHdr, "10000200" + ringRX[8:32]}, "NETLINK_DIAG_RX_RING: 12 bytes, want 16"},
		{"LongRing", []string{ringHdr, "18000300" + ringTX[8:] + "00000000"}, "NETLINK_DIAG_TX_RING: 20 bytes, want 16"},
		{"ShortStats", []string{ringHdr, "18000500" + ringStats[8:48]}, "NETLINK_DIAG_RING_STATS: 20 bytes, want 24"},
		{"StatsTwice", []string{ringHdr, ringStats, ringStats}, "NETLINK_DIAG_RING_STATS: given twice"},
		{"RingTwice", []string{ringHdr, ringRX, ringRX}, "NETLINK_DIAG_RX_RING: given twice"},
		{"NonZeroStatsPad", []string{ringHdr, ringStats[:len(ringStats)-8] + "01000000"}, "ndrs_pad 0x1, want 0"},
		{"PadNotEmpty", []string{ringHdr, "08000600" + "00000000", ringStats}, "NETLINK_DIAG_PAD: 4 bytes, want 0"},
		{"PadLast", []string{ringHdr, ringRX, pad}, "NETLINK_DIAG_PAD: not followed by NETLINK_DIAG_RING_STATS"},
		{"PadBeforeOther", []string{ringHdr, pad, ringRX, ringStats}, "NETLINK_DIAG_PAD: not followed by"},
		{"PadAfterStats", []string{ringHdr, ringStats, pad}, "NETLINK_DIAG_PAD: not followed by"},
		{"ShortMeminfo", []string{plainHdr, "24000000" + plainMeminfo[8:len(plainMeminfo)-8]}, "NETLINK_DIAG_MEMINFO: 32 bytes, want 36 or more"},
		{"RaggedMeminfo", []string{plainHdr, "2a000000" + plainMeminfo[8:] + "0000"}, "NETLINK_DIAG_MEMINFO: 38 bytes"},
		{"ShortFlags", []string{plainHdr, "06000400" + "0000" + "0000"}, "NETLINK_DIAG_FLAGS: 2 bytes, want 4"},
		{"FlagsTwice", []string{plainHdr, plainFlags, plainFlags}, "NETLINK_DIAG_FLAGS: given twice"},
		{"RaggedGroups", []string{ringHdr, "07000100" + "410000" + "00"}, "NETLINK_DIAG_GROUPS: 3 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(unhex(t, tt.parts...))
			if !errors.Is(err, nlmsg.ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %+v, %v; want an error with %q wrapping ErrMalformed", s, err, tt.want)
			}
			if len(tt.parts) > 1 && !strings.HasPrefix(err.Error(), "inode ") {
				t.Errorf("error %q does not name the inode", err)
			}
		})
	}
}

func TestMember(t *testing.T) {
	s := Socket{Groups: make([]byte, 2*sizeofLong)}
	s.Groups[0] = 0x41                       // groups 1 and 7
	s.Groups[sizeofLong+sizeofLong-1] = 0x80 // the last group of the bitmap
	last := uint32(16 * sizeofLong)
	for g := uint32(0); g <= last+1; g++ {
		want := g == 1 || g == 7 || g == last
		if got := s.Member(g); got != want {
			t.Errorf("Member(%d) = %v, want %v", g, got, want)
		}
	}
	if (Socket{}).Member(1) {
		t.Error("Member(1) without NETLINK_DIAG_GROUPS")
	}
}

func TestDropsAndHas(t *testing.T) {
	s, err := Parse(unhex(t, plainHdr, "28000000"+strings.Repeat("00000000", 8)+"2a000000", plainFlags))
	if err != nil {
		t.Fatal(err)
	}
	if s.Drops() != 42 {
		t.Errorf("Drops = %d, want 42", s.Drops())
	}
	if !s.Has(AttrFlags) || !s.Has(AttrMeminfo) || s.Has(AttrPad) || s.Has(AttrRingStats) {
		t.Errorf("Has: attributes %v", s.Attrs)
	}
	if (Socket{}).Drops() != 0 {
		t.Error("Drops without NETLINK_DIAG_MEMINFO")
	}
}

func TestAttrName(t *testing.T) {
	for typ, want := range map[uint16]string{AttrMeminfo: "NETLINK_DIAG_MEMINFO", AttrPad: "NETLINK_DIAG_PAD", 7: "NETLINK_DIAG_7"} {
		if got := AttrName(typ); got != want {
			t.Errorf("AttrName(%d) = %q, want %q", typ, got, want)
		}
	}
}
