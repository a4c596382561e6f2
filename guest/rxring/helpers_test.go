package rxring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// ringSupport probes the running kernel once.
var ringSupport struct {
	once sync.Once
	err  error
}

// requireRings skips t outside the VM, and on a kernel without
// memory-mapped netlink (setsockopt NETLINK_RX_RING answers ENOPROTOOPT).
//
// On a prefix of the series it needs patch 02 (the socket options); tests
// that rely on later patches say so with guesttest.NeedsPatch, and what is
// read back through NETLINK_SOCK_DIAG is checked from patch 09 on
// (diagHasRings).
func requireRings(t *testing.T) {
	t.Helper()
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 2)
	ringSupport.once.Do(func() {
		// Only the socket option: mapping the ring is patch 03's.
		p, err := ring.ParamsFor(4096, 1)
		if err != nil {
			ringSupport.err = err
			return
		}
		fd, err := openNetlink(unix.NETLINK_ROUTE)
		if err != nil {
			ringSupport.err = err
			return
		}
		defer unix.Close(fd)
		if err := setRingRaw(fd, ring.OptRXRing, paramsReq(p)); err != nil {
			if errors.Is(err, unix.ENOPROTOOPT) {
				err = fmt.Errorf("%w: %w", ring.ErrNotSupported, err)
			}
			ringSupport.err = err
		}
	})
	switch err := ringSupport.err; {
	case errors.Is(err, ring.ErrNotSupported):
		t.Skipf("kernel without memory-mapped netlink (setsockopt NETLINK_RX_RING: ENOPROTOOPT): %v", err)
	case err != nil:
		t.Fatalf("probing for memory-mapped netlink: %v", err)
	}
}

// pageSize is the guest's page size; the ring geometry rules use it.
var pageSize = os.Getpagesize()

// mmapReq encodes struct nl_mmap_req as the kernel reads it.
func mmapReq(blockSize, blockNr, frameSize, frameNr uint32) []byte {
	b := make([]byte, 0, 16)
	for _, v := range []uint32{blockSize, blockNr, frameSize, frameNr} {
		b = binary.NativeEndian.AppendUint32(b, v)
	}
	return b
}

func paramsReq(p ring.Params) []byte {
	return mmapReq(p.BlockSize, p.BlockNr, p.FrameSize, p.FrameNr)
}

// setRingRaw is setsockopt(fd, SOL_NETLINK, opt, b, len(b)): the bytes
// and the length as they are, unvalidated.
func setRingRaw(fd, opt int, b []byte) error {
	return unix.SetsockoptString(fd, ring.SolNetlink, opt, string(b))
}

// teardown is the request that removes a ring.
var teardown = mmapReq(0, 0, 0, 0)

// optName names a ring option for messages.
func optName(opt int) string {
	if opt == ring.OptTXRing {
		return "NETLINK_TX_RING"
	}
	return "NETLINK_RX_RING"
}

