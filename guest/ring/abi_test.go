package ring

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestABIConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"SOL_NETLINK", SolNetlink, unix.SOL_NETLINK},
		{"NETLINK_RX_RING", OptRXRing, unix.NETLINK_RX_RING},
		{"NETLINK_TX_RING", OptTXRing, unix.NETLINK_TX_RING},
		{"NLMSG_HDRLEN", nlmsgHdrLen, unix.NLMSG_HDRLEN},
		{"NL_MMAP_MSG_ALIGNMENT", MsgAlignment, unix.NLMSG_ALIGNTO},
		{"sizeof(struct nl_mmap_hdr)", int(unsafe.Sizeof(mmapHdr{})), 24},
		{"NL_MMAP_HDRLEN", HeaderLen, (24 + MsgAlignment - 1) &^ (MsgAlignment - 1)},
		{"UNUSED", int(StatusUnused), 0},
		{"RESERVED", int(StatusReserved), 1},
		{"VALID", int(StatusValid), 2},
		{"COPY", int(StatusCopy), 3},
		{"SKIP", int(StatusSkip), 4},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestParamsMarshal(t *testing.T) {
	p := Params{BlockSize: 0x1000, BlockNr: 2, FrameSize: 0x800, FrameNr: 4}
	b := p.marshal()
	if len(b) != 16 {
		t.Fatalf("struct nl_mmap_req is %d bytes, want 16", len(b))
	}
	for i, want := range []uint32{0x1000, 2, 0x800, 4} {
		if got := binary.NativeEndian.Uint32(b[4*i:]); got != want {
			t.Errorf("field %d = %#x, want %#x", i, got, want)
		}
	}
}

func TestParamsValidate(t *testing.T) {
	const page = 4096
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"teardown", Params{}, true},
		{"teardown ignores sizes", Params{BlockSize: 123, FrameSize: 7}, true},
		{"teardown with frames", Params{FrameNr: 1}, false},
		{"one page, two frames", Params{page, 1, page / 2, 2}, true},
		{"frame is the block", Params{page, 3, page, 3}, true},
		{"big frames", Params{4 * page, 2, 2 * page, 4}, true},
		{"smallest frame", Params{page, 1, 64, 64}, true},
		{"block size zero", Params{0, 1, 64, 0}, false},
		{"block not page aligned", Params{page + 4, 1, page + 4, 1}, false},
		{"frame below header+nlmsghdr", Params{page, 1, 32, 128}, false},
		{"frame exactly header+nlmsghdr", Params{40 * page, 1, 40, 4096}, true},
		{"frame misaligned", Params{page, 1, 42, 97}, false},
		{"frames do not fill block", Params{page, 1, 3000, 1}, false},
		{"frame larger than block", Params{page, 1, 2 * page, 0}, false},
		{"frame count too small", Params{page, 2, page / 2, 3}, false},
		{"frame count too big", Params{page, 2, page / 2, 5}, false},
		{"size overflows", Params{1 << 20, 1 << 12, 1 << 20, 1 << 12}, false},
		{"frame count overflows", Params{page, math.MaxUint32, 64, math.MaxUint32}, false},
		{"1 GiB", Params{1 << 20, 1 << 10, 1 << 20, 1 << 10}, true},
		{"1 GiB and a block", Params{1 << 20, 1<<10 + 1, 1 << 20, 1<<10 + 1}, false},
		{"65536 frames", Params{page, 1 << 10, 64, 1 << 16}, true},
		{"65600 frames", Params{page, 1<<10 + 1, 64, (1<<10 + 1) * 64}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.validate(page)
			if tt.ok && err != nil {
				t.Fatalf("validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, unix.EINVAL) {
				t.Fatalf("validate = %v, want EINVAL", err)
			}
		})
	}
}

func TestParamsFor(t *testing.T) {
	const page = 4096
	tests := []struct {
		size, count int
		want        Params
		ok          bool
	}{
		{2048, 8, Params{page, 4, 2048, 8}, true},
		{2048, 5, Params{page, 3, 2048, 6}, true},
		{page, 3, Params{page, 3, page, 3}, true},
		{16384, 2, Params{16384, 2, 16384, 2}, true},
		{6144, 1, Params{3 * page, 1, 6144, 2}, true},
		{40, 1, Params{5 * page, 1, 40, 512}, true}, // lcm(4096, 40)
		{36, 1, Params{}, false},                    // below the minimum
		{42, 1, Params{}, false},                    // misaligned
		{4100, 1, Params{}, false},                  // would need a 4 MiB+ block
		{2048, 0, Params{}, false},                  // no frames
		{2048, -1, Params{}, false},                 // no frames
	}
	for _, tt := range tests {
		p, err := paramsFor(tt.size, tt.count, page)
		if !tt.ok {
			if !errors.Is(err, unix.EINVAL) {
				t.Errorf("paramsFor(%d, %d) = %v, %v; want EINVAL", tt.size, tt.count, p, err)
			}
			continue
		}
		if err != nil || p != tt.want {
			t.Errorf("paramsFor(%d, %d) = %v, %v; want %v", tt.size, tt.count, p, err, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good, _ := ParamsFor(2048, 4)
	for _, c := range []struct {
		name string
		c    Config
		ok   bool
	}{
		{"rx only", Config{RX: good}, true},
		{"tx only", Config{TX: good}, true},
		{"both", Config{RX: good, TX: good}, true},
		{"neither", Config{}, false},
		{"bad tx", Config{RX: good, TX: Params{BlockSize: 1, BlockNr: 1}}, false},
	} {
		if err := c.c.Validate(); (err == nil) != c.ok {
			t.Errorf("%s: Validate = %v", c.name, err)
		}
	}
}

func TestOpError(t *testing.T) {
	err := opError("setsockopt NETLINK_RX_RING", unix.EBUSY)
	if !errors.Is(err, unix.EBUSY) {
		t.Errorf("errors.Is(%v, EBUSY) = false", err)
	}
	var oe *OpError
	if !errors.As(err, &oe) || oe.Op != "setsockopt NETLINK_RX_RING" {
		t.Errorf("errors.As(%v) = %v", err, oe)
	}
	if want := "ring: setsockopt NETLINK_RX_RING: device or resource busy"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if opError("x", nil) != nil {
		t.Error("opError with a nil error is not nil")
	}
}
