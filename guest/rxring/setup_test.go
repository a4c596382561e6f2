package rxring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// lcm is the least common multiple of a and b.
func lcm(a, b uint32) uint32 {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}

// TestRingSetupErrors sends nl_mmap_req values straight to setsockopt,
// for both rings, each on a fresh socket, and checks the kernel's exact
// answer against the rules of netlink_mmap.rst. Each bad request breaks
// one rule only. It also checks that ring.Params.Validate, which the
// library runs before the system call, agrees with the kernel.
func TestRingSetupErrors(t *testing.T) {
	requireRings(t)
	page := uint32(pageSize)
	valid := mmapReq(page, 2, page/2, 4)
	minFrame := uint32(ring.HeaderLen + unix.NLMSG_HDRLEN) // 40
	minBlock := lcm(minFrame, page)
	oddBlock := lcm(42, page) // blocks that frames of 42 bytes fill exactly
	overflowBlocks := uint32((1 << 32) / uint64(page))

	tests := []struct {
		name string
		req  []byte
		want error // nil: accepted
	}{
		{"block size 0", mmapReq(0, 1, page/2, 2), unix.EINVAL},
		{"block size not page aligned", mmapReq(page+page/2, 1, page/2, 3), unix.EINVAL},
		{"block size below a page", mmapReq(page/2, 1, page/2, 1), unix.EINVAL},
		{"frame size 0", mmapReq(page, 1, 0, 0), unix.EINVAL},
		{"frame below NL_MMAP_HDRLEN+NLMSG_HDRLEN", mmapReq(page, 1, 32, page/32), unix.EINVAL},
		{"frame one alignment unit below the minimum", mmapReq(lcm(minFrame-4, page), 1, minFrame-4, lcm(minFrame-4, page)/(minFrame-4)), unix.EINVAL},
		{"frame not 4-byte aligned", mmapReq(oddBlock, 1, 42, oddBlock/42), unix.EINVAL},
		{"frames do not fill a block", mmapReq(page, 1, 1000, 4), unix.EINVAL},
		{"frame bigger than a block", mmapReq(page, 2, 2*page, 1), unix.EINVAL},
		{"frame count one short", mmapReq(page, 2, page/2, 3), unix.EINVAL},
		{"frame count one over", mmapReq(page, 2, page/2, 5), unix.EINVAL},
		{"frame count 0 with blocks", mmapReq(page, 2, page/2, 0), unix.EINVAL},
		{"ring size 2^32 in large blocks", mmapReq(1<<20, 1<<12, 1<<20, 1<<12), unix.EINVAL},
		{"ring size 2^32 in pages", mmapReq(page, overflowBlocks, page, overflowBlocks), unix.EINVAL},
		{"ring size overflows with max blocks", mmapReq(page, math.MaxUint32, page, math.MaxUint32), unix.EINVAL},
		{"ring of 1 GiB and a block", mmapReq(1<<20, 1<<10+1, 1<<20, 1<<10+1), unix.EINVAL},
		{"65536 frames and a block more", mmapReq(page, 1<<16*64/page+1, 64, (1<<16*64/page+1)*page/64), unix.EINVAL},
		{"teardown with frames", mmapReq(0, 0, 0, 1), unix.EINVAL},
		{"teardown with frames and sizes", mmapReq(page, 0, page/2, 2), unix.EINVAL},
		{"optlen 0", nil, unix.EINVAL},
		{"optlen 15", valid[:15], unix.EINVAL},
		{"optlen 17", append(append([]byte(nil), valid...), 0), unix.EINVAL},
		{"optlen 32", append(append([]byte(nil), valid...), valid...), unix.EINVAL},

		{"valid", valid, nil},
		{"smallest frame", mmapReq(minBlock, 1, minFrame, minBlock/minFrame), nil},
		{"one frame per block", mmapReq(page, 3, page, 3), nil},
		{"frame spanning pages", mmapReq(2*page, 2, 2*page, 2), nil},
		{"65536 frames", mmapReq(page, 1<<16*64/page, 64, 1<<16), nil},
		{"teardown without a ring", teardown, nil},
		{"teardown ignores the sizes", mmapReq(page, 0, 1000, 0), nil},
	}
	for _, opt := range []int{ring.OptRXRing, ring.OptTXRing} {
		for _, tt := range tests {
			t.Run(optName(opt)+"/"+tt.name, func(t *testing.T) {
				fd, err := openNetlink(unix.NETLINK_ROUTE)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				err = setRingRaw(fd, opt, tt.req)
				if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
					t.Fatalf("setsockopt(%s, % x) = %v, want %v", optName(opt), tt.req, err, errnoString(tt.want))
				}
				if len(tt.req) == 16 {
					p := reqParams(tt.req)
					verr := p.Validate()
					if (verr == nil) != (tt.want == nil) || (verr != nil && !errors.Is(verr, unix.EINVAL)) {
						t.Errorf("ring.Params%v.Validate() = %v, but the kernel says %v", p, verr, errnoString(tt.want))
					}
				}
				// What the kernel reports must match what it accepted.
				if !diagHasRings() {
					return
				}
				d := diag(t, fd)
				got := d.RX
				if opt == ring.OptTXRing {
					got = d.TX
				}
				if p := reqParams(tt.req); tt.want == nil && p.Enabled() {
					if got == nil || *got != p {
						t.Errorf("sock_diag reports ring %v, want %v", got, p)
					}
				} else if got != nil {
					t.Errorf("sock_diag reports ring %v after a request that set none", got)
				}
			})
		}
	}
}

