package ring

// This is the only file of the package that imports unsafe. It turns a
// byte offset into the mapping into a typed view of struct nl_mmap_hdr, and
// makes the one system call x/sys/unix has no wrapper for.

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmapHdr mirrors struct nl_mmap_hdr. The kernel and user space share it
// through the mapping, in host byte order.
//
// status is written by both sides and is only ever accessed with
// sync/atomic (see load and store). The other fields are written by one
// side before it stores a status that hands the frame to the other side,
// and read by the other side after it loaded that status, so plain
// accesses are ordered by the status atomics.
type mmapHdr struct {
	status uint32 // nm_status
	len    uint32 // nm_len
	group  uint32 // nm_group
	pid    uint32 // nm_pid
	uid    uint32 // nm_uid
	gid    uint32 // nm_gid
}

// The header must keep the kernel's layout.
var _ [HeaderLen - unsafe.Sizeof(mmapHdr{})]struct{}
var _ [unsafe.Sizeof(mmapHdr{}) - HeaderLen]struct{}

// hdrAt returns the header of the frame starting at off in mem. It panics
// if the header is out of range or not 4-byte aligned (atomics need that;
// frame sizes are multiples of 4 and mappings are page aligned, so only a
// bug gets there).
func hdrAt(mem []byte, off int) *mmapHdr {
	b := mem[off : off+HeaderLen : off+HeaderLen]
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%4 != 0 {
		panic(fmt.Sprintf("ring: frame header at offset %d is not 4-byte aligned", off))
	}
	return (*mmapHdr)(p)
}

// load reads the status word with acquire ordering: everything the other
// side wrote before its store of this status is visible afterwards. Go's
// atomics are sequentially consistent, which implies acquire.
func (h *mmapHdr) load() Status { return Status(atomic.LoadUint32(&h.status)) }

// store writes the status word with release ordering: everything this side
// wrote to the frame before is visible to whoever loads this status. Go's
// atomics are sequentially consistent, which implies release.
func (h *mmapHdr) store(s Status) { atomic.StoreUint32(&h.status, uint32(s)) }

// cas replaces the status old with new if it still is old. The kernel
// writes status words with plain stores, so a successful cas can still be
// followed by a kernel store that read old before it; callers must allow
// for that.
func (h *mmapHdr) cas(old, new Status) bool {
	return atomic.CompareAndSwapUint32(&h.status, uint32(old), uint32(new))
}

// alignedBytes returns n zeroed bytes aligned to 8, for rings that live in
// ordinary memory (the fakes of the tests).
func alignedBytes(n int) []byte {
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), n)
}

// sendtoEmpty makes the TX-ring kick exactly as the kernel contract spells
// it: sendto(fd, NULL, 0, 0, dst, sizeof(*dst)), or send(fd, NULL, 0, 0)
// when dst is nil. unix.Sendto would pass a non-NULL pointer for an empty
// buffer.
func sendtoEmpty(fd int, dst *unix.SockaddrNetlink) error {
	var errno unix.Errno
	if dst == nil {
		_, _, errno = unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, 0, 0, 0)
	} else {
		raw := unix.RawSockaddrNetlink{Family: unix.AF_NETLINK, Pid: dst.Pid, Groups: dst.Groups}
		// The pointer is converted in the call expression itself, as
		// unsafe.Pointer rule (4) requires for system calls.
		_, _, errno = unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, 0,
			uintptr(unsafe.Pointer(&raw)), unsafe.Sizeof(raw))
	}
	if errno != 0 {
		return errno
	}
	return nil
}
