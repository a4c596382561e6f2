package ring

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// Constants of the memory-mapped netlink ABI, byte for byte as in
// include/uapi/linux/netlink.h (the part under #ifndef __KERNEL__).
const (
	// SolNetlink is SOL_NETLINK, the setsockopt level of netlink options.
	SolNetlink = 270
	// OptRXRing is NETLINK_RX_RING.
	OptRXRing = 6
	// OptTXRing is NETLINK_TX_RING.
	OptTXRing = 7

	// MsgAlignment is NL_MMAP_MSG_ALIGNMENT: frame sizes are multiples of it.
	MsgAlignment = 4
	// HeaderLen is NL_MMAP_HDRLEN, the size of struct nl_mmap_hdr rounded up
	// to MsgAlignment. A message starts HeaderLen bytes into its frame.
	HeaderLen = 24
	// MinFrameSize is the smallest frame the kernel accepts: a frame
	// header plus one netlink message header (NLMSG_HDRLEN, 16 bytes).
	MinFrameSize = HeaderLen + nlmsgHdrLen

	nlmsgHdrLen = 16
	reqLen      = 16 // sizeof(struct nl_mmap_req)
)

// Status is the nm_status word of a frame (enum nl_mmap_status). It is the
// only word of a frame that both sides write; every access to it is atomic.
type Status uint32

// Frame status values.
const (
	// StatusUnused: the frame is free. RX: the kernel may fill it.
	// TX: user space may write a message into it.
	StatusUnused Status = 0
	// StatusReserved: the kernel has claimed an RX frame and is writing it.
	StatusReserved Status = 1
	// StatusValid: the frame holds a message. RX: written by the kernel,
	// waiting for user space. TX: written by user space, waiting for sendto.
	StatusValid Status = 2
	// StatusCopy: RX only. The message did not go into the frame; it waits
	// on the socket's receive queue and must be read with recvmsg, in ring
	// order. nm_len holds its length.
	StatusCopy Status = 3
	// StatusSkip: RX only. User space keeps the frame; the kernel passes
	// over it until user space stores StatusUnused.
	StatusSkip Status = 4
)

func (s Status) String() string {
	switch s {
	case StatusUnused:
		return "UNUSED"
	case StatusReserved:
		return "RESERVED"
	case StatusValid:
		return "VALID"
	case StatusCopy:
		return "COPY"
	case StatusSkip:
		return "SKIP"
	}
	return fmt.Sprintf("Status(%d)", uint32(s))
}

// Params is struct nl_mmap_req: the geometry of one ring. A ring is
// BlockNr blocks of BlockSize bytes; each block holds BlockSize/FrameSize
// frames, so frame i starts i*FrameSize bytes into the ring.
//
// The zero value (BlockNr == 0) means "no ring"; passed to the kernel it
// tears an existing, unmapped ring down.
type Params struct {
	BlockSize uint32 // nm_block_size: bytes per block, a multiple of the page size
	BlockNr   uint32 // nm_block_nr: number of blocks
	FrameSize uint32 // nm_frame_size: bytes per frame, header included
	FrameNr   uint32 // nm_frame_nr: number of frames, BlockNr*BlockSize/FrameSize
}

// Enabled reports whether p describes a ring (BlockNr != 0).
func (p Params) Enabled() bool { return p.BlockNr != 0 }

// Size is the number of bytes the ring takes in the mapping.
func (p Params) Size() int { return int(p.BlockSize) * int(p.BlockNr) }

// MaxPayload is the largest message a frame of this ring holds.
func (p Params) MaxPayload() int {
	if p.FrameSize < HeaderLen {
		return 0
	}
	return int(p.FrameSize) - HeaderLen
}

func (p Params) String() string {
	return fmt.Sprintf("{block %d x %d, frame %d x %d}", p.BlockSize, p.BlockNr, p.FrameSize, p.FrameNr)
}

// Validate checks p against the rules the kernel applies in
// setsockopt(NETLINK_RX_RING/NETLINK_TX_RING), using the running system's
// page size. The returned error wraps unix.EINVAL, the errno the kernel
// would return, so errors.Is(err, unix.EINVAL) holds.
func (p Params) Validate() error { return p.validate(os.Getpagesize()) }