// reqParams decodes a 16-byte nl_mmap_req.
func reqParams(b []byte) ring.Params {
	if len(b) != 16 {
		return ring.Params{}
	}
	u := func(i int) uint32 { return binary.NativeEndian.Uint32(b[i:]) }
	return ring.Params{BlockSize: u(0), BlockNr: u(4), FrameSize: u(8), FrameNr: u(12)}
}

func errnoString(err error) string {
	if err == nil {
		return "success"
	}
	return fmt.Sprintf("%v (%d)", err, err.(unix.Errno))
}

// TestRingSetupBusy checks that a ring is set up once: a second valid
// request for the same ring fails with EBUSY until the ring is torn down,
// and that RX and TX rings are independent.
func TestRingSetupBusy(t *testing.T) {
	requireRings(t)
	fd := netlinkSocket(t, unix.NETLINK_ROUTE)
	p1 := mustParams(t, pageSize/2, 4)
	p2 := mustParams(t, pageSize, 2)
	check := func(step string, rx, tx *ring.Params) {
		t.Helper()
		if !diagHasRings() {
			return
		}
		d := diag(t, fd)
		if !sameRing(d.RX, rx) || !sameRing(d.TX, tx) {
			t.Errorf("%s: sock_diag reports RX %v TX %v, want RX %v TX %v", step, d.RX, d.TX, rx, tx)
		}
		// Ring statistics come with a ring (or a mapping), not without.
		if has := rx != nil || tx != nil; (d.Stats != nil) != has || ringStats(d).Mapped != 0 {
			t.Errorf("%s: ring stats %v; want present %v, mapped 0", step, d.Stats, has)
		}
	}
	steps := []struct {
		name string
		opt  int
		req  []byte
		want error
	}{
		{"set up RX", ring.OptRXRing, paramsReq(p1), nil},
		{"set up RX again", ring.OptRXRing, paramsReq(p1), unix.EBUSY},
		{"set up RX with another geometry", ring.OptRXRing, paramsReq(p2), unix.EBUSY},
		{"set up TX", ring.OptTXRing, paramsReq(p2), nil},
		{"set up TX again", ring.OptTXRing, paramsReq(p1), unix.EBUSY},
	}
	for _, s := range steps {
		if err := setRingRaw(fd, s.opt, s.req); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("%s: setsockopt = %v, want %s", s.name, err, errnoString(s.want))
		}
	}
	check("RX and TX set up", &p1, &p2)

	if err := setRingRaw(fd, ring.OptRXRing, teardown); err != nil {
		t.Fatalf("tear down RX: %v", err)
	}
	check("RX torn down", nil, &p2)
	if err := setRingRaw(fd, ring.OptRXRing, paramsReq(p2)); err != nil {
		t.Fatalf("set up RX after teardown: %v", err)
	}
	check("RX set up again", &p2, &p2)
	for _, opt := range []int{ring.OptRXRing, ring.OptTXRing, ring.OptTXRing} {
		if err := setRingRaw(fd, opt, teardown); err != nil {
			t.Fatalf("tear down %s: %v", optName(opt), err)
		}
	}
	check("both torn down (TX twice)", nil, nil)
}