// openNetlink opens a bound netlink socket of the given family with a
// receive timeout, so a test that waits for a message in vain fails
// instead of hanging.
func openNetlink(family int) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, family)
	if err != nil {
		return -1, fmt.Errorf("socket(AF_NETLINK, %d): %w", family, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind: %w", err)
	}
	tv := unix.NsecToTimeval((30 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	return fd, nil
}

// netlinkSocket is openNetlink for a test: the socket is closed when the
// test ends.
func netlinkSocket(t *testing.T, family int) int {
	t.Helper()
	fd, err := openNetlink(family)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// portID returns the port ID a netlink socket is bound to.
func portID(t *testing.T, fd int) uint32 {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return sa.(*unix.SockaddrNetlink).Pid
}

// rawRing is a socket with rings set up with raw system calls and mapped
// once, plus a view of its RX frames; the tests drive the frames
// themselves. Cleanup unmaps and closes.
type rawRing struct {
	fd  int
	mem []byte
	rx  frameView
}

func newRawRing(t *testing.T, family int, rx, tx ring.Params) *rawRing {
	t.Helper()
	r := &rawRing{fd: netlinkSocket(t, family)}
	if rx.Enabled() {
		if err := setRingRaw(r.fd, ring.OptRXRing, paramsReq(rx)); err != nil {
			t.Fatalf("setsockopt NETLINK_RX_RING %v: %v", rx, err)
		}
	}
	if tx.Enabled() {
		if err := setRingRaw(r.fd, ring.OptTXRing, paramsReq(tx)); err != nil {
			t.Fatalf("setsockopt NETLINK_TX_RING %v: %v", tx, err)
		}
	}
	mem, err := mmapRing(r.fd, rx.Size()+tx.Size(), 0, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap %d bytes: %v", rx.Size()+tx.Size(), err)
	}
	r.mem = mem
	t.Cleanup(r.unmap)
	r.rx = newFrameView(mem[:rx.Size()], rx)
	return r
}

// unmap removes the mapping, once.
func (r *rawRing) unmap() {
	if r.mem != nil {
		munmap(r.mem)
		r.mem = nil
	}
}

// mmapRing maps length bytes of fd's rings at offset off, read and write,
// with the given flags.
func mmapRing(fd, length int, off int64, flags int) ([]byte, error) {
	p, err := unix.MmapPtr(fd, off, nil, uintptr(length), unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), length), nil
}

// munmap unmaps b, which may be any page-aligned part of a mapping.
func munmap(b []byte) error {
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}

// send sends one datagram to the kernel.
func (r *rawRing) send(t *testing.T, b []byte) {
	t.Helper()
	if err := unix.Sendto(r.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatalf("sendto kernel: %v", err)
	}
}

// frameView is a typed view of the frames of one ring in a mapping, the
// way the kernel lays them out: frame i at i*FrameSize, struct
// nl_mmap_hdr first.
type frameView struct {
	mem  []byte
	size int
	n    int
}

func newFrameView(mem []byte, p ring.Params) frameView {
	return frameView{mem: mem, size: int(p.FrameSize), n: int(p.FrameNr)}
}

// word returns the w-th 32-bit word of frame i's header.
func (v frameView) word(i, w int) *uint32 {
	return (*uint32)(unsafe.Pointer(&v.mem[i*v.size+4*w]))
}

// status loads nm_status with acquire ordering (Go atomics are
// sequentially consistent): pairs with the kernel's smp_store_release()
// that publishes a frame.
func (v frameView) status(i int) ring.Status { return ring.Status(atomic.LoadUint32(v.word(i, 0))) }

// setStatus stores nm_status with release ordering: pairs with the
// kernel's smp_load_acquire() when it looks for a free frame.
func (v frameView) setStatus(i int, s ring.Status) { atomic.StoreUint32(v.word(i, 0), uint32(s)) }

// frameHdr is struct nl_mmap_hdr without the status word.
type frameHdr struct {
	Len, Group, PID, UID, GID uint32
}

// hdr reads the header; call it after status returned VALID or COPY.
func (v frameView) hdr(i int) frameHdr {
	return frameHdr{Len: *v.word(i, 1), Group: *v.word(i, 2), PID: *v.word(i, 3), UID: *v.word(i, 4), GID: *v.word(i, 5)}
}

// payload returns the whole area of frame i after the header.
func (v frameView) payload(i int) []byte {
	off := i*v.size + ring.HeaderLen
	return v.mem[off : i*v.size+v.size]
}

// statuses lists every frame's status, for failure messages.
func (v frameView) statuses() string {
	s := ""
	for i := range v.n {
		s += fmt.Sprintf("%d:%v ", i, v.status(i))
	}
	return s
}

// Requests.

// noopAck is NLMSG_NOOP with NLM_F_ACK: the kernel answers with an
// acknowledgement (NLMSG_ERROR, code 0) and nothing else.
func noopAck(seq uint32) []byte {
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.NLMSG_NOOP,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK, Seq: seq}}.Append(nil)
}

// noSuchIfindex is an interface index no test creates.
const noSuchIfindex = 0x7ffffff0

// getLink is RTM_GETLINK for one interface, followed by attrs.
func getLink(seq uint32, flags uint16, ifindex int32, attrs []byte) []byte {
	ifi := make([]byte, unix.SizeofIfInfomsg)
	binary.NativeEndian.PutUint32(ifi[4:], uint32(ifindex))
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_GETLINK,
		Flags: unix.NLM_F_REQUEST | flags, Seq: seq}, Data: append(ifi, attrs...)}.Append(nil)
}

