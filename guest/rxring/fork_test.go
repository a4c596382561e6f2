package rxring

import (
	"errors"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// Why a raw fork and not a re-exec of the test binary: what patch 03
// promises is that a mapping is inherited by fork() and counted there,
// which is the vm_operations open hook running in dup_mmap(). A child that
// execs loses the inherited mapping and would have to mmap() the socket
// again, which tests a second mmap (TestMmapBusyWhileMapped does) and
// never runs that hook. So the child here is a plain clone(SIGCHLD) of the
// test process that keeps the parent's address space, mapping included.
//
// Such a child must not run Go: only the forking thread exists in it, the
// runtime's locks may be held by threads that are gone, and a stack
// growth, allocation or scheduling point would go wrong. forkMapped is
// therefore nosplit and, in the child, only loads and stores through
// pointers the parent prepared and makes raw system calls, like the
// child half of syscall.forkAndExecInChild. The parent blocks signals in
// the forking thread first, so the child starts (and stays) with every
// signal blocked. (The atomics are compiler intrinsics; under -race they
// would call into the race runtime, but guest tests are built with
// CGO_ENABLED=0, which rules -race out.)

// forkArgs is everything the child uses, prepared by the parent.
type forkArgs struct {
	status0  *uint32 // nm_status of RX frame 0
	len0     *uint32 // the first word of frame 0's message: its nlmsg_len
	wantLen0 uint32
	status1  *uint32 // nm_status of RX frame 1
	sock     uintptr // the netlink socket, inherited
	req      *byte   // a request the child sends to the kernel
	reqLen   uintptr
	ready    uintptr // write end of the pipe the child reports on
	wait     uintptr // read end of the pipe the child waits on
	waitW    uintptr // write end of that pipe: the child closes its copy
	buf      *byte   // one byte for the pipes
}

// Child results, sent on the ready pipe and used as its exit status.
const (
	childOK          = 0
	childFrame0      = 10 // frame 0 is not the VALID ack the parent saw
	childSend        = 11 // sending the request failed
	childFrame1      = 12 // the kernel's answer did not show up in frame 1
	childReportError = 13 // writing to the ready pipe failed
)

var childErrors = map[byte]string{
	childFrame0: "frame 0 is not the VALID ack the parent saw before the fork",
	childSend:   "sending a request on the inherited socket failed",
	childFrame1: "the ack of the child's request is not VALID in frame 1 of the child's mapping",
}

// forkMapped forks. In the parent it returns the child's pid. The child
// checks the frames through its inherited mapping, releases frame 0,
// sends a request whose ack the kernel puts in frame 1, reports on the
// ready pipe, waits until the parent writes to (or closes) the wait pipe
// and exits.
//
//go:norace
//go:nosplit
func forkMapped(a *forkArgs) (pid uintptr, errno syscall.Errno) {
	r1, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 || r1 != 0 {
		return r1, e
	}

	// The child. No Go runtime from here on.
	syscall.RawSyscall(syscall.SYS_CLOSE, a.waitW, 0, 0)
	code := byte(childOK)
	if atomic.LoadUint32(a.status0) != uint32(ring.StatusValid) || *a.len0 != a.wantLen0 {
		code = childFrame0
	} else {
		// Release: hands frame 0 back to the kernel, as any reader does.
		atomic.StoreUint32(a.status0, uint32(ring.StatusUnused))
		if _, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, a.sock, uintptr(unsafe.Pointer(a.req)), a.reqLen, 0, 0, 0); e != 0 {
			code = childSend
		} else if atomic.LoadUint32(a.status1) != uint32(ring.StatusValid) {
			// Acquire: pairs with the kernel's release of the ack.
			code = childFrame1
		}
	}
	*a.buf = code
	if _, _, e := syscall.RawSyscall(syscall.SYS_WRITE, a.ready, uintptr(unsafe.Pointer(a.buf)), 1); e != 0 {
		code = childReportError
	}
	syscall.RawSyscall(syscall.SYS_READ, a.wait, uintptr(unsafe.Pointer(a.buf)), 1)
	for {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, uintptr(code), 0, 0)
	}
}

