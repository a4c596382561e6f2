package boot

import (
	"bufio"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

// TailLines is how many console lines a failure report shows.
const TailLines = 50

// watcher follows the console: it keeps the last lines and the markers.
type watcher struct {
	up   chan struct{} // closed at "userspace up"
	done chan struct{} // closed at DONE
	fin  chan struct{} // closed when the console is closed

	// progress, if set, is called for every marker, from the goroutine
	// that reads the console.
	progress func(guestrun.Marker)

	mu   sync.Mutex
	tail []string
	// step is the test or the end-of-run checks in progress, and since
	// when: "" between tests.
	step      string
	stepSince time.Time
	lastBegin *guestrun.Marker
	ended     bool // END seen for lastBegin
	fatal     string
	upSeen    bool
	doneSeen  bool
}

func newWatcher() *watcher {
	return &watcher{up: make(chan struct{}), done: make(chan struct{}), fin: make(chan struct{})}
}

// consume reads console lines from r until EOF.
func (w *watcher) consume(r io.Reader) {
	defer close(w.fin)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		w.line(strings.TrimRight(sc.Text(), "\r"))
	}
	io.Copy(io.Discard, r)
}

func (w *watcher) line(l string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tail = append(w.tail, l)
	if len(w.tail) > TailLines {
		w.tail = w.tail[len(w.tail)-TailLines:]
	}
	m, ok := guestrun.ParseMarker(l)
	if !ok {
		return
	}
	if w.progress != nil {
		w.progress(m)
	}
	switch m.Kind {
	case guestrun.KindUp:
		if !w.upSeen {
			w.upSeen = true
			close(w.up)
		}
	case guestrun.KindBegin:
		w.lastBegin = &m
		w.ended = false
		w.step, w.stepSince = m.Package+" "+m.Test, time.Now()
	case guestrun.KindEnd:
		if w.lastBegin != nil && w.lastBegin.Package == m.Package && w.lastBegin.Test == m.Test {
			w.ended = true
		}
		w.step = ""
	case guestrun.KindChecks:
		w.step, w.stepSince = "the end-of-run checks (kmemleak scan, coverage copy)", time.Now()
	case guestrun.KindFatal:
		w.fatal = m.Message
	case guestrun.KindDone:
		w.step = ""
		if !w.doneSeen {
			w.doneSeen = true
			close(w.done)
		}
	}
}

// running returns "<pkg> <Test>" of the test that began and did not end.
func (w *watcher) running() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastBegin == nil || w.ended {
		return ""
	}
	return w.lastBegin.Package + " " + w.lastBegin.Test
}

// overdue returns the step in progress if it has lasted longer than limit.
func (w *watcher) overdue(now time.Time, limit time.Duration) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if limit <= 0 || w.step == "" || now.Sub(w.stepSince) < limit {
		return ""
	}
	return w.step
}

func (w *watcher) snapshot() (tail []string, fatal string, up, done bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.tail...), w.fatal, w.upSeen, w.doneSeen
}
