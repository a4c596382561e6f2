package ring

// frames is one ring of the mapping: n frames of size bytes, frame i at
// i*size. It knows nothing about system calls, so the RX and TX logic built
// on it runs on the host over ordinary memory.
type frames struct {
	mem  []byte
	size int
	n    int

	// hook, when set (tests only), runs before every status access of
	// the reader or writer, so a test can let a simulated kernel take
	// steps at exactly those points.
	hook func()
}

func newFrames(mem []byte, p Params) frames {
	return frames{mem: mem[:p.Size():p.Size()], size: int(p.FrameSize), n: int(p.FrameNr)}
}

func (f *frames) hdr(i int) *mmapHdr { return hdrAt(f.mem, i*f.size) }

// payload returns the n bytes of frame i after the header.
func (f *frames) payload(i, n int) []byte {
	off := i*f.size + HeaderLen
	return f.mem[off : off+n : off+n]
}

// maxPayload is the room for a message in one frame.
func (f *frames) maxPayload() int { return f.size - HeaderLen }

func (f *frames) load(i int) Status {
	if f.hook != nil {
		f.hook()
	}
	return f.hdr(i).load()
}

func (f *frames) store(i int, s Status) {
	if f.hook != nil {
		f.hook()
	}
	f.hdr(i).store(s)
}

func (f *frames) cas(i int, old, new Status) bool {
	if f.hook != nil {
		f.hook()
	}
	return f.hdr(i).cas(old, new)
}

func (f *frames) next(i int) int {
	if i++; i == f.n {
		return 0
	}
	return i
}
