package console

import (
	"fmt"
	"strings"
	"testing"
)

func scanString(t *testing.T, s string) *Log {
	t.Helper()
	log, err := Scan(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func dump(l *Log) string {
	var b strings.Builder
	for _, s := range l.Splats {
		b.WriteString(s.Kind + " " + s.Title + " @ " + s.Where.String() + "\n")
	}
	return b.String()
}

// A report from test A's deferred work that is still being printed when the
// runner writes END A and BEGIN B (they are written ~1ms apart) must not
// fail test B.
func TestReportSpanningBeginIsNotBlamedOnNextTest(t *testing.T) {
	in := `[   10.000000] nlmmap: BEGIN p TestA
[   10.500000] nlmmap: END p TestA PASS
[   10.500100] ------------[ cut here ]------------
[   10.500200] WARNING: CPU: 1 PID: 20 at net/netlink/af_netlink.c:400 netlink_sock_destruct+0x1/0x2
[   10.500300] nlmmap: BEGIN p TestB
[   10.500400] Modules linked in:
[   10.500500] CPU: 1 UID: 0 PID: 20 Comm: kworker/1:1 Not tainted 6.12.0 #1
[   10.500600] RIP: 0010:netlink_sock_destruct+0x1/0x2
[   10.500700] Call Trace:
[   10.500800]  <TASK>
[   10.500900]  rcu_core+0x1/0x2
[   10.501000]  </TASK>
[   10.501100] ---[ end trace 0000000000000000 ]---
[   11.000000] nlmmap: END p TestB PASS
`
	log := scanString(t, in)
	if got := log.For("p", "TestB"); len(got) != 0 {
		t.Errorf("TestB, which began while test A's report was printed, gets %d report(s):\n%s", len(got), dump(log))
	}
}

// A one-line report (no call trace follows) must not swallow the next,
// separate report.
func TestStacklessBugDoesNotSwallowKASAN(t *testing.T) {
	in := `[   10.000000] nlmmap: BEGIN p TestA
[   10.100000] BUG: Bad rss-counter state mm:000000001234abcd type:MM_ANONPAGES val:1
[   10.200000] ==================================================================
[   10.200100] BUG: KASAN: slab-use-after-free in netlink_rcv_skb+0x1/0x2
[   10.200200] Read of size 8 at addr ff1100000937cc00 by task x/100
[   10.200300] Call Trace:
[   10.200400]  <TASK>
[   10.200500]  </TASK>
[   10.200600] ==================================================================
[   11.000000] nlmmap: END p TestA FAIL
`
	log := scanString(t, in)
	kasan := false
	for _, s := range log.Splats {
		if s.Kind == KindKASAN {
			kasan = true
		}
	}
	if !kasan {
		t.Errorf("KASAN report not found; reports:\n%s", dump(log))
	}
}

// An expedited RCU stall (kernel/rcu/tree_exp.h:561 in 6.12) is an RCU stall.
func TestExpeditedRCUStallIsAnRCUStall(t *testing.T) {
	in := `[   10.000000] nlmmap: BEGIN p TestA
[   40.000000] rcu: INFO: rcu_sched detected expedited stalls on CPUs/tasks: { 1-.... } 21004 jiffies s: 1234 root: 0x2/.
[   40.000100] rcu: blocking rcu_node structures (internal RCU debug):
[   40.000200] Sending NMI from CPU 0 to CPUs 1:
[   40.000300] NMI backtrace for cpu 1
[   40.000400] CPU: 1 UID: 0 PID: 120 Comm: x.test Not tainted 6.12.0 #1
[   40.000500] RIP: 0010:netlink_spin+0x1/0x2
[   40.000600] Call Trace:
[   40.000700]  <TASK>
[   40.000800]  </TASK>
[   50.000000] nlmmap: END p TestA FAIL
`
	log := scanString(t, in)
	if len(log.Splats) != 1 || log.Splats[0].Kind != KindRCUStall {
		t.Errorf("want one RCU stall report; got:\n%s", dump(log))
	}
}

// The guest counts the leaks in kmemleak's report; if the scanner
// recognizes fewer, the difference is a report of its own.
func TestLeakCountMismatch(t *testing.T) {
	tests := []struct {
		name  string
		count int
		want  int // reports
	}{
		{"all recognized", 1, 1},
		{"one not recognized", 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := `[   10.000000] nlmmap: CHECKS
[   20.000000] nlmmap: KMEMLEAK BEGIN
[   20.000100] unreferenced object 0xff11000006c3e000 (size 64):
[   20.000200]   comm "init", pid 1, jiffies 4294682114
[   20.000300] a leak in a format the scanner does not know
` + fmt.Sprintf("[   20.000400] nlmmap: KMEMLEAK END %d\n", tt.count) + `[   20.100000] nlmmap: DONE
`
			log := scanString(t, in)
			if len(log.Splats) != tt.want {
				t.Fatalf("%d reports, want %d:\n%s", len(log.Splats), tt.want, dump(log))
			}
			last := log.Splats[len(log.Splats)-1]
			if last.Kind != KindKmemleak || last.Where.Phase != PhaseAfter {
				t.Errorf("last report %s @ %s, want kmemleak after the tests", last.Kind, last.Where)
			}
			if tt.want == 2 && !strings.Contains(last.Title, "reported 2 leak(s), 1 recognized") {
				t.Errorf("title %q", last.Title)
			}
		})
	}
}
