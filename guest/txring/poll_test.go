package txring

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// TestPollIn checks that poll() reports POLLIN exactly while a VALID or
// COPY frame waits in the RX ring: not for an empty ring, not for a frame
// user space holds (SKIP), and no longer once the frames are read.
func TestPollIn(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // requests sent from the TX ring
	c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, 4096, 4), TX: mustParams(t, 2048, 4)})
	fd := connFD(t, c)
	send := func(b []byte) {
		t.Helper()
		if err := c.Send(b); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	const noSuchLink = 0x7fff0000
	var held ring.Frame

	steps := []struct {
		name   string
		do     func(t *testing.T)
		pollIn bool
		rx     []ring.Status // the RX ring afterwards, if checked
	}{
		{name: "Empty", do: func(*testing.T) {}, pollIn: false},
		{
			// An error ack is built in the ring: a VALID frame.
			name: "ValidFrameWaits", do: func(*testing.T) { send(getLink(1, noSuchLink, unix.NLM_F_ACK)) },
			pollIn: true, rx: []ring.Status{ring.StatusValid, ring.StatusUnused, ring.StatusUnused, ring.StatusUnused},
		},
		{name: "ValidFrameRead", do: func(t *testing.T) { wantAnswer(t, c, "seq 1: error ENODEV", false) }, pollIn: false},
		{
			// The RTM_NEWLINK answer is an ordinary skb: a COPY frame.
			name: "CopyFrameWaits", do: func(*testing.T) { send(getLink(2, 1, 0)) },
			pollIn: true, rx: []ring.Status{ring.StatusUnused, ring.StatusCopy, ring.StatusUnused, ring.StatusUnused},
		},
		{name: "CopyFrameRead", do: func(t *testing.T) { wantAnswer(t, c, "seq 2: link 1 lo", true) }, pollIn: false},
		{
			name: "FrameHandedOut", do: func(t *testing.T) {
				send(getLink(3, noSuchLink, unix.NLM_F_ACK))
				f, err := c.Next()
				if err != nil {
					t.Fatalf("next: %v", err)
				}
				held = f
			},
			// Next does not touch the frame: it is still VALID, and
			// the kernel cannot tell it was read.
			pollIn: true,
		},
		{
			name: "FrameHeld", do: func(t *testing.T) {
				if err := held.Hold(); err != nil {
					t.Fatalf("hold: %v", err)
				}
			},
			pollIn: false, rx: []ring.Status{ring.StatusUnused, ring.StatusUnused, ring.StatusSkip, ring.StatusUnused},
		},
		{
			name: "FrameReleased", do: func(t *testing.T) {
				if err := held.Release(); err != nil {
					t.Fatalf("release: %v", err)
				}
			},
			pollIn: false,
		},
		{
			name: "HeldFrameBehindValidOne", do: func(t *testing.T) {
				send(getLink(4, noSuchLink, unix.NLM_F_ACK))
				f, err := c.Next()
				if err != nil {
					t.Fatalf("next: %v", err)
				}
				if err := f.Hold(); err != nil {
					t.Fatalf("hold: %v", err)
				}
				held = f
				send(getLink(5, noSuchLink, unix.NLM_F_ACK))
			},
			pollIn: true,
		},
		{
			name: "AllRead", do: func(t *testing.T) {
				wantAnswer(t, c, "seq 5: error ENODEV", false)
				if err := held.Release(); err != nil {
					t.Fatalf("release: %v", err)
				}
			},
			pollIn: false,
		},
	}
	for _, s := range steps {
		// Steps depend on each other: stop at the first failure.
		if !t.Run(s.name, func(t *testing.T) {
			s.do(t)
			ev := pollEvents(t, fd)
			if got := ev&unix.POLLIN != 0; got != s.pollIn {
				t.Errorf("poll: %#x; POLLIN %v, want %v (RX %v)", ev, got, s.pollIn, rxStatuses(t, c))
			}
			if s.rx != nil {
				if got := rxStatuses(t, c); !slices.Equal(got, s.rx) {
					t.Errorf("RX ring %v, want %v", got, s.rx)
				}
			}
		}) {
			break
		}
	}
}

