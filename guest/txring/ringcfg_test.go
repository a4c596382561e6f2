package txring

import (
	"encoding/binary"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nldiag"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestDiagRingConfig reads a socket's ring geometry and counters back
// through NETLINK_SOCK_DIAG (NDIAG_SHOW_RING_CFG) from a second socket:
// exactly what was set up, absent rings absent, struct
// netlink_diag_ring_stats of its exact size with zero counters and the
// count of mappings following a second mmap() and its munmap().
// NETLINK_DIAG_RING_STATS comes only for sockets with a ring or a
// mapping, and none of the ring attributes without NDIAG_SHOW_RING_CFG.
func TestDiagRingConfig(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 9) // ring configuration in sock_diag
	tests := []struct {
		name   string
		family int
		cfg    ring.Config
	}{
		{name: "RXAndTX", family: unix.NETLINK_ROUTE, cfg: ring.Config{
			RX: ring.Params{BlockSize: 16384, BlockNr: 2, FrameSize: 2048, FrameNr: 16},
			TX: ring.Params{BlockSize: 8192, BlockNr: 3, FrameSize: 4096, FrameNr: 6},
		}},
		{name: "RXOnly", family: unix.NETLINK_GENERIC, cfg: ring.Config{
			RX: ring.Params{BlockSize: 4096, BlockNr: 4, FrameSize: 1024, FrameNr: 16},
		}},
		{name: "TXOnly", family: unix.NETLINK_ROUTE, cfg: ring.Config{
			TX: ring.Params{BlockSize: 12288, BlockNr: 1, FrameSize: 3072, FrameNr: 4},
		}},
		{name: "FramesSpanPages", family: unix.NETLINK_ROUTE, cfg: ring.Config{
			RX: ring.Params{BlockSize: 65536, BlockNr: 2, FrameSize: 16384, FrameNr: 8},
			TX: ring.Params{BlockSize: 4096, BlockNr: 1, FrameSize: 4096, FrameNr: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, tt.family, tt.cfg)
			fd := connFD(t, c)
			ino := fdIno(t, fd)
			check := func(when string, mapped uint32) {
				t.Helper()
				d := diagSocket(t, tt.family, ino)
				checkRing(t, when+": RX", d.RX, tt.cfg.RX)
				checkRing(t, when+": TX", d.TX, tt.cfg.TX)
				if d.Stats == nil {
					t.Fatalf("%s: no NETLINK_DIAG_RING_STATS (attributes %v)", when, d.Attrs)
				}
				if want := (nldiag.RingStats{Mapped: mapped}); *d.Stats != want {
					t.Errorf("%s: ring stats %+v, want %+v", when, *d.Stats, want)
				}
				if int(d.Protocol) != tt.family {
					t.Errorf("%s: protocol %d, want %d", when, d.Protocol, tt.family)
				}
			}
			check("mapped once", 1)
			size := tt.cfg.RX.Size() + tt.cfg.TX.Size()
			m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if err != nil {
				t.Fatalf("second mmap: %v", err)
			}
			check("mapped twice", 2)
			if err := unix.Munmap(m); err != nil {
				t.Fatal(err)
			}
			check("second mapping gone", 1)

			// Without NDIAG_SHOW_RING_CFG, none of it.
			socks, err := nldiag.Dump(tt.family, nldiag.ShowFlags)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range socks {
				if s.Inode == ino && (s.RX != nil || s.TX != nil || s.Stats != nil || s.Has(nldiag.AttrPad)) {
					t.Errorf("without NDIAG_SHOW_RING_CFG: attributes %v", s.Attrs)
				}
			}
		})
	}

	// Sockets set up with raw system calls: rings without a mapping,
	// rings torn down, no rings at all.
	rx := ring.Params{BlockSize: 8192, BlockNr: 2, FrameSize: 4096, FrameNr: 4}
	tx := ring.Params{BlockSize: 4096, BlockNr: 1, FrameSize: 2048, FrameNr: 2}
	raw := []struct {
		name   string
		do     func(t *testing.T, fd int)
		rx, tx ring.Params
		stats  *nldiag.RingStats
	}{
		{name: "NoRings", do: func(*testing.T, int) {}},
		{
			name: "RingsNotMapped",
			do: func(t *testing.T, fd int) {
				setRing(t, fd, ring.OptRXRing, rx)
				setRing(t, fd, ring.OptTXRing, tx)
			},
			rx: rx, tx: tx, stats: &nldiag.RingStats{},
		},
		{
			name: "TXRingNotMapped",
			do:   func(t *testing.T, fd int) { setRing(t, fd, ring.OptTXRing, tx) },
			tx:   tx, stats: &nldiag.RingStats{},
		},
		{
			// Mapped, unmapped and torn down: as if it never had rings.
			name: "RingsTornDown",
			do: func(t *testing.T, fd int) {
				setRing(t, fd, ring.OptRXRing, rx)
				setRing(t, fd, ring.OptTXRing, tx)
				m, err := unix.Mmap(fd, 0, rx.Size()+tx.Size(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
				if err != nil {
					t.Fatalf("mmap: %v", err)
				}
				if err := unix.Munmap(m); err != nil {
					t.Fatal(err)
				}
				setRing(t, fd, ring.OptRXRing, ring.Params{})
				setRing(t, fd, ring.OptTXRing, ring.Params{})
			},
		},
	}
	for _, tt := range raw {
		t.Run(tt.name, func(t *testing.T) {
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			// sock_diag lists bound sockets only.
			if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				t.Fatal(err)
			}
			tt.do(t, fd)
			d := diagSocket(t, unix.NETLINK_ROUTE, fdIno(t, fd))
			t.Logf("attributes %v", d.Attrs)
			checkRing(t, "RX", d.RX, tt.rx)
			checkRing(t, "TX", d.TX, tt.tx)
			switch {
			case tt.stats == nil && d.Stats != nil:
				t.Errorf("NETLINK_DIAG_RING_STATS %+v, want none: the socket has no ring and no mapping", *d.Stats)
			case tt.stats == nil && d.Has(nldiag.AttrPad):
				t.Errorf("NETLINK_DIAG_PAD without NETLINK_DIAG_RING_STATS")
			case tt.stats != nil && d.Stats == nil:
				t.Errorf("no NETLINK_DIAG_RING_STATS, want %+v", *tt.stats)
			case tt.stats != nil && *d.Stats != *tt.stats:
				t.Errorf("ring stats %+v, want %+v", *d.Stats, *tt.stats)
			}
		})
	}
}

// setRing sets up (or, with zero Params, tears down) a ring of the
// socket fd with a raw setsockopt.
func setRing(t *testing.T, fd, opt int, p ring.Params) {
	t.Helper()
	b := make([]byte, 0, 16)
	for _, v := range []uint32{p.BlockSize, p.BlockNr, p.FrameSize, p.FrameNr} {
		b = binary.NativeEndian.AppendUint32(b, v)
	}
	if err := unix.SetsockoptString(fd, ring.SolNetlink, opt, string(b)); err != nil {
		t.Fatalf("setsockopt %d %v: %v", opt, p, err)
	}
}

func checkRing(t *testing.T, what string, got *ring.Params, want ring.Params) {
	t.Helper()
	switch {
	case got == nil && want.Enabled():
		t.Errorf("%s: absent, want %v", what, want)
	case got != nil && !want.Enabled():
		t.Errorf("%s: %v, want none", what, *got)
	case got != nil && *got != want:
		t.Errorf("%s: %v, want %v", what, *got, want)
	}
}
