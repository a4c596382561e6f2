package txring

// The single-threaded sender ("solo").
//
// An earlier version of the series processed a TX frame in place when it
// believed nobody but the sending thread could write to it: the sender is
// the only user of its address space, the rings are mapped exactly once,
// by the sending process, that mapping was not inherited through fork(),
// and the socket's file is referenced by one descriptor only. Review found
// writers those conditions do not exclude, so the kernel now copies every
// frame. The tests that use this file check that meeting every one of
// those conditions does not bring an in-place path back: a Go process
// always runs several threads, so to meet them a test forks a child that
// is single threaded and never re-enters the Go runtime. While such a
// child waits inside sendto, the parent can also rewrite its frames
// through /proc/<pid>/mem (a writer that none of the conditions excludes)
// to show that the kernel works on its copy.
//
// How the child stays safe, following syscall.forkAndExecInChild:
//
//   - It runs only //go:nosplit functions that make raw system calls
//     (syscall.RawSyscall6, which is nosplit and ends in assembly) and
//     plain loads and stores: no allocation, no stack growth, no
//     scheduler, no locks. Whatever locks other threads of the parent held
//     at the fork stay held in the child's copy, and it never touches
//     them. The linker checks that the nosplit chain fits the stack guard.
//     To check that nothing else crept in: go test -c, then
//     go tool objdump -s 'txring\.solo' on the binary shows calls to
//     syscall.RawSyscall/RawSyscall6 and to the solo functions only (no
//     runtime.morestack, no panics, no memmove).
//   - All signals are blocked on the forking thread across clone(), so the
//     child starts with every signal blocked and no Go signal handler can
//     run in it. Only SIGSTOP and SIGKILL reach it, and the parent uses
//     exactly those to drive it.
//   - It touches only memory the parent prepared before the fork: a plan
//     (soloPlan) in a MAP_SHARED|MAP_ANONYMOUS mapping, through which the
//     results come back, and a PROT_NONE reservation (also from mmap, not
//     the Go heap) over which the child maps its rings with MAP_FIXED, so
//     the child never turns an integer into a pointer. The plan holds no
//     pointers, so no write barrier is ever needed.
//   - It ends in exit_group; it never returns into Go code.
//
// The parent waits for the child to stop itself (SIGSTOP) once it has
// sent and collected the answers. While the child is stopped its socket
// is still open, and the parent reads the socket's counters through
// sock_diag; then it lets the child exit with SIGCONT and reaps it.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

const (
	soloMaxFrames = 8         // TX frames the child fills
	soloMaxSends  = 4         // sendto calls the child makes
	soloReqCap    = 16 << 10  // bytes of requests
	soloRXCap     = 128 << 10 // bytes of RX ring the child copies back
	soloQueueCap  = 64 << 10  // bytes of datagrams read with recvfrom
	soloMaxQueued = 64        // datagrams read with recvfrom
)

// Flags of a plan.
const (
	soloMapTwice = 1 << iota // map the rings a second time before sending
	soloInherit              // use the socket and mapping inherited from the parent
	soloDup                  // dup() the socket before sending
)

// Steps of the child, reported in soloPlan.failStep when one fails.
const (
	stepNone = iota
	stepSocket
	stepRXRing
	stepTXRing
	stepMmap
	stepMmap2
	stepDup
	stepStop
	stepFstat
	stepSndbuf
)

var stepNames = [...]string{"none", "socket", "setsockopt NETLINK_RX_RING", "setsockopt NETLINK_TX_RING",
	"mmap", "second mmap", "dup", "kill SIGSTOP", "fstat", "setsockopt SO_SNDBUF"}

// soloNotYet is in soloPlan.sendRet[s] until sendto call s returns.
const soloNotYet = -1 << 62

