package rxring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"unsafe"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestMmapErrors checks that only a shared mapping of exactly RX+TX size
// at offset 0 is accepted, that a socket without rings cannot be mapped,
// that failed attempts leave no mapping counted, and that a good one
// shows every frame of both rings UNUSED.
func TestMmapErrors(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 3) // mmap of the rings
	fd := netlinkSocket(t, unix.NETLINK_ROUTE)
	if _, err := mmapRing(fd, pageSize, 0, unix.MAP_SHARED); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("mmap of a socket without rings = %v, want EINVAL", err)
	}

	rx := mustParams(t, pageSize/2, 4) // 2 pages
	tx := mustParams(t, pageSize, 1)   // 1 page
	for _, r := range []struct {
		opt int
		p   ring.Params
	}{{ring.OptRXRing, rx}, {ring.OptTXRing, tx}} {
		if err := setRingRaw(fd, r.opt, paramsReq(r.p)); err != nil {
			t.Fatalf("setsockopt %s: %v", optName(r.opt), err)
		}
	}
	size := rx.Size() + tx.Size()
	bad := []struct {
		name   string
		length int
		off    int64
		flags  int
	}{
		{"one page short", size - pageSize, 0, unix.MAP_SHARED},
		{"RX ring only", rx.Size(), 0, unix.MAP_SHARED},
		{"one page long", size + pageSize, 0, unix.MAP_SHARED},
		{"offset one page", size, int64(pageSize), unix.MAP_SHARED},
		{"offset one page, length reduced", size - pageSize, int64(pageSize), unix.MAP_SHARED},
		{"MAP_PRIVATE", size, 0, unix.MAP_PRIVATE},
	}
	for _, b := range bad {
		if m, err := mmapRing(fd, b.length, b.off, b.flags); !errors.Is(err, unix.EINVAL) {
			if err == nil {
				munmap(m)
			}
			t.Errorf("mmap %s (length %d, offset %d) = %v, want EINVAL", b.name, b.length, b.off, err)
		}
	}
	if n, ok := mapped(t, fd); ok && n != 0 {
		t.Fatalf("after failed mmap calls, ndrs_mapped = %d, want 0", n)
	}

	mem, err := mmapRing(fd, size, 0, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap RX+TX (%d bytes): %v", size, err)
	}
	defer munmap(mem)
	if n, ok := mapped(t, fd); ok && n != 1 {
		t.Errorf("ndrs_mapped = %d, want 1", n)
	}
	for _, v := range []frameView{newFrameView(mem[:rx.Size()], rx), newFrameView(mem[rx.Size():], tx)} {
		for i := range v.n {
			if st := v.status(i); st != ring.StatusUnused {
				t.Errorf("fresh ring: frame %d is %v, want UNUSED", i, st)
			}
		}
	}
}

