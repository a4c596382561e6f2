package console

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

// Report kinds.
const (
	KindBUG       = "BUG"
	KindWARNING   = "WARNING"
	KindKASAN     = "KASAN"
	KindUBSAN     = "UBSAN"
	KindKFENCE    = "KFENCE"
	KindLockdep   = "lockdep"
	KindRefcount  = "refcount_t"
	KindKmemleak  = "kmemleak"
	KindPanic     = "panic"
	KindOops      = "Oops"
	KindHungTask  = "hung task"
	KindRCUStall  = "RCU stall"
	KindCallTrace = "Call Trace"
)

// Phases of a run a report can belong to.
const (
	PhaseBoot  = "boot"
	PhaseTest  = "test"
	PhaseAfter = "after tests"
)

// MaxExcerpt is the number of lines a Splat's excerpt keeps; the rest is in
// the console log.
const MaxExcerpt = 200

// Where says which part of the run a report belongs to.
type Where struct {
	Phase   string `json:"phase"` // PhaseBoot, PhaseTest or PhaseAfter
	Package string `json:"package,omitempty"`
	Test    string `json:"test,omitempty"`
	// AfterEnd is set for a report between the test's END marker and the
	// next test's BEGIN.
	AfterEnd bool `json:"after_end,omitempty"`
	// Note says how the report was attributed when the markers alone did
	// not say (kmemleak reports are attributed by PID).
	Note string `json:"note,omitempty"`
}

func (w Where) String() string {
	var s string
	switch w.Phase {
	case PhaseTest:
		s = w.Package + " " + w.Test
		if w.AfterEnd {
			s += " (after it ended: deferred work of the test?)"
		}
	default:
		s = w.Phase
	}
	if w.Note != "" {
		s += " (" + w.Note + ")"
	}
	return s
}

// Splat is one report of the kernel.
type Splat struct {
	Kind  string `json:"kind"`
	Title string `json:"title"` // the line that says what it is, without timestamp
	Line  int    `json:"line"`  // 1-based line of the console log where it starts
	// Excerpt is the report from its first line to its end, at most
	// MaxExcerpt lines, each from the printk timestamp on.
	Excerpt []string `json:"excerpt"`
	// Truncated counts the lines left out of Excerpt.
	Truncated int   `json:"truncated,omitempty"`
	Where     Where `json:"where"`
}

// Text is the splat as a person reads it: a heading naming the report and
// where it starts, then the excerpt.
func (s Splat) Text(consolePath string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s report (%s:%d), attributed to %s:\n", s.Kind, consolePath, s.Line, s.Where)
	for _, l := range s.Excerpt {
		b.WriteString("    " + l + "\n")
	}
	if s.Truncated > 0 {
		fmt.Fprintf(&b, "    ... %d more lines in %s\n", s.Truncated, consolePath)
	}
	return b.String()
}

// Span is one guest test as the markers frame it.
type Span struct {
	Package string `json:"package"`
	Test    string `json:"test"`
	Begin   int    `json:"begin"` // line of the BEGIN marker
	End     int    `json:"end"`   // line of the END marker; 0 if it never ended
	Result  string `json:"result,omitempty"`
	PID     int    `json:"pid,omitempty"`
}

// Log is what a console log says.
type Log struct {
	Splats []Splat `json:"splats"`
	Tests  []Span  `json:"tests"`
	// Up, Checks and Done are set when the guest runner's markers for
	// user space, the end-of-run checks and the end were seen.
	Up     bool `json:"up"`
	Checks bool `json:"checks"`
	Done   bool `json:"done"`
	// Leaks is the count in the KMEMLEAK END marker, -1 without one.
	Leaks int `json:"leaks"`
	Lines int `json:"lines"`
}

// Running is the test that began and never ended (the VM died or was
// killed while it ran), or nil.
func (l *Log) Running() *Span {
	if n := len(l.Tests); n > 0 && l.Tests[n-1].End == 0 {
		return &l.Tests[n-1]
	}
	return nil
}

// For returns the reports attributed to one test.
func (l *Log) For(pkg, test string) []Splat {
	var out []Splat
	for _, s := range l.Splats {
		if s.Where.Phase == PhaseTest && s.Where.Package == pkg && s.Where.Test == test {
			out = append(out, s)
		}
	}
	return out
}