// soloPlan is shared between the parent and the child. It holds no
// pointers (see the top of the file).
type soloPlan struct {
	// Written by the parent before the fork.
	proto    uint32
	flags    uint32
	fd       int32     // soloInherit: the inherited socket
	polls    uint32    // poll(POLLIN, 0) calls after the sends: they continue a dump
	sends    uint32    // sendto calls
	sndbuf   int32     // SO_SNDBUF to set before sending, if not 0
	rx, tx   [4]uint32 // struct nl_mmap_req of each ring (block size, block nr, frame size, frame nr)
	nframes  uint32
	frameOff [soloMaxFrames]uint32 // TX frame i gets req[frameOff[i]:][:frameLen[i]]
	frameLen [soloMaxFrames]uint32
	nmLen    [soloMaxFrames]uint32                 // and this nm_len
	dst      [soloMaxSends]unix.RawSockaddrNetlink // of each sendto
	req      [soloReqCap]byte

	// Written by the child before it stops or exits.
	failStep  uint32
	errno     uint32
	sendRet   [soloMaxSends]int64                 // sendto's result, or -errno (atomic: the parent watches it)
	txStatus  [soloMaxSends][soloMaxFrames]uint32 // the TX frames' status after each sendto
	revents   [soloMaxSends]int16                 // poll(POLLIN|POLLOUT, 0) after each sendto
	stat      unix.Stat_t
	nqueued   uint32
	queuedLen [soloMaxQueued]uint32
	rxCopy    [soloRXCap]byte    // the RX ring after the sends and polls
	queue     [soloQueueCap]byte // datagrams read with recvfrom, back to back
}

// soloConfig says what the child does.
type soloConfig struct {
	proto  int
	rx, tx ring.Params
	flags  uint32 // soloMapTwice, soloDup
	// frames are the datagrams for TX frames 0, 1, ...; nmLen, if set,
	// overrides the nm_len the child writes for each.
	frames [][]byte
	nmLen  []uint32
	sends  int // sendto calls; 0 means 1
	polls  int
	// dstPort is the port ID the child sends to (0: the kernel);
	// dstPorts, if set, has one for each sendto.
	dstPort  uint32
	dstPorts []uint32
	// sndbuf, if set, is the SO_SNDBUF the child sets before it sends.
	sndbuf int
	// duringSend, if set, runs in the parent while the child sends:
	// the caller arranges for the child to block in its sendto.
	duringSend func(ch *soloChild)

	// inherit, when set, is a Conn of the parent whose socket and mapping
	// the child uses instead of making its own (rx and tx are ignored);
	// beforeSend then runs in the parent after the fork and before the
	// child sends (for example to close the parent's copy).
	inherit    *ring.Conn
	beforeSend func()
}

// soloResult is what the child saw and what sock_diag said about its
// socket while the child was stopped.
type soloResult struct {
	sendRet   []int64         // per sendto: bytes sent or -errno
	txStatus  [][]ring.Status // per sendto: the filled frames' status after it
	revents   []int16         // per sendto: poll events right after it
	datagrams []datagram      // the RX ring's datagrams in ring order
	diag      sockDiag
}