func (p Params) validate(pageSize int) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ring: invalid ring parameters %v: %s: %w", p, fmt.Sprintf(format, args...), unix.EINVAL)
	}
	if p.BlockNr == 0 {
		// Teardown. Like the 2013 code, a frame count without blocks is
		// rejected: it is the frame count equation below with BlockNr 0.
		if p.FrameNr != 0 {
			return bad("%d frames in 0 blocks", p.FrameNr)
		}
		return nil
	}
	if p.BlockSize == 0 || int(p.BlockSize)%pageSize != 0 {
		return bad("block size is not a non-zero multiple of the page size %d", pageSize)
	}
	if p.FrameSize < MinFrameSize {
		return bad("frame size is below %d (frame header plus netlink header)", MinFrameSize)
	}
	if p.FrameSize%MsgAlignment != 0 {
		return bad("frame size is not a multiple of %d", MsgAlignment)
	}
	if p.BlockSize%p.FrameSize != 0 {
		return bad("block size is not a multiple of the frame size")
	}
	if uint64(p.FrameNr) != uint64(p.BlockNr)*uint64(p.BlockSize/p.FrameSize) {
		return bad("frame count is not %d", uint64(p.BlockNr)*uint64(p.BlockSize/p.FrameSize))
	}
	if uint64(p.BlockSize)*uint64(p.BlockNr) > MaxRingSize {
		return bad("ring larger than %d bytes", MaxRingSize)
	}
	if p.FrameNr > MaxFrames {
		return bad("more than %d frames", MaxFrames)
	}
	return nil
}

// The largest ring the kernel sets up (NETLINK_RING_MAX_SIZE and
// NETLINK_RING_MAX_FRAMES).
const (
	MaxRingSize = 1 << 30
	MaxFrames   = 1 << 16
)

// maxDerivedBlock bounds the block size ParamsFor picks: the kernel
// allocates a block as one physically contiguous chunk where it can, and
// 4 MiB is the largest such chunk on common configurations.
const maxDerivedBlock = 4 << 20

// ParamsFor returns valid ring parameters with frames of exactly frameSize
// bytes (header included) and at least frameCount frames. The block size
// is the smallest multiple of the page size that frames fill exactly; the
// frame count is rounded up to fill the last block.
//
// frameSize must already be valid (at least MinFrameSize, a multiple of
// MsgAlignment); a frame size that divides the page size, or is a multiple
// of it, keeps blocks small.
func ParamsFor(frameSize, frameCount int) (Params, error) {
	return paramsFor(frameSize, frameCount, os.Getpagesize())
}

func paramsFor(frameSize, frameCount, pageSize int) (Params, error) {
	if frameSize < MinFrameSize || frameSize%MsgAlignment != 0 || frameSize > math.MaxUint32 {
		return Params{}, fmt.Errorf("ring: frame size %d: not a multiple of %d of at least %d bytes: %w",
			frameSize, MsgAlignment, MinFrameSize, unix.EINVAL)
	}
	if frameCount <= 0 {
		return Params{}, fmt.Errorf("ring: frame count %d: %w", frameCount, unix.EINVAL)
	}
	block := frameSize / gcd(frameSize, pageSize) * pageSize // lcm
	if block > maxDerivedBlock {
		return Params{}, fmt.Errorf("ring: frame size %d needs %d-byte blocks to fill them exactly; "+
			"use a frame size that divides or is a multiple of the page size %d: %w",
			frameSize, block, pageSize, unix.EINVAL)
	}
	perBlock := block / frameSize
	blocks := (frameCount + perBlock - 1) / perBlock
	if uint64(blocks)*uint64(block) > math.MaxUint32 {
		return Params{}, fmt.Errorf("ring: %d frames of %d bytes overflow 32 bits: %w", frameCount, frameSize, unix.EINVAL)
	}
	p := Params{
		BlockSize: uint32(block),
		BlockNr:   uint32(blocks),
		FrameSize: uint32(frameSize),
		FrameNr:   uint32(blocks * perBlock),
	}
	return p, p.validate(pageSize)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// marshal encodes p as struct nl_mmap_req in host byte order.
func (p Params) marshal() []byte {
	b := make([]byte, reqLen)
	binary.NativeEndian.PutUint32(b[0:], p.BlockSize)
	binary.NativeEndian.PutUint32(b[4:], p.BlockNr)
	binary.NativeEndian.PutUint32(b[8:], p.FrameSize)
	binary.NativeEndian.PutUint32(b[12:], p.FrameNr)
	return b
}

// Config selects the rings of a Conn. A zero Params means no ring of that
// kind: a Conn may have an RX ring, a TX ring, or both.
type Config struct {
	RX Params
	TX Params
}

// Validate checks both rings and that at least one is enabled.
func (c Config) Validate() error {
	if !c.RX.Enabled() && !c.TX.Enabled() {
		return fmt.Errorf("ring: config has neither an RX nor a TX ring: %w", unix.EINVAL)
	}
	if err := c.RX.Validate(); err != nil {
		return fmt.Errorf("RX: %w", err)
	}
	if err := c.TX.Validate(); err != nil {
		return fmt.Errorf("TX: %w", err)
	}
	if uint64(c.RX.Size())+uint64(c.TX.Size()) > math.MaxInt {
		return fmt.Errorf("ring: RX plus TX size overflows: %w", unix.EINVAL)
	}
	return nil
}