// TestRXRingSetupBusyWithQueuedMessage checks that an RX ring cannot be
// set up while messages wait on the receive queue (they could never be
// announced in the ring): EBUSY, nothing set up; a TX ring can. Once the
// message is read, the RX ring is set up and the next message arrives in
// it.
func TestRXRingSetupBusyWithQueuedMessage(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	fd := netlinkSocket(t, unix.NETLINK_ROUTE)
	rx := mustParams(t, pageSize/2, 4)
	send := func(seq uint32) {
		t.Helper()
		if err := unix.Sendto(fd, noopAck(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			t.Fatalf("sendto: %v", err)
		}
	}
	send(1)
	if queueEmpty(t, fd) {
		t.Fatal("the ack is not on the receive queue")
	}
	if err := setRingRaw(fd, ring.OptRXRing, paramsReq(rx)); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("setsockopt NETLINK_RX_RING with a queued message = %v, want EBUSY", err)
	}
	if d := diag(t, fd); d.RX != nil || d.Stats != nil {
		t.Fatalf("after EBUSY sock_diag reports RX %v, ring stats %v", d.RX, d.Stats)
	}
	if err := setRingRaw(fd, ring.OptTXRing, paramsReq(rx)); err != nil {
		t.Errorf("setsockopt NETLINK_TX_RING with a queued message = %v, want success", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
	if err != nil {
		t.Fatalf("reading the queued ack: %v", err)
	}
	if seq, code, _, err := ackOf(buf[:n]); err != nil || seq != 1 || code != 0 {
		t.Fatalf("queued message: seq %d code %d (%v), want the ack of seq 1", seq, code, err)
	}
	if err := setRingRaw(fd, ring.OptRXRing, paramsReq(rx)); err != nil {
		t.Fatalf("setsockopt NETLINK_RX_RING after reading the queue = %v, want success", err)
	}
	mem, err := mmapRing(fd, 2*rx.Size(), 0, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer munmap(mem)
	v := newFrameView(mem[:rx.Size()], rx)
	send(2)
	if st := v.status(0); st != ring.StatusValid {
		t.Fatalf("frame 0 is %v after an ack, want VALID", st)
	}
	if seq, code, _, err := ackOf(v.payload(0)[:v.hdr(0).Len]); err != nil || seq != 2 || code != 0 {
		t.Errorf("frame 0 holds seq %d code %d (%v), want the ack of seq 2", seq, code, err)
	}
}

func sameRing(a, b *ring.Params) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// TestRingSetupNeedsCapNetAdmin checks that both ring options, teardown
// included, fail with EPERM for a caller without CAP_NET_ADMIN, before
// anything else about the request is looked at, on its own socket and on
// one root opened and handed over. See asNobody for how the caller loses
// the capability.
func TestRingSetupNeedsCapNetAdmin(t *testing.T) {
	requireRings(t)
	p := mustParams(t, pageSize/2, 4)
	rootFD := netlinkSocket(t, unix.NETLINK_ROUTE)
	reqs := []struct {
		name string
		req  []byte
	}{
		{"valid", paramsReq(p)},
		{"teardown", teardown},
		{"bad geometry", mmapReq(uint32(pageSize)+1, 1, 40, 1)},
		{"short optlen", paramsReq(p)[:8]},
	}
	err := asNobody(func() error {
		own, err := openNetlink(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer unix.Close(own)
		var errs []error
		for _, fd := range []struct {
			name string
			fd   int
		}{{"own socket", own}, {"root's socket", rootFD}} {
			for _, opt := range []int{ring.OptRXRing, ring.OptTXRing} {
				for _, r := range reqs {
					if err := setRingRaw(fd.fd, opt, r.req); !errors.Is(err, unix.EPERM) {
						errs = append(errs, fmt.Errorf("%s: setsockopt(%s, %s) = %v, want EPERM",
							fd.name, optName(opt), r.name, err))
					}
				}
			}
		}
		c, err := ring.Dial(unix.NETLINK_ROUTE, ring.Config{RX: p})
		if err == nil {
			c.Close()
		}
		if !errors.Is(err, unix.EPERM) {
			errs = append(errs, fmt.Errorf("ring.Dial = %v, want an error wrapping EPERM", err))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatal(err)
	}

	// The same request on the same socket works for root: the EPERM
	// above was about the caller.
	if err := setRingRaw(rootFD, ring.OptRXRing, paramsReq(p)); err != nil {
		t.Fatalf("root: setsockopt NETLINK_RX_RING: %v", err)
	}
	if d := diag(t, rootFD); diagHasRings() && !sameRing(d.RX, &p) {
		t.Errorf("sock_diag reports RX %v, want %v", d.RX, p)
	}
}