// In returns the reports of a phase (PhaseBoot or PhaseAfter).
func (l *Log) In(phase string) []Splat {
	var out []Splat
	for _, s := range l.Splats {
		if s.Where.Phase == phase {
			out = append(out, s)
		}
	}
	return out
}

// ScanFile scans the console log at path.
func ScanFile(path string) (*Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scan console: %w", err)
	}
	defer f.Close()
	return Scan(f)
}

// Scan reads a console log and returns its reports and test spans.
func Scan(r io.Reader) (*Log, error) {
	s := &scanner{log: &Log{Leaks: -1}, phase: PhaseBoot}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		s.feed(parseLine(n, sc.Text()))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scan console: %w", err)
	}
	s.close()
	s.log.Lines = n
	return s.log, nil
}

// line is one console line.
type line struct {
	n     int
	text  string  // from the printk timestamp on, escape sequences removed
	msg   string  // after the timestamp
	ts    float64 // printk timestamp in seconds, -1 without one
	stamp bool
}

var (
	stampRe  = regexp.MustCompile(`\[\s*(\d+\.\d+)\] ?`)
	escapeRe = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|c)`)
)

func parseLine(n int, raw string) line {
	raw = escapeRe.ReplaceAllString(strings.TrimRight(raw, "\r\n"), "")
	l := line{n: n, text: raw, msg: strings.TrimSpace(raw), ts: -1}
	if loc := stampRe.FindStringSubmatchIndex(raw); loc != nil {
		l.ts, _ = strconv.ParseFloat(raw[loc[2]:loc[3]], 64)
		l.stamp = true
		l.text = raw[loc[0]:]
		l.msg = strings.TrimRight(raw[loc[1]:], " ")
	}
	return l
}

type trigger struct {
	re   *regexp.Regexp
	kind string
}

// triggers are the first lines of reports, most specific first.
var triggers = []trigger{
	{regexp.MustCompile(`^BUG: KASAN: `), KindKASAN},
	{regexp.MustCompile(`^BUG: KFENCE: `), KindKFENCE},
	{regexp.MustCompile(`^WARNING: (possible circular locking dependency|possible recursive locking|inconsistent lock state|suspicious RCU usage|bad unlock balance|held lock freed|lock held when returning to user space|Nested lock was not taken|possible irq lock inversion|.*-safe -> .*-unsafe lock order|lock held at task exit)`), KindLockdep},
	{regexp.MustCompile(`^UBSAN: `), KindUBSAN},
	{regexp.MustCompile(`^refcount_t: `), KindRefcount},
	{regexp.MustCompile(`^Kernel panic - not syncing`), KindPanic},
	{regexp.MustCompile(`^unreferenced object 0x`), KindKmemleak},
	{regexp.MustCompile(`^INFO: task .* blocked for more than \d+ seconds`), KindHungTask},
	{regexp.MustCompile(`^rcu: INFO: .*(detected stalls|detected expedited stalls|self-detected stall)`), KindRCUStall},
	{regexp.MustCompile(`^BUG: `), KindBUG},
	{regexp.MustCompile(`^WARNING: `), KindWARNING},
	{regexp.MustCompile(`^Oops: `), KindOops},
	{regexp.MustCompile(`^general protection fault`), KindOops},
	{regexp.MustCompile(`^Call Trace:`), KindCallTrace},
}

func match(msg string) (string, bool) {
	for _, t := range triggers {
		if t.re.MatchString(msg) {
			return t.kind, true
		}
	}
	return "", false
}

var (
	cutHereRe  = regexp.MustCompile(`^-+\[ cut here \]-+$`)
	rulerRe    = regexp.MustCompile(`^={20,}$`)
	endTraceRe = regexp.MustCompile(`^---\[ end trace( [0-9a-f]+)? \]---`)
	endPanicRe = regexp.MustCompile(`^---\[ end Kernel panic`)
	cpuRe      = regexp.MustCompile(`^CPU: \d+ (UID|PID): `)
	pidRe      = regexp.MustCompile(`^\s+comm "([^"]*)", pid (\d+),`)
	// What may follow the end of a call trace and still belong to the
	// report: registers, modules, the end marker.
	contRe = regexp.MustCompile(`^(Modules linked in|CR2: |RIP: |RSP: |RAX: |RDX: |RBP: |R\d\d?: |FS: |CS: |CR0: |DR\d: |Code: |Kernel Offset|irq event stamp|hardirqs last|softirqs last|note: |---\[ end trace)`)
)