// TestMmapBusyWhileMapped checks that no ring can be set up or torn down
// while any mapping exists, that the count follows additional mappings
// and partial unmaps, and that after the last munmap the rings can be torn
// down, set up with another geometry and mapped again.
func TestMmapBusyWhileMapped(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	rx := mustParams(t, pageSize/2, 4)
	r := newRawRing(t, unix.NETLINK_ROUTE, rx, ring.Params{})
	busy := func(when string) {
		t.Helper()
		for _, c := range []struct {
			name string
			opt  int
			req  []byte
		}{
			{"set up RX again", ring.OptRXRing, paramsReq(mustParams(t, pageSize, 2))},
			{"tear down RX", ring.OptRXRing, teardown},
			{"set up TX", ring.OptTXRing, paramsReq(rx)},
			{"tear down TX (none set up)", ring.OptTXRing, teardown},
		} {
			if err := setRingRaw(r.fd, c.opt, c.req); !errors.Is(err, unix.EBUSY) {
				t.Errorf("%s: %s = %v, want EBUSY", when, c.name, err)
			}
		}
		if d := diag(t, r.fd); diagHasRings() && (!sameRing(d.RX, &rx) || d.TX != nil) {
			t.Fatalf("%s: rings changed: RX %v TX %v", when, d.RX, d.TX)
		}
	}
	want := func(when string, n uint32) {
		t.Helper()
		if got, ok := mapped(t, r.fd); ok && got != n {
			t.Errorf("%s: ndrs_mapped = %d, want %d", when, got, n)
		}
	}

	want("mapped once", 1)
	busy("mapped once")

	second, err := mmapRing(r.fd, rx.Size(), 0, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("second mmap: %v", err)
	}
	want("mapped twice", 2)
	// Both mappings show the same frames.
	r.send(t, noopAck(1))
	if st := newFrameView(second, rx).status(0); st != ring.StatusValid {
		t.Errorf("second mapping: frame 0 is %v after an ack, want VALID", st)
	}
	r.rx.setStatus(0, ring.StatusUnused)
	if err := munmap(second); err != nil {
		t.Fatalf("munmap second: %v", err)
	}
	want("second unmapped", 1)

	// Unmapping part of a mapping splits it; what is left still counts.
	if err := munmap(r.mem[:pageSize]); err != nil {
		t.Fatalf("munmap first page: %v", err)
	}
	rest := r.mem[pageSize:]
	r.mem = nil // the cleanup must not unmap the first page again
	want("first page unmapped", 1)
	busy("partly unmapped")
	if err := munmap(rest); err != nil {
		t.Fatalf("munmap rest: %v", err)
	}
	want("all unmapped", 0)

	if err := setRingRaw(r.fd, ring.OptRXRing, teardown); err != nil {
		t.Fatalf("tear down RX after munmap: %v", err)
	}
	if d := diag(t, r.fd); d.RX != nil {
		t.Fatalf("after teardown sock_diag still reports RX %v", d.RX)
	}
	if m, err := mmapRing(r.fd, rx.Size(), 0, unix.MAP_SHARED); !errors.Is(err, unix.EINVAL) {
		if err == nil {
			munmap(m)
		}
		t.Fatalf("mmap after teardown = %v, want EINVAL", err)
	}

	// Set up again, with another geometry and a TX ring, and map again.
	rx2 := mustParams(t, pageSize, 3)
	tx2 := mustParams(t, pageSize/4, 4)
	for _, c := range []struct {
		opt int
		p   ring.Params
	}{{ring.OptRXRing, rx2}, {ring.OptTXRing, tx2}} {
		if err := setRingRaw(r.fd, c.opt, paramsReq(c.p)); err != nil {
			t.Fatalf("set up %s again: %v", optName(c.opt), err)
		}
	}
	if m, err := mmapRing(r.fd, rx.Size(), 0, unix.MAP_SHARED); !errors.Is(err, unix.EINVAL) {
		if err == nil {
			munmap(m)
		}
		t.Fatalf("mmap with the old size = %v, want EINVAL", err)
	}
	mem, err := mmapRing(r.fd, rx2.Size()+tx2.Size(), 0, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap new rings: %v", err)
	}
	defer munmap(mem)
	want("mapped again", 1)
	v := newFrameView(mem[:rx2.Size()], rx2)
	for i := range v.n {
		if st := v.status(i); st != ring.StatusUnused {
			t.Errorf("new ring: frame %d is %v, want UNUSED", i, st)
		}
	}
	r.send(t, noopAck(2))
	if st := v.status(0); st != ring.StatusValid {
		t.Fatalf("new ring: frame 0 is %v after an ack, want VALID (%s)", st, v.statuses())
	}
	if seq, code, _, err := ackOf(v.payload(0)[:v.hdr(0).Len]); err != nil || seq != 2 || code != 0 {
		t.Errorf("new ring: frame 0 holds seq %d code %d (%v), want the ack of seq 2", seq, code, err)
	}
}

// TestMmapThroughProcMem checks that the mapping is ordinary memory to
// ptrace and /proc/PID/mem (it is not VM_IO): reading the ring there
// shows what the mapping shows, and a status written there is what the
// mapping and the kernel see.
func TestMmapThroughProcMem(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	rx := mustParams(t, pageSize/2, 4)
	r := newRawRing(t, unix.NETLINK_ROUTE, rx, ring.Params{})
	r.send(t, noopAck(1))
	f, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /proc/self/mem: %v", err)
	}
	defer f.Close()
	addr := int64(uintptr(unsafe.Pointer(&r.mem[0])))
	buf := make([]byte, r.rx.size)
	if n, err := f.ReadAt(buf, addr); err != nil || n != len(buf) {
		t.Fatalf("reading frame 0 through /proc/self/mem: %d bytes, %v", n, err)
	}
	if !bytes.Equal(buf, r.mem[:r.rx.size]) {
		t.Errorf("frame 0 through /proc/self/mem differs from the mapping")
	}
	if ring.Status(binary.NativeEndian.Uint32(buf)) != ring.StatusValid {
		t.Errorf("frame 0 through /proc/self/mem has status %d, want VALID", binary.NativeEndian.Uint32(buf))
	}
	// Fill frames 1..3, then give frame 0 back through /proc/self/mem:
	// the kernel, whose head is at frame 0 again, uses it.
	r.sendAcks(t, 2, 4)
	if _, err := f.WriteAt(binary.NativeEndian.AppendUint32(nil, uint32(ring.StatusUnused)), addr); err != nil {
		t.Fatalf("writing frame 0's status through /proc/self/mem: %v", err)
	}
	if st := r.rx.status(0); st != ring.StatusUnused {
		t.Fatalf("frame 0 is %v in the mapping after writing UNUSED through /proc/self/mem", st)
	}
	r.send(t, noopAck(5))
	r.wantAcks(t, []int{0, 1, 2, 3}, []uint32{5, 2, 3, 4})
}