// wantAnswer reads one datagram, which must hold exactly the message
// described by want (see answers) and have come as copied says.
func wantAnswer(t *testing.T, c *ring.Conn, want string, copied bool) {
	t.Helper()
	ds := drainNow(t, c)
	if got := answers(t, ds); !slices.Equal(got, []string{want}) || len(ds) != 1 || ds[0].copied != copied {
		t.Errorf("read %q (%s), want [%q] copied=%v", got, describe(ds), want, copied)
	}
}

// TestPollOut checks that poll() reports POLLOUT exactly while the TX
// frame at the kernel's position is free: a VALID frame there takes it
// away even if every other frame is free, and sending brings it back. A
// writer waiting in poll() for a full ring is woken by the sendto that
// frees it. (TestTXStopsAtGap covers a free frame at the kernel's
// position with a VALID one behind it, TestTXStopsAtFailedFrame a VALID
// frame at the kernel's position behind a free one.)
func TestPollOut(t *testing.T) {
	setup(t)
	guesttest.NeedsPatch(t, 8) // the TX ring
	c := dial(t, unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, 4096, 16), TX: mustParams(t, 2048, 4)})
	fd := connFD(t, c)
	frames := int(c.TX().FrameNr)
	seq := uint32(0)
	enqueue := func(t *testing.T, n int) {
		for i := 0; i < n; i++ {
			seq++
			if err := c.Enqueue(noop(seq)); err != nil {
				t.Fatalf("enqueue: %v", err)
			}
		}
	}
	flush := func(t *testing.T) {
		if err := c.Flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
		receiveUntil(t, c, seq)
	}
	steps := []struct {
		name    string
		do      func(t *testing.T)
		pollOut bool
	}{
		{name: "Empty", do: func(*testing.T) {}, pollOut: true},
		{name: "HeadFrameValid", do: func(t *testing.T) { enqueue(t, 1) }, pollOut: false},
		{name: "Sent", do: flush, pollOut: true},
		{name: "RingFull", do: func(t *testing.T) { enqueue(t, frames) }, pollOut: false},
		{name: "AllSent", do: flush, pollOut: true},
		{name: "WrappedHeadFrameValid", do: func(t *testing.T) { enqueue(t, 2) }, pollOut: false},
		{name: "WrappedSent", do: flush, pollOut: true},
		{
			name: "WriterWoken", do: func(t *testing.T) {
				enqueue(t, frames)
				woken := pollAsleep(t, fd, unix.POLLOUT)
				flush(t)
				if ev := <-woken; ev&unix.POLLOUT == 0 {
					t.Errorf("the waiting writer's poll returned %#x, want POLLOUT", ev)
				}
			},
			pollOut: true,
		},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) {
			s.do(t)
			ev := pollEvents(t, fd)
			if got := ev&unix.POLLOUT != 0; got != s.pollOut {
				t.Errorf("poll: %#x; POLLOUT %v, want %v (TX %v)", ev, got, s.pollOut, txStatuses(t, c))
			}
		}) {
			break
		}
	}
}

// noop is a message the kernel only acknowledges: without NLM_F_REQUEST,
// netlink_rcv_skb() skips it and sends the ack.
func noop(seq uint32) []byte {
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_GETLINK, Flags: unix.NLM_F_ACK, Seq: seq},
		Data: ifinfomsg(1)}.Append(nil)
}

// pollAsleep starts a poll() for events on fd, with hangGuard as its
// timeout, on a thread of its own, and returns once that thread sleeps in
// the system call: whatever makes the poll return happens after. The
// events it returns come on the channel.
func pollAsleep(t *testing.T, fd int, events int16) <-chan int16 {
	t.Helper()
	tid := make(chan int, 1)
	out := make(chan int16, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		for {
			_, err := unix.Poll(pfd, int(hangGuard.Milliseconds()))
			if err == unix.EINTR {
				continue
			}
			out <- pfd[0].Revents
			return
		}
	}()
	path := fmt.Sprintf("/proc/self/task/%d/syscall", <-tid)
	deadline := time.Now().Add(hangGuard)
	for {
		// "<nr> <args>..." while the thread sleeps in a system call.
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		if strings.HasPrefix(string(b), fmt.Sprintf("%d ", unix.SYS_PPOLL)) {
			return out
		}
		select {
		case ev := <-out:
			t.Fatalf("poll returned %#x at once; it was meant to wait", ev)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poller did not sleep in ppoll within %v: %s", hangGuard, b)
		}
		time.Sleep(time.Millisecond)
	}
}
