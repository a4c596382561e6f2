package txring

import (
	"testing"

	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestDiagRingConfig reads a socket's ring geometry and mapping count
// back through NETLINK_SOCK_DIAG (NDIAG_SHOW_RING_CFG) from a second
// socket: exactly what was set up, absent rings absent, and the count of
// mappings following a second mmap() and its munmap().
func TestDiagRingConfig(t *testing.T) {
	setup(t)
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
					t.Fatalf("%s: no NETLINK_DIAG_RING_STATS", when)
				}
				if want := (ringStats{Mapped: mapped}); *d.Stats != want {
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
		})
	}

	t.Run("NoRings", func(t *testing.T) {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		// sock_diag lists bound sockets only.
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			t.Fatal(err)
		}
		d := diagSocket(t, unix.NETLINK_ROUTE, fdIno(t, fd))
		if d.RX != nil || d.TX != nil {
			t.Errorf("a socket without rings reports RX %v, TX %v", d.RX, d.TX)
		}
		if d.Stats == nil || *d.Stats != (ringStats{}) {
			t.Errorf("a socket without rings reports ring stats %+v, want all zero", d.Stats)
		}
	})
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
