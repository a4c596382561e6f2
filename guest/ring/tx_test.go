package ring

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

func TestTXWriteAndKick(t *testing.T) {
	tx := newTXRing(testFrames(3, 64))
	k := &simTX{tx: tx.f}
	var want [][]byte
	for i := range 10 {
		msg := bytes.Repeat([]byte{byte(i)}, 1+i%40)
		if err := tx.write(msg); errors.Is(err, ErrTXFull) {
			// The writer only fills up when it does not flush.
			if i%3 != 0 || tx.pending != 3 {
				t.Fatalf("message %d: full with %d pending", i, tx.pending)
			}
			if err := k.kick(); err != nil {
				t.Fatal(err)
			}
			tx.reap()
			err = tx.write(msg)
			if err != nil {
				t.Fatalf("after kick: %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		want = append(want, msg)
	}
	if err := k.kick(); err != nil {
		t.Fatal(err)
	}
	tx.reap()
	if tx.pending != 0 {
		t.Errorf("%d frames pending after kick", tx.pending)
	}
	if fmt.Sprint(k.sent) != fmt.Sprint(want) {
		t.Errorf("kernel got %v, want %v", k.sent, want)
	}
}

func TestTXLimits(t *testing.T) {
	tx := newTXRing(testFrames(2, 64))
	max := 64 - HeaderLen
	if err := tx.write(make([]byte, max+1)); !errors.Is(err, ErrTooBig) {
		t.Errorf("write of %d bytes: %v, want ErrTooBig", max+1, err)
	}
	if err := tx.write(nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("empty write: %v, want EINVAL", err)
	}
	if err := tx.write(make([]byte, max)); err != nil {
		t.Errorf("write of %d bytes: %v", max, err)
	}
	if got := tx.f.hdr(0).len; got != uint32(max) {
		t.Errorf("nm_len = %d, want %d", got, max)
	}
	if st := tx.f.hdr(0).load(); st != StatusValid {
		t.Errorf("status %v, want VALID", st)
	}
}

func TestTXReserveCommit(t *testing.T) {
	tx := newTXRing(testFrames(2, 64))
	if err := tx.commit(1); !errors.Is(err, ErrBadFrame) {
		t.Errorf("commit without reserve: %v", err)
	}
	buf, err := tx.reserve()
	if err != nil {
		t.Fatal(err)
	}
	if len(buf) != 64-HeaderLen {
		t.Errorf("reserved %d bytes, want %d", len(buf), 64-HeaderLen)
	}
	if _, err := tx.reserve(); !errors.Is(err, ErrBadFrame) {
		t.Errorf("second reserve: %v", err)
	}
	if err := tx.commit(0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("commit(0): %v", err)
	}
	tx.cancel()
	if st := tx.f.hdr(0).load(); st != StatusUnused {
		t.Errorf("cancelled frame is %v", st)
	}
	buf, _ = tx.reserve()
	copy(buf, "hello")
	if err := tx.commit(5); err != nil {
		t.Fatal(err)
	}
	k := &simTX{tx: tx.f}
	if err := k.kick(); err != nil || len(k.sent) != 1 || string(k.sent[0]) != "hello" {
		t.Errorf("kernel got %q, %v", k.sent, err)
	}
}

// TestTXReapPartial: the kernel processed a prefix of the pending frames
// (it failed on one), and the writer must know which are still its own.
func TestTXReapPartial(t *testing.T) {
	tx := newTXRing(testFrames(4, 64))
	for _, m := range []string{"a", "b", "c"} {
		if err := tx.write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	// A kernel that handled "a" only.
	tx.f.hdr(0).store(StatusUnused)
	tx.reap()
	if tx.pending != 2 {
		t.Errorf("pending = %d, want 2", tx.pending)
	}
	k := &simTX{tx: tx.f, head: 1}
	if err := k.kick(); err != nil {
		t.Fatal(err)
	}
	tx.reap()
	if tx.pending != 0 || fmt.Sprint(k.sent) != fmt.Sprint([][]byte{[]byte("b"), []byte("c")}) {
		t.Errorf("pending %d, sent %q", tx.pending, k.sent)
	}
}
