package console

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The logs under testdata are real consoles of the harness's guest, except
// synthetic.log. The kernel reports in them were triggered on purpose by
// the throwaway debug patch in vmtests/testdata/demo (a kernel built with
// the debug flavor: KASAN, lockdep, kmemleak), except diag-warn-no-markers.log
// (a real lockdep-detected bug in an early version of patch 09, booted
// without the harness's runner) and clean-debug-run.log (a full debug run
// of the series without any report).

const demo = "github.com/nlmmap/nlmmap/guest/splatdemo "

type wantSplat struct {
	kind  string
	title string // prefix
	where string // Where.String() prefix
	first string // substring of the excerpt's first line
	last  string // substring of the excerpt's last line
	lines int    // excerpt length; 0: not checked
}

func TestScan(t *testing.T) {
	tests := []struct {
		file    string
		up      bool
		done    bool
		leaks   int
		tests   int
		running string // "pkg Test" of the test that never ended
		splats  []wantSplat
	}{
		{
			file: "clean-debug-run.log", up: true, done: true, leaks: -1, tests: 84,
		},
		{
			file: "warn-kasan-refcount-sleep-leak.log", up: true, done: true, leaks: 1, tests: 7,
			splats: []wantSplat{
				// A test may write what it likes to /dev/kmsg: it is reported
				// like the kernel's own lines.
				{KindWARNING, "WARNING: a line a test wrote", demo + "TestFakeWarningLine", "WARNING: a line", "WARNING: a line", 1},
				{KindKASAN, "BUG: KASAN: slab-use-after-free in netlink_debug_splat", demo + "TestKASANOnPurpose", "=====", "=====", 84},
				{KindRefcount, "refcount_t: decrement hit 0", demo + "TestRefcountOnPurpose", "cut here", "end trace 0000000000000000", 47},
				{KindBUG, "BUG: sleeping function called from invalid context", demo + "TestSleepInAtomicOnPurpose", "BUG: sleeping function", "</TASK>", 35},
				{KindWARNING, "WARNING: CPU: 0 PID: 137 at net/netlink/af_netlink.c:1775 netlink_debug_splat", demo + "TestWarnOnPurpose", "cut here", "end trace", 0},
				{KindKmemleak, "unreferenced object 0xff1100000937cc00 (size 256):", demo + "TestLeakOnPurpose (allocated by \"github.com_nlmm\", pid 107; the test's processes start at pid 102)", "unreferenced object", "entry_SYSCALL_64_after_hwframe", 14},
			},
		},
		{
			file: "lockdep.log", up: true, done: true, leaks: 0, tests: 2,
			splats: []wantSplat{
				{KindLockdep, "WARNING: possible circular locking dependency detected", demo + "TestLockdepOnPurpose", "=====", "</TASK>", 0},
			},
		},
		{
			file: "rcu.log", up: true, done: true, leaks: 0, tests: 1,
			splats: []wantSplat{
				{KindLockdep, "WARNING: suspicious RCU usage", demo + "TestRCUOnPurpose", "=====", "</TASK>", 0},
			},
		},
		{
			// panic=-1: the VM is gone before "---[ end Kernel panic".
			file: "panic.log", up: true, leaks: -1, tests: 2, running: demo + "TestPanicOnPurpose",
			splats: []wantSplat{
				{KindPanic, "Kernel panic - not syncing: netlink debug: panic on purpose", demo + "TestPanicOnPurpose", "Kernel panic", "Kernel Offset: disabled", 0},
			},
		},
		{
			// One CPU spins with preemption off; RCU notices after 21s. The
			// runner kills the test after its timeout (this log stops at
			// the CHECKS marker).
			file: "hang.log", up: true, leaks: -1, tests: 1,
			splats: []wantSplat{
				{KindRCUStall, "rcu: INFO: rcu_sched self-detected stall on CPU", demo + "TestHangOnPurpose", "self-detected stall", "</TASK>", 0},
			},
		},
		{
			file: "diag-warn-no-markers.log", leaks: -1,
			splats: []wantSplat{
				{KindWARNING, "WARNING: CPU: 0 PID: 47 at kernel/softirq.c:387 __local_bh_enable_ip", "boot", "cut here", "end trace", 0},
			},
		},
		{
			file: "synthetic.log", up: true, done: true, leaks: 3, tests: 3,
			splats: []wantSplat{
				{KindCallTrace, "netlink: something odd happened during boot", "boot", "something odd", "</TASK>", 8},
				{KindUBSAN, "UBSAN: shift-out-of-bounds in net/netlink/mmap.c:120:20", "example.com/guest/rxring TestUBSAN", "cut here", "---[ end trace ]---", 11},
				{KindWARNING, "WARNING: CPU: 0 PID: 0 at net/netlink/af_netlink.c:400", "example.com/guest/rxring TestUBSAN (after it ended", "cut here", "end trace", 12},
				{KindKFENCE, "BUG: KFENCE: use-after-free read", "example.com/guest/rxring TestKFENCE", "=====", "=====", 10},
				{KindHungTask, "INFO: task txring.test:125 blocked for more than 122 seconds.", "example.com/guest/txring TestHung", "INFO: task", "</TASK>", 9},
				// Cut short by the END marker: still reported, up to it.
				{KindWARNING, "WARNING: CPU: 1 PID: 125 at net/netlink/mmap.c:300", "example.com/guest/txring TestHung", "cut here", "Comm: txring.test", 3},
				{KindKmemleak, "unreferenced object 0xff11000006c3e000", `after tests (allocated by "init", pid 1, which is not a test's process)`, "", "kmem_cache_alloc", 4},
				{KindKmemleak, "unreferenced object 0xff11000006c3f000", `after tests (allocated by "softirq", pid 0, which is not a test's process)`, "", "__alloc_skb", 4},
				{KindKmemleak, "unreferenced object 0xff11000006c40000", `example.com/guest/txring TestHung (allocated by "txring.test", pid 126`, "", "netlink_set_ring", 4},
				{KindWARNING, "WARNING: CPU: 0 PID: 1 at kernel/reboot.c:1", "after tests", "cut here", "end trace", 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			log, err := ScanFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if log.Up != tt.up || log.Done != tt.done || log.Leaks != tt.leaks || len(log.Tests) != tt.tests {
				t.Errorf("up %v done %v leaks %d tests %d; want %v %v %d %d", log.Up, log.Done, log.Leaks, len(log.Tests), tt.up, tt.done, tt.leaks, tt.tests)
			}
			running := ""
			if r := log.Running(); r != nil {
				running = r.Package + " " + r.Test
			}
			if running != tt.running {
				t.Errorf("Running() = %q, want %q", running, tt.running)
			}
			if len(log.Splats) != len(tt.splats) {
				var got []string
				for _, s := range log.Splats {
					got = append(got, fmt.Sprintf("%s %q at line %d", s.Kind, s.Title, s.Line))
				}
				t.Fatalf("%d reports, want %d:\n%s", len(log.Splats), len(tt.splats), strings.Join(got, "\n"))
			}
			for i, w := range tt.splats {
				s := log.Splats[i]
				ex := s.Excerpt
				switch {
				case s.Kind != w.kind:
					t.Errorf("report %d: kind %q, want %q (title %q)", i, s.Kind, w.kind, s.Title)
				case !strings.HasPrefix(s.Title, w.title):
					t.Errorf("report %d: title %q, want prefix %q", i, s.Title, w.title)
				case !strings.HasPrefix(s.Where.String(), w.where):
					t.Errorf("report %d (%s): attributed to %q, want %q", i, s.Title, s.Where, w.where)
				case len(ex) == 0 || !strings.Contains(ex[0], w.first) || !strings.Contains(ex[len(ex)-1], w.last):
					t.Errorf("report %d (%s): excerpt from %q to %q, want from %q to %q", i, s.Title, first(ex), last(ex), w.first, w.last)
				case w.lines != 0 && len(ex) != w.lines:
					t.Errorf("report %d (%s): excerpt of %d lines, want %d:\n%s", i, s.Title, len(ex), w.lines, strings.Join(ex, "\n"))
				}
			}
		})
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func TestScanLongReportIsTruncated(t *testing.T) {
	var b strings.Builder
	b.WriteString("[    1.000000] ------------[ cut here ]------------\n")
	b.WriteString("[    1.000001] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n")
	for i := 0; i < MaxExcerpt+50; i++ {
		fmt.Fprintf(&b, "[    1.%06d]  frame_%d+0x1/0x2\n", i+2, i)
	}
	b.WriteString("[    2.000000] ---[ end trace 0000000000000000 ]---\n")
	b.WriteString("[    2.100000] ------------[ cut here ]------------\n")
	b.WriteString("[    2.100001] WARNING: CPU: 0 PID: 1 at y.c:1 g+0x1/0x2\n")
	b.WriteString("[    2.100002] ---[ end trace 0000000000000000 ]---\n")
	log, err := Scan(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Splats) != 2 {
		t.Fatalf("%d reports, want 2 (the long one must end at its end marker)", len(log.Splats))
	}
	if s := log.Splats[0]; len(s.Excerpt) != MaxExcerpt || s.Truncated != 53 {
		t.Errorf("excerpt %d lines, truncated %d; want %d and 53", len(s.Excerpt), s.Truncated, MaxExcerpt)
	}
	if text := log.Splats[0].Text("console.log"); !strings.Contains(text, "53 more lines in console.log") || !strings.HasPrefix(text, "kernel WARNING report (console.log:1), attributed to boot:") {
		t.Errorf("Text() =\n%s", text)
	}
}

func TestScanSilenceEndsAReport(t *testing.T) {
	// A report without an end marker ends when the kernel goes quiet for
	// more than maxGap; what follows is not part of it.
	in := "[    1.000000] BUG: sleeping function called from invalid context at x.c:1\n" +
		"[    1.000001] in_atomic(): 1, irqs_disabled(): 0\n" +
		"[   30.000000] an unrelated line much later\n"
	log, err := Scan(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Splats) != 1 || len(log.Splats[0].Excerpt) != 2 {
		t.Fatalf("reports %+v, want one of two lines", log.Splats)
	}
}

func TestWhereString(t *testing.T) {
	tests := []struct {
		w    Where
		want string
	}{
		{Where{Phase: PhaseBoot}, "boot"},
		{Where{Phase: PhaseAfter, Note: "allocated by pid 1"}, "after tests (allocated by pid 1)"},
		{Where{Phase: PhaseTest, Package: "p", Test: "TestX"}, "p TestX"},
		{Where{Phase: PhaseTest, Package: "p", Test: "TestX", AfterEnd: true}, "p TestX (after it ended: deferred work of the test?)"},
	}
	for _, tt := range tests {
		if got := tt.w.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.w, got, tt.want)
		}
	}
}