// How a report ends.
const (
	endStack    = iota // after its call trace's </TASK>, or at an end trace marker
	endTrace           // at "---[ end trace ... ]---" (it began with "cut here")
	endRuler           // at the next "=====" line (KASAN, KFENCE, UBSAN)
	endPanic           // at "---[ end Kernel panic"
	endKmemleak        // at the first line that is not indented
)

// Reports whose end never comes stop consuming lines here, and reports
// without an end marker stop after this much silence.
const (
	maxReport = 1000
	maxGap    = 5.0 // seconds
)

type open struct {
	splat     *Splat
	end       int
	titled    bool
	fromRuler bool
	sawStack  bool // a "CPU: ..." header or "Call Trace:" line
	stackDone bool
	lines     int
	last      float64
}

type scanner struct {
	log   *Log
	cur   *open
	phase string
	span  int // index of the current test's span, -1 before the first
	// recent holds the lines since the last marker or report, for the
	// context of a bare call trace.
	recent []line
	ruler  *line // a "=====" line that may start a report
	// pending is a "=====" line met inside a report before its stack,
	// held until the next line says whether it starts a new report.
	pending *line
	leaks   bool // inside the runner's copy of the kmemleak report
	// leaksFrom is the index in Splats of the first report after
	// KMEMLEAK BEGIN.
	leaksFrom int
}

func (s *scanner) feed(l line) {
	if m, ok := guestrun.ParseMarker(l.text); ok {
		if s.pending != nil && s.cur != nil {
			s.add(*s.pending)
		}
		s.pending = nil
		if !s.spansMarker() {
			s.close()
		}
		s.marker(m, l)
		return
	}
	if !l.stamp {
		return // user space on the console, not a kernel record
	}
	if s.pending != nil {
		// A "=====" line inside a report that has not reached its
		// stack: the start of a new report if a title follows it.
		r := *s.pending
		s.pending = nil
		if _, ok := match(l.msg); ok && s.cur != nil {
			s.close()
			s.ruler = &r
			s.start(l)
			return
		}
		if s.cur != nil {
			s.add(r)
		}
	}
	if s.cur != nil && s.continueReport(l) {
		return
	}
	s.start(l)
}

// spansMarker reports whether the open report goes on past a marker: the
// runner writes END and the next BEGIN a millisecond apart, so a report
// from the deferred work of one test (RCU callbacks, socket destruction)
// can have the next test's BEGIN between its lines. A report that has an
// end marker still to come, or that has begun its stack and not ended it,
// stays open (attributed to where it began); a one-line report, or one
// whose stack is done, ends at the marker.
func (s *scanner) spansMarker() bool {
	c := s.cur
	if c == nil {
		return false
	}
	switch c.end {
	case endTrace, endRuler, endPanic:
		return true
	case endStack:
		return (c.fromRuler || c.sawStack) && !c.stackDone
	}
	return false
}

func (s *scanner) marker(m guestrun.Marker, l line) {
	s.recent, s.ruler = nil, nil
	lg := s.log
	switch m.Kind {
	case guestrun.KindUp:
		lg.Up = true
	case guestrun.KindBegin:
		lg.Tests = append(lg.Tests, Span{Package: m.Package, Test: m.Test, Begin: l.n})
		s.phase = PhaseTest
	case guestrun.KindPID:
		if n := len(lg.Tests); n > 0 && lg.Tests[n-1].Package == m.Package && lg.Tests[n-1].Test == m.Test {
			lg.Tests[n-1].PID = m.PID
		}
	case guestrun.KindEnd:
		if n := len(lg.Tests); n > 0 && lg.Tests[n-1].Package == m.Package && lg.Tests[n-1].Test == m.Test {
			lg.Tests[n-1].End, lg.Tests[n-1].Result = l.n, m.Result
		}
	case guestrun.KindChecks:
		lg.Checks = true
		s.phase = PhaseAfter
	case guestrun.KindLeaksBegin:
		s.leaks = true
		s.leaksFrom = len(lg.Splats)
	case guestrun.KindLeaksEnd:
		s.leaks = false
		lg.Leaks = m.Count
		s.checkLeakCount(m.Count, l)
	case guestrun.KindDone:
		lg.Done = true
		s.phase = PhaseAfter
	}
}

