package compare

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/vmtests/boot"
	"github.com/nlmmap/nlmmap/vmtests/console"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

// outcome builds a run of ring TestOverrun, basic TestUname and nfq
// TestLog with the given actions and skip messages.
func outcome(overrun, uname, log, skipMsg string) *suite.Outcome {
	var ev strings.Builder
	add := func(pkg, test, action string) {
		if action == "skip" {
			fmt.Fprintf(&ev, `{"Action":"output","Package":%q,"Test":%q,"Output":%q}`+"\n", pkg, test, "    x_test.go:1: "+skipMsg+"\n")
		}
		fmt.Fprintf(&ev, `{"Action":%q,"Package":%q,"Test":%q}`+"\n", action, pkg, test)
	}
	add("x/rxring", "TestOverrun", overrun)
	add("x/basic", "TestUname", uname)
	add("x/nfq", "TestLog", log)
	return &suite.Outcome{
		Expected: []guestrun.ManifestPackage{
			{ImportPath: "x/basic", Name: "basic", Tests: []string{"TestUname"}},
			{ImportPath: "x/nfq", Name: "nfq", Tests: []string{"TestLog"}},
			{ImportPath: "x/rxring", Name: "rxring", Tests: []string{"TestOverrun"}},
		},
		Results: boot.ParseResults([]byte(ev.String())), Console: &console.Log{Leaks: -1},
	}
}

func TestTable(t *testing.T) {
	tests := []struct {
		name     string
		base     *suite.Outcome
		patched  *suite.Outcome
		problems []string
		rows     []string
	}{
		{
			name:    "as it should be",
			base:    outcome("skip", "pass", "pass", "kernel without memory-mapped netlink (setsockopt NETLINK_RX_RING: ENOPROTOOPT)"),
			patched: outcome("pass", "pass", "pass", ""),
			rows: []string{
				"basic/TestUname     PASS                PASS\n",
				"nfq/TestLog         PASS                PASS\n",
				"rxring/TestOverrun  SKIP (ENOPROTOOPT)  PASS\n",
			},
		},
		{
			name:    "ENOPROTOOPT by its strerror text",
			base:    outcome("skip", "pass", "pass", "ring: setsockopt NETLINK_RX_RING: memory-mapped netlink not supported by this kernel: protocol not available"),
			patched: outcome("pass", "pass", "pass", ""),
			rows:    []string{"rxring/TestOverrun  SKIP (ENOPROTOOPT)  PASS\n"},
		},
		{
			name:    "baseline skips for another reason, series fails",
			base:    outcome("skip", "pass", "pass", "no /proc"),
			patched: outcome("fail", "pass", "pass", ""),
			problems: []string{
				"rxring/TestOverrun: skips on baseline for another reason than ENOPROTOOPT: x_test.go:1: no /proc",
				"rxring/TestOverrun: FAIL on debug: failed in the guest",
			},
			rows: []string{"rxring/TestOverrun  SKIP !    FAIL !\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := New([]string{Baseline, "debug"}, []*suite.Outcome{tt.base, tt.patched})
			got := tab.Problems()
			if strings.Join(got, "\n") != strings.Join(tt.problems, "\n") {
				t.Errorf("Problems() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.problems, "\n"))
			}
			s := tab.String()
			if !strings.HasPrefix(s, "guest test          baseline") {
				t.Errorf("header:\n%s", s)
			}
			for _, r := range tt.rows {
				if !strings.Contains(s, r) {
					t.Errorf("table lacks %q:\n%s", r, s)
				}
			}
			if !strings.Contains(s, "baseline: 3 guest tests") {
				t.Errorf("no summaries:\n%s", s)
			}
		})
	}
}