// ackOf checks that datagram b is exactly one NLMSG_ERROR message
// answering the request with sequence number seq, and returns its code
// (0 for an acknowledgement, a negative errno otherwise) and the request
// header it echoes.
func ackOf(b []byte) (seq uint32, code int32, echo nlmsg.Header, err error) {
	msgs, err := nlmsg.Parse(b)
	if err != nil {
		return 0, 0, echo, err
	}
	if len(msgs) != 1 || msgs[0].Type != unix.NLMSG_ERROR || len(msgs[0].Data) < 4+nlmsg.HeaderLen {
		return 0, 0, echo, fmt.Errorf("want one NLMSG_ERROR message, got %s", describe(b))
	}
	d := msgs[0].Data
	echo = nlmsg.Header{Len: binary.NativeEndian.Uint32(d[4:]), Type: binary.NativeEndian.Uint16(d[8:]),
		Flags: binary.NativeEndian.Uint16(d[10:]), Seq: binary.NativeEndian.Uint32(d[12:]),
		PortID: binary.NativeEndian.Uint32(d[16:])}
	return msgs[0].Seq, int32(binary.NativeEndian.Uint32(d)), echo, nil
}

// describe summarizes a datagram for failure messages.
func describe(b []byte) string {
	msgs, err := nlmsg.Parse(b)
	s := fmt.Sprintf("%d bytes:", len(b))
	for _, m := range msgs {
		s += fmt.Sprintf(" {type %d flags %#x seq %d pid %d len %d}", m.Type, m.Flags, m.Seq, m.PortID, m.Len)
	}
	if err != nil {
		s += " " + err.Error()
	}
	return s
}

// pollIn reports whether poll() says fd is readable, without waiting.
func pollIn(t *testing.T, fd int) bool {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, 0); err != nil {
		t.Fatalf("poll: %v", err)
	}
	return pfd[0].Revents&unix.POLLIN != 0
}

// queueEmpty reports whether the receive queue is empty: a non-blocking
// recvmsg that only peeks fails with EAGAIN.
func queueEmpty(t *testing.T, fd int) bool {
	t.Helper()
	_, _, err := unix.Recvfrom(fd, make([]byte, 1), unix.MSG_DONTWAIT|unix.MSG_PEEK)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return true
	case err == nil:
		return false
	}
	t.Fatalf("recvmsg MSG_PEEK: %v", err)
	return false
}

// connFD runs fn with a Conn's descriptor.
func connFD(t *testing.T, c *ring.Conn, fn func(fd int)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
		t.Fatalf("Control: %v", err)
	}
}

// dialRing opens a Conn with an RX ring, closed when the test ends.
func dialRing(t *testing.T, family int, rx ring.Params) *ring.Conn {
	t.Helper()
	c, err := ring.Dial(family, ring.Config{RX: rx})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustParams(t *testing.T, frameSize, frames int) ring.Params {
	t.Helper()
	p, err := ring.ParamsFor(frameSize, frames)
	if err != nil {
		t.Fatalf("ParamsFor(%d, %d): %v", frameSize, frames, err)
	}
	return p
}

// nobody is the user and group the unprivileged checks run as.
const nobody = 65534

// asNobody runs fn on an OS thread of its own whose credentials are
// uid/gid 65534 and which therefore has no capabilities, and returns
// fn's error.
//
// Linux credentials are per thread; the raw setresgid/setresuid calls
// change only the calling thread (syscall.Setuid would change them all).
// Moving every uid away from 0 clears the thread's capability sets, so
// the thread can never become root again: it stays locked to its
// goroutine and the Go runtime ends it when the goroutine returns (and
// never clones new threads from a locked one). This needs no second
// process, no executable reachable by an unprivileged user and no
// start-up time, and the test can hand fn descriptors and results
// directly.
func asNobody(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see above
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, nobody, nobody, nobody); e != 0 {
			errc <- fmt.Errorf("setresgid: %w", e)
			return
		}
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, nobody, nobody, nobody); e != 0 {
			errc <- fmt.Errorf("setresuid: %w", e)
			return
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capget: %w", err)
			return
		}
		if data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0 {
			errc <- errors.New("thread still has CAP_NET_ADMIN after dropping to uid 65534")
			return
		}
		errc <- fn()
	}()
	return <-errc
}