// checkLeakCount compares the number of leaks the guest counted in
// kmemleak's report with the kmemleak reports found between the KMEMLEAK
// markers: a report the scanner did not recognize must not go unnoticed.
func (s *scanner) checkLeakCount(count int, l line) {
	found := 0
	for _, sp := range s.log.Splats[min(s.leaksFrom, len(s.log.Splats)):] {
		if sp.Kind == KindKmemleak {
			found++
		}
	}
	if found >= count {
		return
	}
	s.log.Splats = append(s.log.Splats, Splat{
		Kind:    KindKmemleak,
		Title:   fmt.Sprintf("kmemleak reported %d leak(s), %d recognized on the console", count, found),
		Line:    l.n,
		Where:   Where{Phase: PhaseAfter},
		Excerpt: []string{l.text},
	})
}

// where attributes a report starting now.
func (s *scanner) where() Where {
	if s.phase != PhaseTest {
		return Where{Phase: s.phase}
	}
	sp := s.log.Tests[len(s.log.Tests)-1]
	return Where{Phase: PhaseTest, Package: sp.Package, Test: sp.Test, AfterEnd: sp.End != 0}
}

// start looks at a line outside any report.
func (s *scanner) start(l line) {
	msg := l.msg
	switch {
	case rulerRe.MatchString(msg):
		s.ruler = &l
		s.remember(l)
		return
	case cutHereRe.MatchString(msg):
		s.begin(l, KindWARNING, "", endTrace)
		return
	}
	kind, ok := match(msg)
	if !ok {
		if s.ruler != nil && l.n-s.ruler.n > 2 {
			s.ruler = nil
		}
		s.remember(l)
		return
	}
	if s.ruler != nil && l.n-s.ruler.n <= 2 {
		// "=====" then the title: KASAN, KFENCE, UBSAN and lockdep
		// reports look like this.
		r := *s.ruler
		s.ruler = nil
		s.begin(r, kind, "", endStack)
		s.cur.fromRuler = true
		s.add(l)
		s.title(kind, msg)
		return
	}
	if kind == KindCallTrace {
		// A bare stack dump: take the lines before it that belong to it
		// (the "CPU: ..." header and the message before that).
		from := len(s.recent)
		for i := len(s.recent) - 1; i >= 0 && i >= len(s.recent)-8; i-- {
			if cpuRe.MatchString(s.recent[i].msg) {
				from = i
				if i > 0 {
					from = i - 1
				}
				break
			}
		}
		ctx := append([]line(nil), s.recent[from:]...)
		title := "Call Trace"
		if len(ctx) > 0 && !cpuRe.MatchString(ctx[0].msg) {
			title = ctx[0].msg
		}
		first := l
		if len(ctx) > 0 {
			first = ctx[0]
		}
		s.begin(first, kind, title, endStack)
		for _, c := range ctx[1:] {
			s.add(c)
		}
		if len(ctx) > 0 {
			s.add(l)
		}
		return
	}
	end := endStack
	switch kind {
	case KindPanic:
		end = endPanic
	case KindKmemleak:
		end = endKmemleak
	}
	s.begin(l, kind, msg, end)
}

func (s *scanner) remember(l line) {
	s.recent = append(s.recent, l)
	if len(s.recent) > 16 {
		s.recent = s.recent[len(s.recent)-16:]
	}
}

func (s *scanner) begin(l line, kind, title string, end int) {
	s.recent, s.ruler = nil, nil
	s.cur = &open{
		splat: &Splat{Kind: kind, Title: title, Line: l.n, Where: s.where()},
		end:   end, titled: title != "", last: l.ts,
	}
	s.add(l)
}

func (s *scanner) title(kind, msg string) {
	c := s.cur
	c.splat.Kind, c.splat.Title, c.titled = kind, msg, true
	switch kind {
	case KindKASAN, KindKFENCE, KindUBSAN:
		if c.fromRuler {
			c.end = endRuler
		}
	case KindPanic:
		if c.end != endTrace {
			c.end = endPanic
		}
	}
}

