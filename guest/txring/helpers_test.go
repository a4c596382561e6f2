package txring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"github.com/nlmmap/nlmmap/guest/nlmsg"
	"github.com/nlmmap/nlmmap/guest/ring"
	"golang.org/x/sys/unix"
)

// hangGuard bounds every blocking wait of these tests. Tests never pass or
// fail on timing; a wait that runs into it means the kernel lost or
// withheld something, and the test says what it waited for.
const hangGuard = 60 * time.Second

// setup is the common start of every test here: VM only, a kernel with
// rings (skip naming ENOPROTOOPT otherwise), and a check of the kernel
// log for splats at the end.
//
// On a prefix of the series it needs patch 03 (the rings mapped); tests
// that rely on later patches say so with guesttest.NeedsPatch, and the
// counters of patch 09 are checked where the kernel has them
// (haveRingStats).
func setup(t *testing.T) {
	t.Helper()
	guesttest.SkipIfNotInVM(t)
	guesttest.NeedsPatch(t, 3)
	c, err := ring.Dial(unix.NETLINK_ROUTE, ring.Config{RX: mustParams(t, 4096, 1)})
	if errors.Is(err, ring.ErrNotSupported) {
		t.Skipf("needs memory-mapped netlink; setsockopt NETLINK_RX_RING: ENOPROTOOPT (%v)", err)
	}
	if err != nil {
		t.Fatalf("probe for rings: %v", err)
	}
	c.Close()
	watchKmsg(t)
}

func mustParams(t testing.TB, frameSize, frames int) ring.Params {
	t.Helper()
	p, err := ring.ParamsFor(frameSize, frames)
	if err != nil {
		t.Fatalf("ParamsFor(%d, %d): %v", frameSize, frames, err)
	}
	return p
}

func dial(t testing.TB, family int, cfg ring.Config) *ring.Conn {
	t.Helper()
	c, err := ring.Dial(family, cfg)
	if err != nil {
		t.Fatalf("ring.Dial(%d, %+v): %v", family, cfg, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// watchKmsg fails t if the kernel logs a splat while t runs. The console
// check of the harness sees them too; this ties a splat to its test.
func watchKmsg(t *testing.T) {
	t.Helper()
	// Raw system calls: an *os.File would wait in the poller for more
	// records instead of returning EAGAIN.
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Logf("no kernel log check: %v", err)
		return
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil { // only new records
		unix.Close(fd)
		t.Logf("no kernel log check: %v", err)
		return
	}
	t.Cleanup(func() {
		defer unix.Close(fd)
		for _, rec := range readKmsg(fd) {
			for _, bad := range []string{"BUG:", "WARNING:", "KASAN", "UBSAN", "refcount_t:", "possible circular",
				"inconsistent lock", "Call Trace"} {
				if strings.Contains(rec, bad) {
					t.Errorf("kernel log: %s", rec)
					break
				}
			}
		}
	})
}

// readKmsg reads the records of /dev/kmsg up to the newest one.
func readKmsg(fd int) []string {
	var recs []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EPIPE { // records overwritten meanwhile: go on
			continue
		}
		if err != nil || n <= 0 {
			return recs
		}
		// "prio,seq,time,flags;message\n continuation lines"
		rec := string(buf[:n])
		if i := strings.IndexByte(rec, ';'); i >= 0 {
			rec = rec[i+1:]
		}
		recs = append(recs, strings.TrimRight(rec, "\n"))
	}
}

// Requests.

func ifinfomsg(index int32) []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	return b
}

// getLink is RTM_GETLINK for one interface; the kernel answers with an
// RTM_NEWLINK and, with NLM_F_ACK, an ack.
func getLink(seq uint32, index int32, flags uint16) []byte {
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST | flags, Seq: seq},
		Data: ifinfomsg(index)}.Append(nil)
}

// dumpLinks is an RTM_GETLINK dump request.
func dumpLinks(seq uint32) []byte {
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: seq},
		Data: ifinfomsg(0)}.Append(nil)
}

// dumpGenlFamilies is a CTRL_CMD_GETFAMILY dump request.
func dumpGenlFamilies(seq uint32) []byte {
	return nlmsg.Message{Header: nlmsg.Header{Type: unix.GENL_ID_CTRL, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: seq},
		Data: []byte{unix.CTRL_CMD_GETFAMILY, 1, 0, 0}}.Append(nil)
}

// A datagram is one datagram as it came out of an RX ring.
type datagram struct {
	data   []byte
	copied bool // announced by a COPY frame, read with recvmsg
}

func records(recs []ring.Record) []datagram {
	var d []datagram
	for _, r := range recs {
		d = append(d, datagram{data: r.Data, copied: r.Copied})
	}
	return d
}