// runSolo forks a single-threaded child that sends cfg.frames from its TX
// ring and returns what happened.
func runSolo(t *testing.T, cfg soloConfig) soloResult {
	t.Helper()
	if len(cfg.frames) > soloMaxFrames || cfg.sends > soloMaxSends {
		t.Fatalf("solo: %d frames, %d sends: too many", len(cfg.frames), cfg.sends)
	}
	if cfg.sends == 0 {
		cfg.sends = 1
	}

	shared, err := unix.Mmap(-1, 0, int(unsafe.Sizeof(soloPlan{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap shared page: %v", err)
	}
	defer unix.Munmap(shared)
	p := (*soloPlan)(unsafe.Pointer(unsafe.SliceData(shared)))

	p.proto = uint32(cfg.proto)
	p.flags = cfg.flags
	p.polls = uint32(cfg.polls)
	p.sends = uint32(cfg.sends)
	p.sndbuf = int32(cfg.sndbuf)
	for s := range p.sendRet {
		p.sendRet[s] = soloNotYet
		p.dst[s] = unix.RawSockaddrNetlink{Family: unix.AF_NETLINK, Pid: cfg.dstPort}
		if s < len(cfg.dstPorts) {
			p.dst[s].Pid = cfg.dstPorts[s]
		}
	}
	rx, tx := cfg.rx, cfg.tx
	var area unsafe.Pointer
	if cfg.inherit != nil {
		rx, tx = cfg.inherit.RX(), cfg.inherit.TX()
		p.flags |= soloInherit
		p.fd = int32(connFD(t, cfg.inherit))
		area = connMapping(t, cfg.inherit)
	} else {
		// Room for two mappings of the rings (soloMapTwice); the child
		// maps over it with MAP_FIXED.
		res, err := unix.Mmap(-1, 0, 2*(rx.Size()+tx.Size()), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			t.Fatalf("mmap reservation: %v", err)
		}
		defer unix.Munmap(res)
		area = unsafe.Pointer(unsafe.SliceData(res))
	}
	if rx.Size() > soloRXCap {
		t.Fatalf("solo: RX ring of %d bytes, the plan holds %d", rx.Size(), soloRXCap)
	}
	p.rx = [4]uint32{rx.BlockSize, rx.BlockNr, rx.FrameSize, rx.FrameNr}
	p.tx = [4]uint32{tx.BlockSize, tx.BlockNr, tx.FrameSize, tx.FrameNr}
	off := 0
	for i, f := range cfg.frames {
		if off+len(f) > soloReqCap || len(f) > tx.MaxPayload() || i >= int(tx.FrameNr) {
			t.Fatalf("solo: frame %d (%d bytes) does not fit", i, len(f))
		}
		copy(p.req[off:], f)
		p.frameOff[i], p.frameLen[i], p.nmLen[i] = uint32(off), uint32(len(f)), uint32(len(f))
		if i < len(cfg.nmLen) {
			p.nmLen[i] = cfg.nmLen[i]
		}
		off += len(f)
	}
	p.nframes = uint32(len(cfg.frames))

	pid, err := soloFork(p, area)
	if err != nil {
		t.Fatalf("fork: %v", err)
	}
	reaped := false
	defer func() {
		if !reaped {
			soloKill(pid)
		}
	}()

	if cfg.inherit != nil {
		// The child stops before it sends.
		if ws := soloWait(t, pid); !ws.Stopped() {
			t.Fatalf("solo child: %s", soloExit(p, ws))
		}
		if cfg.beforeSend != nil {
			cfg.beforeSend()
		}
		if err := unix.Kill(pid, unix.SIGCONT); err != nil {
			t.Fatalf("SIGCONT: %v", err)
		}
	}
	if cfg.duringSend != nil {
		ch := &soloChild{t: t, pid: pid, plan: p, tx: uintptr(area) + uintptr(rx.Size()), txp: tx}
		func() {
			defer ch.close()
			cfg.duringSend(ch)
		}()
		if t.Failed() {
			return soloResult{}
		}
	}
	if ws := soloWait(t, pid); !ws.Stopped() {
		reaped = true
		t.Fatalf("solo child: %s", soloExit(p, ws))
	}

	var r soloResult
	r.diag = diagSocket(t, cfg.proto, uint32(p.stat.Ino))
	if err := unix.Kill(pid, unix.SIGCONT); err != nil {
		t.Fatalf("SIGCONT: %v", err)
	}
	ws := soloWait(t, pid)
	reaped = true
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("solo child: %s", soloExit(p, ws))
	}

	for s := 0; s < cfg.sends; s++ {
		r.sendRet = append(r.sendRet, p.sendRet[s])
		r.revents = append(r.revents, p.revents[s])
		var st []ring.Status
		for i := range cfg.frames {
			st = append(st, ring.Status(p.txStatus[s][i]))
		}
		r.txStatus = append(r.txStatus, st)
	}
	r.datagrams = soloDatagrams(t, p, rx)
	return r
}

// A soloChild is the parent's handle on a child that is sending, for
// soloConfig.duringSend. It reads and writes the child's TX frames
// through /proc/<pid>/mem, like a debugger would: a write into the
// child's memory that no condition checked at sendto time excludes.
type soloChild struct {
	t    *testing.T
	pid  int
	plan *soloPlan
	tx   uintptr // the child's TX ring, at the same address as in the parent's reservation
	txp  ring.Params
	mem  *os.File
}

func (ch *soloChild) close() {
	if ch.mem != nil {
		ch.mem.Close()
	}
}

func (ch *soloChild) file() *os.File {
	if ch.mem == nil {
		f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", ch.pid), os.O_RDWR, 0)
		if err != nil {
			ch.t.Fatalf("open the child's memory: %v", err)
		}
		ch.mem = f
	}
	return ch.mem
}

func (ch *soloChild) frameAddr(i int) int64 {
	if i < 0 || i >= int(ch.txp.FrameNr) {
		ch.t.Fatalf("TX frame %d of %d", i, ch.txp.FrameNr)
	}
	return int64(ch.tx + uintptr(i)*uintptr(ch.txp.FrameSize))
}

// txHeader returns nm_status and nm_len of the child's TX frame i.
func (ch *soloChild) txHeader(i int) (ring.Status, uint32) {
	ch.t.Helper()
	var h [8]byte
	if _, err := ch.file().ReadAt(h[:], ch.frameAddr(i)); err != nil {
		ch.t.Fatalf("read the child's TX frame %d: %v", i, err)
	}
	return ring.Status(binary.NativeEndian.Uint32(h[:])), binary.NativeEndian.Uint32(h[4:])
}

// writeTX writes msg into the child's TX frame i and sets its nm_len,
// leaving its status alone.
func (ch *soloChild) writeTX(i int, msg []byte, nmLen uint32) {
	ch.t.Helper()
	if len(msg) > ch.txp.MaxPayload() {
		ch.t.Fatalf("%d bytes do not fit TX frame %d", len(msg), i)
	}
	addr := ch.frameAddr(i)
	if _, err := ch.file().WriteAt(msg, addr+ring.HeaderLen); err != nil {
		ch.t.Fatalf("write the child's TX frame %d: %v", i, err)
	}
	if _, err := ch.file().WriteAt(binary.NativeEndian.AppendUint32(nil, nmLen), addr+4); err != nil {
		ch.t.Fatalf("write nm_len of the child's TX frame %d: %v", i, err)
	}
	// Read it back: the write went to the frame the child has mapped.
	back := make([]byte, len(msg))
	if _, err := ch.file().ReadAt(back, addr+ring.HeaderLen); err != nil {
		ch.t.Fatalf("read the child's TX frame %d back: %v", i, err)
	}
	if _, n := ch.txHeader(i); n != nmLen || !bytes.Equal(back, msg) {
		ch.t.Fatalf("the child's TX frame %d reads back nm_len %d, %q; wrote %d, %q", i, n, back, nmLen, msg)
	}
}

// setTXStatus stores st into nm_status of the child's TX frame i. The
// kernel's acquire load of the status is not paired here the way a store
// in the child would pair it, so call it only while the kernel is not
// looking at the ring (the child waits in sendto for something else):
// the system calls in between order it.
func (ch *soloChild) setTXStatus(i int, st ring.Status) {
	ch.t.Helper()
	if _, err := ch.file().WriteAt(binary.NativeEndian.AppendUint32(nil, uint32(st)), ch.frameAddr(i)); err != nil {
		ch.t.Fatalf("write nm_status of the child's TX frame %d: %v", i, err)
	}
}

// returned reports whether sendto call s of the child has returned.
func (ch *soloChild) returned(s int) bool {
	return atomic.LoadInt64(&ch.plan.sendRet[s]) != soloNotYet
}

// waitBlockedInSend waits until the child sleeps inside sendto call s
// and TX frame i is UNUSED again, that is, until the kernel took the
// frame and then had to wait (for room at the receiver, as arranged by
// the caller). It fails t if sendto returns instead.
func (ch *soloChild) waitBlockedInSend(s, i int) {
	ch.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		if ch.returned(s) {
			ch.t.Fatalf("the child's sendto %d returned %d; it was meant to wait", s, atomic.LoadInt64(&ch.plan.sendRet[s]))
		}
		// "<nr> <args>..." while the task sleeps in a system call,
		// "running" while it runs.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", ch.pid))
		if err != nil {
			ch.t.Fatalf("read the child's /proc/pid/syscall: %v", err)
		}
		inSend := strings.HasPrefix(string(b), fmt.Sprintf("%d ", unix.SYS_SENDTO))
		if st, _ := ch.txHeader(i); inSend && st == ring.StatusUnused {
			return
		}
		if time.Now().After(deadline) {
			st, n := ch.txHeader(i)
			ch.t.Fatalf("the child did not wait in sendto with TX frame %d handed back within %v: syscall %q, frame %v nm_len %d",
				i, hangGuard, strings.TrimSpace(string(b)), st, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// soloDatagrams walks the copy of the child's RX ring in ring order,
// taking the datagram of a COPY frame from the ones the child read with
// recvfrom.
func soloDatagrams(t *testing.T, p *soloPlan, rx ring.Params) []datagram {
	t.Helper()
	var ds []datagram
	queue, q := p.queue[:], 0
	for i := 0; i < int(rx.FrameNr); i++ {
		fr := p.rxCopy[i*int(rx.FrameSize) : (i+1)*int(rx.FrameSize)]
		status := ring.Status(binary.NativeEndian.Uint32(fr))
		n := int(binary.NativeEndian.Uint32(fr[4:]))
		switch status {
		case ring.StatusValid:
			if n > rx.MaxPayload() {
				t.Fatalf("child's RX frame %d: VALID with nm_len %d > %d", i, n, rx.MaxPayload())
			}
			ds = append(ds, datagram{data: append([]byte(nil), fr[ring.HeaderLen:ring.HeaderLen+n]...)})
			continue
		case ring.StatusCopy:
			if q >= int(p.nqueued) {
				t.Fatalf("child's RX frame %d: COPY, but only %d datagrams were queued", i, p.nqueued)
			}
			l := int(p.queuedLen[q])
			if l != n {
				t.Errorf("child's RX frame %d: COPY with nm_len %d, queued datagram of %d bytes", i, n, l)
			}
			ds = append(ds, datagram{data: append([]byte(nil), queue[:l]...), copied: true})
			queue, q = queue[l:], q+1
			continue
		case ring.StatusSkip:
			continue
		}
		break // UNUSED or RESERVED: the child took nothing more
	}
	if q != int(p.nqueued) {
		t.Errorf("child read %d datagrams from the receive queue, the RX ring announced %d", p.nqueued, q)
	}
	return ds
}

func soloExit(p *soloPlan, ws unix.WaitStatus) string {
	if ws.Exited() && p.failStep != stepNone && int(p.failStep) < len(stepNames) {
		return fmt.Sprintf("%s failed: %v", stepNames[p.failStep], unix.Errno(p.errno))
	}
	if ws.Signaled() {
		return fmt.Sprintf("killed by %v", ws.Signal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

// soloWait waits for the child to stop or exit. If it does neither
// within hangGuard, it fails t with what /proc says about the child (the
// system call it is stuck in) and kills it.
func soloWait(t testing.TB, pid int) unix.WaitStatus {
	t.Helper()
	done := make(chan unix.WaitStatus, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, unix.WUNTRACED, nil)
			if err != unix.EINTR {
				done <- ws
				return
			}
		}
	}()
	select {
	case ws := <-done:
		return ws
	case <-time.After(hangGuard):
	}
	var info []string
	for _, f := range []string{"stat", "syscall", "wchan", "stack"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err == nil {
			info = append(info, fmt.Sprintf("%s: %s", f, strings.TrimSpace(string(b))))
		}
	}
	soloKill(pid)
	t.Fatalf("solo child %d neither stopped nor exited within %v; %s", pid, hangGuard, strings.Join(info, "; "))
	return 0
}

// soloKill kills the child and reaps it, unless it is stuck in the
// kernel for good.
func soloKill(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	done := make(chan struct{})
	go func() {
		var ws unix.WaitStatus
		for {
			if _, err := unix.Wait4(pid, &ws, 0, nil); err != unix.EINTR {
				close(done)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(hangGuard):
	}
}

// connMapping returns the start of c's mapping (the RX ring first, then
// the TX ring).
func connMapping(t *testing.T, c *ring.Conn) unsafe.Pointer {
	t.Helper()
	get := c.RawRX
	if !c.RX().Enabled() {
		get = c.RawTX
	}
	f, err := get(0)
	if err != nil {
		t.Fatal(err)
	}
	return unsafe.Add(unsafe.Pointer(unsafe.SliceData(f.Payload())), -ring.HeaderLen)
}

// soloFork forks the child, which runs soloMain on p and area.
func soloFork(p *soloPlan, area unsafe.Pointer) (int, error) {
	// Keep this goroutine on its thread while that thread's signal mask
	// is changed, and keep os/exec from forking meanwhile.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()

	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return 0, fmt.Errorf("block signals: %w", err)
	}
	pid, errno := soloClone(p, area)
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil); err != nil {
		panic(fmt.Sprintf("restore the signal mask: %v", err))
	}
	if errno != 0 {
		return 0, errno
	}
	return int(pid), nil
}

// soloClone is fork(): clone(SIGCHLD) with no other flag, so the child
// gets its own copy of the address space and of the descriptor table. In
// the child it does not return.
//
//go:nosplit
//go:norace
func soloClone(p *soloPlan, area unsafe.Pointer) (uintptr, syscall.Errno) {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if errno != 0 || pid != 0 {
		return pid, errno
	}
	soloMain(p, area)
	return 0, 0 // not reached
}

// Raw values the child passes to the kernel.
const (
	solNetlink    = ring.SolNetlink
	optRXRing     = ring.OptRXRing
	optTXRing     = ring.OptTXRing
	sizeofMmapReq = 16
	statusValid   = uint32(ring.StatusValid)
)

// soloMain is the child. It runs on the stack of the goroutine that
// forked it, with no Go runtime behind it: see the top of the file for the
// rules.
//
//go:nosplit
//go:norace
func soloMain(p *soloPlan, area unsafe.Pointer) {
	rxSize := uintptr(p.rx[0]) * uintptr(p.rx[1])
	txSize := uintptr(p.tx[0]) * uintptr(p.tx[1])
	fd := uintptr(p.fd)

	if p.flags&soloInherit != 0 {
		// Let the parent arrange who else holds the socket first.
		soloStop(p)
	} else {
		r, _, e := syscall.RawSyscall(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, uintptr(p.proto))
		if e != 0 {
			soloFail(p, stepSocket, e)
		}
		fd = r
		if rxSize != 0 {
			_, _, e = syscall.RawSyscall6(unix.SYS_SETSOCKOPT, fd, solNetlink, optRXRing, uintptr(unsafe.Pointer(&p.rx)), sizeofMmapReq, 0)
			if e != 0 {
				soloFail(p, stepRXRing, e)
			}
		}
		if txSize != 0 {
			_, _, e = syscall.RawSyscall6(unix.SYS_SETSOCKOPT, fd, solNetlink, optTXRing, uintptr(unsafe.Pointer(&p.tx)), sizeofMmapReq, 0)
			if e != 0 {
				soloFail(p, stepTXRing, e)
			}
		}
		_, _, e = syscall.RawSyscall6(unix.SYS_MMAP, uintptr(area), rxSize+txSize, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_SHARED|unix.MAP_FIXED, fd, 0)
		if e != 0 {
			soloFail(p, stepMmap, e)
		}
		if p.flags&soloMapTwice != 0 {
			_, _, e = syscall.RawSyscall6(unix.SYS_MMAP, uintptr(unsafe.Add(area, rxSize+txSize)), rxSize+txSize,
				unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED, fd, 0)
			if e != 0 {
				soloFail(p, stepMmap2, e)
			}
		}
		if p.flags&soloDup != 0 {
			_, _, e = syscall.RawSyscall(unix.SYS_DUP, fd, 0, 0)
			if e != 0 {
				soloFail(p, stepDup, e)
			}
		}
	}
	if p.sndbuf != 0 {
		_, _, e := syscall.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_SNDBUF,
			uintptr(unsafe.Pointer(&p.sndbuf)), 4, 0)
		if e != 0 {
			soloFail(p, stepSndbuf, e)
		}
	}

	// Fill the TX frames: message, nm_len, then VALID with a release
	// store (Go's atomics are sequentially consistent), which pairs with
	// the kernel's acquire load of the status in netlink_tx_next().
	tx := unsafe.Add(area, rxSize)
	frameSize := uintptr(p.tx[2])
	for i := uint32(0); i < p.nframes && i < soloMaxFrames; i++ {
		frame := unsafe.Add(tx, uintptr(i)*frameSize)
		soloCopy(unsafe.Add(frame, ring.HeaderLen), unsafe.Add(unsafe.Pointer(&p.req), p.frameOff[i]), uintptr(p.frameLen[i]))
		*(*uint32)(unsafe.Add(frame, 4)) = p.nmLen[i]
		atomic.StoreUint32((*uint32)(frame), statusValid)
	}

	var pfd unix.PollFd
	pfd.Fd = int32(fd)
	for s := uint32(0); s < p.sends && s < soloMaxSends; s++ {
		// A blocking sendto: a receiver whose queue is full makes it
		// wait (the parent's duringSend relies on it).
		r, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, fd, 0, 0, 0,
			uintptr(unsafe.Pointer(&p.dst[s])), unix.SizeofSockaddrNetlink)
		for i := uint32(0); i < p.nframes && i < soloMaxFrames; i++ {
			p.txStatus[s][i] = atomic.LoadUint32((*uint32)(unsafe.Add(tx, uintptr(i)*frameSize)))
		}
		pfd.Events = unix.POLLIN | unix.POLLOUT
		pfd.Revents = 0
		syscall.RawSyscall(unix.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, 0)
		p.revents[s] = pfd.Revents
		// Last: the parent takes it as the end of call s.
		if e != 0 {
			atomic.StoreInt64(&p.sendRet[s], -int64(e))
		} else {
			atomic.StoreInt64(&p.sendRet[s], int64(r))
		}
	}

	// poll() continues a dump that waits for room in the RX ring.
	pfd.Events = unix.POLLIN
	for i := uint32(0); i < p.polls; i++ {
		syscall.RawSyscall(unix.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, 0)
	}

	// Everything the kernel answered is in the RX ring and the receive
	// queue by now: the kernel handled the requests inside sendto and
	// poll. Copy both out for the parent.
	if rxSize <= soloRXCap {
		soloCopy(unsafe.Pointer(&p.rxCopy), area, rxSize)
	}
	used, n := uintptr(0), uint32(0)
	for n < soloMaxQueued && used < soloQueueCap {
		r, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Add(unsafe.Pointer(&p.queue), used)),
			soloQueueCap-used, unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			break
		}
		p.queuedLen[n] = uint32(r)
		n++
		used += r
	}
	p.nqueued = n

	_, _, e := syscall.RawSyscall(unix.SYS_FSTAT, fd, uintptr(unsafe.Pointer(&p.stat)), 0)
	if e != 0 {
		soloFail(p, stepFstat, e)
	}

	soloStop(p) // the parent reads the socket's counters now
	soloExitGroup(0)
}

// soloStop stops the child until the parent sends SIGCONT.
//
//go:nosplit
//go:norace
func soloStop(p *soloPlan) {
	pid, _, _ := syscall.RawSyscall(unix.SYS_GETPID, 0, 0, 0)
	if _, _, e := syscall.RawSyscall(unix.SYS_KILL, pid, uintptr(unix.SIGSTOP), 0); e != 0 {
		soloFail(p, stepStop, e)
	}
}

//go:nosplit
//go:norace
func soloFail(p *soloPlan, step uint32, e syscall.Errno) {
	p.failStep = step
	p.errno = uint32(e)
	soloExitGroup(3)
}

//go:nosplit
//go:norace
func soloExitGroup(code uintptr) {
	for {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, code, 0, 0)
	}
}

// soloCopy copies n bytes, one at a time: no call into the runtime.
//
//go:nosplit
//go:norace
func soloCopy(dst, src unsafe.Pointer, n uintptr) {
	for i := uintptr(0); i < n; i++ {
		*(*byte)(unsafe.Add(dst, i)) = *(*byte)(unsafe.Add(src, i))
	}
}
