package guestrun

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPlanRoundTrip(t *testing.T) {
	p := &Plan{Mode: ModeRun, Run: "TestA/b", TestTimeout: Duration{90 * time.Second}, KernelRelease: "6.12.117-nlmmap", Env: map[string]string{"X": "1"}}
	path := filepath.Join(t.TempDir(), PlanFile)
	if err := WritePlan(path, p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPlan(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("ReadPlan = %+v, want %+v", got, p)
	}
}

func TestPlanValidate(t *testing.T) {
	tests := []struct {
		p       Plan
		wantErr string
	}{
		{Plan{Mode: ModeProbe}, ""},
		{Plan{TestTimeout: Duration{time.Second}}, ""},
		{Plan{}, "test_timeout must be positive"},
		{Plan{Mode: "dance", TestTimeout: Duration{time.Second}}, "unknown mode"},
		{Plan{Run: "Test(", TestTimeout: Duration{time.Second}}, "run filter"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.p, err, tt.wantErr)
		}
	}
}

func TestSplitRun(t *testing.T) {
	tests := []struct {
		run       string
		parts     []string
		top       string
		runForFoo string
	}{
		{"", []string{""}, "", "^TestFoo$"},
		{"TestFoo", []string{"TestFoo"}, "TestFoo", "^TestFoo$"},
		{"TestFoo/sub", []string{"TestFoo", "sub"}, "TestFoo", "^TestFoo$/sub"},
		{"Test[/]x/a/b", []string{"Test[/]x", "a", "b"}, "Test[/]x", "^TestFoo$/a/b"},
	}
	for _, tt := range tests {
		if got := SplitRun(tt.run); !reflect.DeepEqual(got, tt.parts) {
			t.Errorf("SplitRun(%q) = %q, want %q", tt.run, got, tt.parts)
		}
		if got := TopLevelFilter(tt.run); got != tt.top {
			t.Errorf("TopLevelFilter(%q) = %q, want %q", tt.run, got, tt.top)
		}
		if got := RunFor("TestFoo", tt.run); got != tt.runForFoo {
			t.Errorf("RunFor(TestFoo, %q) = %q, want %q", tt.run, got, tt.runForFoo)
		}
	}
}

func TestParseMarker(t *testing.T) {
	tests := []struct {
		line string
		want Marker
		ok   bool
	}{
		{"[    2.345678] nlmmap: userspace up", Marker{Kind: KindUp}, true},
		{"nlmmap: userspace up\r", Marker{Kind: KindUp}, true},
		{"[   12.000001] nlmmap: BEGIN github.com/nlmmap/nlmmap/guest/basic TestUname", Marker{Kind: KindBegin, Package: "github.com/nlmmap/nlmmap/guest/basic", Test: "TestUname"}, true},
		{"[   12.5] nlmmap: END p TestUname FAIL", Marker{Kind: KindEnd, Package: "p", Test: "TestUname", Result: "FAIL"}, true},
		{"[ 13.0] nlmmap: DONE", Marker{Kind: KindDone}, true},
		{"[ 13.0] nlmmap: FATAL read plan: no such file", Marker{Kind: KindFatal, Message: "read plan: no such file"}, true},
		// Seen for real: the runner's stdout and a kernel record on one line.
		{"PASS basic.TestParseMessagesErro[    2.386451] nlmmap: DONE", Marker{Kind: KindDone}, true},
		{"[   12.6] nlmmap: PID p TestUname 231", Marker{Kind: KindPID, Package: "p", Test: "TestUname", PID: 231}, true},
		{"[   12.6] nlmmap: PID p TestUname x", Marker{}, false},
		{"[   40.0] nlmmap: CHECKS", Marker{Kind: KindChecks}, true},
		{"[   41.0] nlmmap: KMEMLEAK BEGIN", Marker{Kind: KindLeaksBegin}, true},
		{"[   42.0] nlmmap: KMEMLEAK END 3", Marker{Kind: KindLeaksEnd, Count: 3}, true},
		{"[   42.0] nlmmap: KMEMLEAK END", Marker{}, false},
		{"Linux version 6.12.117-nlmmap (nlmmap@nlmmap)", Marker{}, false},
		{"some text nlmmap: DONE", Marker{}, false},
		{"Kernel command line: VMTEST_MOUNT9P_fsdev0=nlmmap console=ttyS0", Marker{}, false},
		{"[ 1.0] nlmmap: BEGIN only-one-field", Marker{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseMarker(tt.line)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseMarker(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
	// What the guest writes parses back.
	for _, s := range []string{Begin("p", "TestX"), End("p", "TestX", "SKIP"), MarkerUp, MarkerDone, Fatal("two\nlines"), PID("p", "TestX", 7), MarkerChecks, MarkerLeaksBegin, LeaksEnd(0)} {
		if _, ok := ParseMarker("[    1.000000] " + s); !ok {
			t.Errorf("marker %q does not parse", s)
		}
	}
}