// messages parses datagrams into their messages, failing t on garbage.
func messages(t testing.TB, ds []datagram) []nlmsg.Message {
	t.Helper()
	var all []nlmsg.Message
	for i, d := range ds {
		msgs, err := nlmsg.Parse(d.data)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(ds), err)
		}
		all = append(all, msgs...)
	}
	return all
}

type link struct {
	index int32
	name  string
}

func parseLink(m nlmsg.Message) (link, error) {
	if m.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
		return link{}, fmt.Errorf("not an RTM_NEWLINK: type %d, %d bytes", m.Type, len(m.Data))
	}
	l := link{index: int32(binary.NativeEndian.Uint32(m.Data[4:]))}
	attrs, err := nlmsg.Attrs(m.Data[unix.SizeofIfInfomsg:])
	if err != nil {
		return l, err
	}
	for _, a := range attrs {
		if a.Type == unix.IFLA_IFNAME {
			l.name = string(bytes.TrimRight(a.Data, "\x00"))
		}
	}
	return l, nil
}

// checkLinkAnswer checks that ds hold the answer to getLink(seq, index,
// NLM_F_ACK): one RTM_NEWLINK for the interface named name, then an ack,
// and nothing else with that sequence number.
func checkLinkAnswer(t testing.TB, ds []datagram, seq uint32, index int32, name string) {
	t.Helper()
	var got []string
	for _, m := range messages(t, ds) {
		if m.Seq != seq {
			continue
		}
		switch {
		case m.Type == unix.RTM_NEWLINK:
			l, err := parseLink(m)
			if err != nil {
				t.Errorf("seq %d: %v", seq, err)
			}
			got = append(got, fmt.Sprintf("link %d %s", l.index, l.name))
		case m.IsAck():
			got = append(got, "ack")
		case m.Err() != nil:
			got = append(got, m.Err().Error())
		default:
			got = append(got, fmt.Sprintf("type %d", m.Type))
		}
	}
	want := []string{fmt.Sprintf("link %d %s", index, name), "ack"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("answer to RTM_GETLINK seq %d: got [%s], want [%s]", seq, strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// receiveUntil reads datagrams from c until one holds a message with
// sequence number seq that is an ack, an error or NLMSG_DONE.
func receiveUntil(t testing.TB, c *ring.Conn, seq uint32) []datagram {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(hangGuard)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	var ds []datagram
	for {
		rec, err := c.Receive()
		if err != nil {
			t.Fatalf("receive (waiting for the end of seq %d after %d datagrams): %v", seq, len(ds), err)
		}
		ds = append(ds, datagram{data: rec.Data, copied: rec.Copied})
		msgs, err := nlmsg.Parse(rec.Data)
		if err != nil {
			t.Fatalf("datagram %d: %v", len(ds), err)
		}
		for _, m := range msgs {
			if m.Seq == seq && (m.Type == unix.NLMSG_ERROR || m.Type == unix.NLMSG_DONE) {
				return ds
			}
		}
	}
}

// pollEvents polls fd once without waiting and returns the events.
func pollEvents(t testing.TB, fd int) int16 {
	t.Helper()
	return pollWait(t, fd, unix.POLLIN|unix.POLLOUT, 0)
}

// pollWait polls fd for events, waiting up to timeout milliseconds.
func pollWait(t testing.TB, fd int, events int16, timeout int) int16 {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
	for {
		_, err := unix.Poll(pfd, timeout)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		return pfd[0].Revents
	}
}

// rxStatuses returns the status of every frame of c's RX ring.
func rxStatuses(t testing.TB, c *ring.Conn) []ring.Status {
	t.Helper()
	var s []ring.Status
	for i := 0; i < int(c.RX().FrameNr); i++ {
		f, err := c.RawRX(i)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, f.Status())
	}
	return s
}

// txStatuses returns the status of every frame of c's TX ring.
func txStatuses(t testing.TB, c *ring.Conn) []ring.Status {
	t.Helper()
	var s []ring.Status
	for i := 0; i < int(c.TX().FrameNr); i++ {
		f, err := c.RawTX(i)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, f.Status())
	}
	return s
}

func countStatus(s []ring.Status, want ring.Status) int {
	n := 0
	for _, x := range s {
		if x == want {
			n++
		}
	}
	return n
}

// describe summarizes datagrams for a log line: how each arrived and its
// first message's type.
func describe(ds []datagram) string {
	var parts []string
	for _, d := range ds {
		how := "VALID"
		if d.copied {
			how = "COPY"
		}
		what := "garbage"
		if msgs, err := nlmsg.Parse(d.data); err == nil && len(msgs) > 0 {
			what = fmt.Sprintf("%d msgs, first type %d seq %d", len(msgs), msgs[0].Type, msgs[0].Seq)
		}
		parts = append(parts, fmt.Sprintf("%s(%d bytes: %s)", how, len(d.data), what))
	}
	return strings.Join(parts, " ")
}