// TestMappingSurvivesFork checks that a forked child inherits the mapping
// of the rings: it sees the frame the kernel filled for the parent, the
// frame it releases is released for the parent, and a message the kernel
// delivers because of the child shows up in both mappings. The mapping
// count is 2 while both map the rings, rings cannot be changed while only
// the child still maps them, and they can once the child has exited.
func TestMappingSurvivesFork(t *testing.T) {
	requireRings(t)
	guesttest.NeedsPatch(t, 6) // acks built in the ring (VALID frames)
	rx := mustParams(t, pageSize/4, 4)
	r := newRawRing(t, unix.NETLINK_ROUTE, rx, ring.Params{})
	r.send(t, noopAck(1))
	if st := r.rx.status(0); st != ring.StatusValid {
		t.Fatalf("frame 0 is %v after an ack, want VALID", st)
	}
	if n, ok := mapped(t, r.fd); ok && n != 1 {
		t.Fatalf("before fork: ndrs_mapped = %d, want 1", n)
	}

	var ready, wait [2]int
	for _, p := range []*[2]int{&ready, &wait} {
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatalf("pipe: %v", err)
		}
	}
	req := noopAck(2)
	a := &forkArgs{
		status0: r.rx.word(0, 0), len0: (*uint32)(unsafe.Pointer(&r.rx.payload(0)[0])),
		wantLen0: *(*uint32)(unsafe.Pointer(&r.rx.payload(0)[0])),
		status1:  r.rx.word(1, 0),
		sock:     uintptr(r.fd), req: &req[0], reqLen: uintptr(len(req)),
		ready: uintptr(ready[1]), wait: uintptr(wait[0]), waitW: uintptr(wait[1]),
		buf: new(byte),
	}

	pid, err := forkWithSignalsBlocked(a)
	unix.Close(ready[1])
	unix.Close(wait[0])
	if err != nil {
		unix.Close(ready[0])
		unix.Close(wait[1])
		t.Fatalf("fork: %v", err)
	}
	exited := false
	reap := func() unix.WaitStatus {
		unix.Close(wait[1]) // lets the child exit
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Errorf("wait4 %d: %v", pid, err)
		}
		exited = true
		return ws
	}
	defer func() {
		unix.Close(ready[0])
		if !exited {
			reap()
		}
	}()

	code, err := readByte(ready[0], time.Minute)
	if err != nil {
		ws := reap()
		t.Fatalf("child did not report (%v); wait status %#x", err, ws)
	}
	if code != childOK {
		t.Fatalf("child: %s", childErrors[code])
	}

	// What the child did through its mapping, seen through ours.
	if st := r.rx.status(0); st != ring.StatusUnused {
		t.Errorf("frame 0 is %v after the child released it, want UNUSED", st)
	}
	if st := r.rx.status(1); st != ring.StatusValid {
		t.Fatalf("frame 1 is %v, want VALID with the ack of the child's request (%s)", st, r.rx.statuses())
	}
	if seq, c, _, err := ackOf(r.rx.payload(1)[:r.rx.hdr(1).Len]); err != nil || seq != 2 || c != 0 {
		t.Errorf("frame 1 holds seq %d code %d (%v), want the ack of seq 2", seq, c, err)
	}

	if n, ok := mapped(t, r.fd); ok && n != 2 {
		t.Errorf("parent and child map the rings: ndrs_mapped = %d, want 2", n)
	}
	r.unmap()
	if n, ok := mapped(t, r.fd); ok && n != 1 {
		t.Errorf("only the child maps the rings: ndrs_mapped = %d, want 1", n)
	}
	if err := setRingRaw(r.fd, ring.OptRXRing, teardown); !errors.Is(err, unix.EBUSY) {
		t.Errorf("tear down RX while the child maps it = %v, want EBUSY", err)
	}
	if err := setRingRaw(r.fd, ring.OptTXRing, paramsReq(rx)); !errors.Is(err, unix.EBUSY) {
		t.Errorf("set up TX while the child maps the rings = %v, want EBUSY", err)
	}

	if _, err := unix.Write(wait[1], []byte{0}); err != nil {
		t.Fatalf("telling the child to exit: %v", err)
	}
	if ws := reap(); !ws.Exited() || ws.ExitStatus() != childOK {
		t.Fatalf("child wait status %#x, want exit 0", ws)
	}
	if n, ok := mapped(t, r.fd); ok && n != 0 {
		t.Errorf("after the child exited: ndrs_mapped = %d, want 0", n)
	}
	if err := setRingRaw(r.fd, ring.OptRXRing, teardown); err != nil {
		t.Fatalf("tear down RX after the child exited: %v", err)
	}
	if d := diag(t, r.fd); d.RX != nil {
		t.Errorf("after teardown sock_diag reports RX %v", d.RX)
	}
}

// forkWithSignalsBlocked calls forkMapped on a locked thread with every
// signal blocked, and restores the thread's mask in the parent.
func forkWithSignalsBlocked(a *forkArgs) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	all, old := ^uint64(0), uint64(0)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK,
		uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return 0, e
	}
	pid, e := forkMapped(a)
	syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	runtime.KeepAlive(a)
	if e != 0 {
		return 0, e
	}
	return int(pid), nil
}

// readByte reads one byte from a blocking descriptor, waiting at most d
// for it to become readable.
func readByte(fd int, d time.Duration) (byte, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, int(d.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, errors.New("timed out")
		}
		break
	}
	var b [1]byte
	n, err := unix.Read(fd, b[:])
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("EOF: the child exited without reporting")
	}
	return b[0], nil
}