func (s *scanner) add(l line) {
	c := s.cur
	c.lines++
	c.last = l.ts
	if len(c.splat.Excerpt) < MaxExcerpt {
		c.splat.Excerpt = append(c.splat.Excerpt, l.text)
	} else {
		c.splat.Truncated++
	}
	if strings.TrimSpace(l.msg) == "</TASK>" {
		c.stackDone = true
	}
	if cpuRe.MatchString(l.msg) || strings.HasPrefix(l.msg, "Call Trace:") {
		c.sawStack = true
	}
}

// continueReport feeds a line to the open report. It returns false when
// the line is not part of it: the report is then closed and the caller
// looks at the line afresh.
func (s *scanner) continueReport(l line) bool {
	c := s.cur
	msg := l.msg
	if l.ts-c.last > maxGap || c.lines >= maxReport {
		s.close()
		return false
	}
	if c.end == endKmemleak {
		if !strings.HasPrefix(msg, " ") || strings.TrimSpace(msg) == "" {
			s.close()
			return false
		}
		s.add(l)
		return true
	}
	switch {
	case endTraceRe.MatchString(msg):
		s.add(l)
		if c.end == endTrace || c.end == endStack {
			s.close()
		}
		return true
	case endPanicRe.MatchString(msg):
		s.add(l)
		if c.end == endPanic {
			s.close()
		}
		return true
	case rulerRe.MatchString(msg):
		if c.end == endRuler {
			s.add(l)
			s.close()
			return true
		}
		if c.end == endStack && (c.stackDone || !c.titled) {
			s.close()
			return false
		}
		if c.end == endStack && !c.sawStack {
			s.pending = &l
			return true
		}
		s.add(l)
		return true
	case cutHereRe.MatchString(msg):
		s.close()
		return false
	}
	kind, isTrigger := match(msg)
	if !c.titled {
		if isTrigger {
			s.add(l)
			s.title(kind, msg)
			return true
		}
		s.add(l)
		return true
	}
	if isTrigger && kind == KindPanic && c.splat.Kind != KindPanic {
		s.close()
		return false
	}
	if isTrigger && c.end == endStack && !c.sawStack && !c.fromRuler &&
		kind != KindOops && kind != KindCallTrace {
		// A report that ended without a stack (a one-line WARNING
		// written to /dev/kmsg, "BUG: Bad rss-counter state") and a
		// new one. An Oops's own "Oops:" line and its call trace
		// belong to it.
		s.close()
		return false
	}
	if c.end == endStack && c.stackDone {
		if isTrigger || !contRe.MatchString(msg) {
			s.close()
			return false
		}
	}
	s.add(l)
	return true
}

// close ends the open report, if any, and records it.
func (s *scanner) close() {
	c := s.cur
	if c == nil {
		return
	}
	s.cur = nil
	sp := *c.splat
	if sp.Title == "" {
		sp.Title = "------------[ cut here ]------------"
	}
	if sp.Kind == KindKmemleak {
		s.attributeLeak(&sp)
	}
	s.log.Splats = append(s.log.Splats, sp)
}

// attributeLeak finds the test whose processes allocated a leaked object:
// the last test whose test2json PID is not above the allocating PID.
func (s *scanner) attributeLeak(sp *Splat) {
	pid, comm := -1, ""
	for _, l := range sp.Excerpt {
		msg := l
		if loc := stampRe.FindStringIndex(l); loc != nil {
			msg = l[loc[1]:]
		}
		if m := pidRe.FindStringSubmatch(msg); m != nil {
			pid, _ = strconv.Atoi(m[2])
			comm = m[1]
			break
		}
	}
	if pid < 0 {
		return
	}
	var best *Span
	havePIDs := false
	for i := range s.log.Tests {
		havePIDs = havePIDs || s.log.Tests[i].PID > 0
		t := &s.log.Tests[i]
		if t.PID > 0 && t.PID <= pid && (best == nil || t.PID >= best.PID) {
			best = t
		}
	}
	if !havePIDs {
		return // a runner without PID markers: keep what the markers say
	}
	if best == nil || pid == 0 {
		sp.Where = Where{Phase: PhaseAfter, Note: fmt.Sprintf("allocated by %q, pid %d, which is not a test's process", comm, pid)}
		return
	}
	sp.Where = Where{Phase: PhaseTest, Package: best.Package, Test: best.Test,
		Note: fmt.Sprintf("allocated by %q, pid %d; the test's processes start at pid %d", comm, pid, best.PID)}
}
