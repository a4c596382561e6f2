package guestrun

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	sampleBin string
	t2jBin    string
	buildErr  error
)

// buildSample builds the sample test package and test2json once.
func buildSample(t *testing.T) (string, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds test binaries; skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "guestrun-test-")
		if err != nil {
			buildErr = err
			return
		}
		sampleBin = filepath.Join(dir, "sample.test")
		t2jBin = filepath.Join(dir, "test2json")
		for _, args := range [][]string{
			{"test", "-c", "-o", sampleBin, "./testdata/sample"},
			{"build", "-o", t2jBin, "cmd/test2json"},
		} {
			if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
				buildErr = err
				t.Logf("go %v: %s", args, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return sampleBin, t2jBin
}

type result struct {
	summary Summary
	kmsg    []string
	events  []Event
}

func run(t *testing.T, plan *Plan, env []string, test2json string) result {
	t.Helper()
	bin, t2j := buildSample(t)
	if test2json != "" {
		t2j = test2json
	}
	var kmsg, results bytes.Buffer
	r := &Runner{
		Plan:      plan,
		Manifest:  &Manifest{Packages: []ManifestPackage{{ImportPath: "example.com/sample", Name: "sample", Binary: bin}}},
		Kmsg:      &kmsg,
		Results:   &results,
		Test2JSON: t2j,
		KillGrace: time.Second,
		Env:       append(os.Environ(), env...),
	}
	sum, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var evs []Event
	for _, line := range strings.Split(strings.TrimSpace(results.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("results line %q: %v", line, err)
		}
		evs = append(evs, e)
	}
	return result{summary: sum, kmsg: strings.Split(strings.TrimSpace(kmsg.String()), "\n"), events: evs}
}

func TestRunnerAll(t *testing.T) {
	res := run(t, &Plan{TestTimeout: Duration{time.Minute}, KernelRelease: "6.12.0-nlmmap", Env: map[string]string{"SAMPLE_EXTRA": "x"}}, nil, "")
	wantKmsg := []string{
		"nlmmap: BEGIN example.com/sample TestCrash", "nlmmap: END example.com/sample TestCrash PASS",
		"nlmmap: BEGIN example.com/sample TestEnv", "nlmmap: END example.com/sample TestEnv PASS",
		"nlmmap: BEGIN example.com/sample TestFail", "nlmmap: END example.com/sample TestFail FAIL",
		"nlmmap: BEGIN example.com/sample TestHang", "nlmmap: END example.com/sample TestHang PASS",
		"nlmmap: BEGIN example.com/sample TestPass", "nlmmap: END example.com/sample TestPass PASS",
		"nlmmap: BEGIN example.com/sample TestSkip", "nlmmap: END example.com/sample TestSkip SKIP",
		"nlmmap: BEGIN example.com/sample TestSub", "nlmmap: END example.com/sample TestSub FAIL",
	}
	// PID markers carry numbers that change from run to run: check and drop them.
	var kmsg []string
	for _, l := range res.kmsg {
		if m, ok := ParseMarker(l); ok && m.Kind == KindPID {
			if m.PID <= 0 || m.Package != "example.com/sample" {
				t.Errorf("bad PID marker %q", l)
			}
			continue
		}
		kmsg = append(kmsg, l)
	}
	if n := len(res.kmsg) - len(kmsg); n != 7 {
		t.Errorf("%d PID markers, want one per test (7)", n)
	}
	res.kmsg = kmsg
	if !reflect.DeepEqual(res.kmsg, wantKmsg) {
		t.Errorf("kmsg =\n%s\nwant\n%s", strings.Join(res.kmsg, "\n"), strings.Join(wantKmsg, "\n"))
	}
	if want := (Summary{Pass: 4, Fail: 2, Skip: 1}); res.summary != want {
		t.Errorf("summary = %+v, want %+v", res.summary, want)
	}
	// Subtest events are there for the host to build its tree.
	found := false
	for _, e := range res.events {
		if e.Test == "TestSub/b" && e.Action == "fail" {
			found = true
		}
	}
	if !found {
		t.Error("no fail event for TestSub/b")
	}
}

func TestRunnerFilter(t *testing.T) {
	res := run(t, &Plan{Run: "TestSub/a", TestTimeout: Duration{time.Minute}}, nil, "")
	want := []string{"nlmmap: BEGIN example.com/sample TestSub", "nlmmap: PID example.com/sample TestSub <pid>", "nlmmap: END example.com/sample TestSub PASS"}
	if len(res.kmsg) == 3 {
		res.kmsg[1] = res.kmsg[1][:strings.LastIndexByte(res.kmsg[1], ' ')] + " <pid>"
	}
	if !reflect.DeepEqual(res.kmsg, want) {
		t.Errorf("kmsg = %q, want %q (only TestSub, only subtest a)", res.kmsg, want)
	}
}

func TestRunnerTimeout(t *testing.T) {
	// The test binary's own -test.timeout fires first and reports a failure.
	start := time.Now()
	res := run(t, &Plan{Run: "TestHang", TestTimeout: Duration{2 * time.Second}}, []string{"SAMPLE_HANG=1"}, "")
	if res.summary.Fail != 1 || time.Since(start) > 20*time.Second {
		t.Errorf("summary %+v after %s, want one failure within the timeout", res.summary, time.Since(start))
	}
}

func TestRunnerKillsAWedgedTest(t *testing.T) {
	// A test2json that never exits: the runner kills it and records why.
	dir := t.TempDir()
	wedged := filepath.Join(dir, "test2json")
	os.WriteFile(wedged, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755)
	start := time.Now()
	res := run(t, &Plan{Run: "TestPass", TestTimeout: Duration{time.Second}}, nil, wedged)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %s to kill a wedged test", d)
	}
	if res.summary.Fail != 1 {
		t.Errorf("summary = %+v, want one failure", res.summary)
	}
	var out string
	for _, e := range res.events {
		out += e.Output
	}
	if !strings.Contains(out, "TestPass timed out after") || !strings.Contains(out, "was killed") {
		t.Errorf("events do not say the test timed out and was killed: %q", out)
	}
}

func TestRunnerCrash(t *testing.T) {
	res := run(t, &Plan{Run: "TestCrash", TestTimeout: Duration{time.Minute}}, []string{"SAMPLE_CRASH=1"}, "")
	if res.summary.Fail != 1 {
		t.Errorf("summary = %+v, want the crash to count as a failure", res.summary)
	}
}
