package boot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

// fakeQEMU writes a shell script that ignores its arguments, prints the
// console lines and then runs tail (e.g. "exec sleep 600" or "exit 0").
func fakeQEMU(t *testing.T, lines []string, tail string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, l := range lines {
		fmt.Fprintf(&b, "printf '%%s\\n' '%s'\n", l)
	}
	b.WriteString(tail + "\n")
	p := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(p, []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeImages(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	k, i := filepath.Join(dir, "bzImage"), filepath.Join(dir, "initramfs.cpio")
	os.WriteFile(k, []byte("kernel"), 0o644)
	os.WriteFile(i, []byte("initramfs"), 0o644)
	return k, i
}

func bootFake(t *testing.T, qemuPath string, bootTimeout, vmTimeout time.Duration) (*Result, error, time.Duration) {
	t.Helper()
	k, i := fakeImages(t)
	start := time.Now()
	res, err := Boot(context.Background(), Options{
		Kernel: k, Initramfs: i, RunDir: t.TempDir(),
		Plan:        guestrun.Plan{TestTimeout: guestrun.Duration{D: time.Minute}},
		Accel:       "tcg",
		BootTimeout: bootTimeout, VMTimeout: vmTimeout, PowerOffGrace: time.Second,
		QEMU: qemuPath,
	})
	return res, err, time.Since(start)
}

func consoleLines(n int) []string {
	var ls []string
	for i := 1; i <= n; i++ {
		ls = append(ls, fmt.Sprintf("[    0.%06d] kernel line %d", i, i))
	}
	return ls
}

func TestBootNeverReachesUserspace(t *testing.T) {
	q := fakeQEMU(t, consoleLines(80), "exec sleep 600")
	res, err, took := bootFake(t, q, 2*time.Second, time.Minute)
	var be *BootError
	if !errors.As(err, &be) || be.Kind != NoUserspace {
		t.Fatalf("Boot = %v, want a %s BootError", err, NoUserspace)
	}
	if took > 15*time.Second {
		t.Errorf("took %s to give up; the boot timeout is 2s", took)
	}
	if len(be.Tail) != TailLines || be.Tail[len(be.Tail)-1] != "[    0.000080] kernel line 80" || be.Tail[0] != "[    0.000031] kernel line 31" {
		t.Errorf("tail = %d lines, %q .. %q; want the last 50 console lines", len(be.Tail), be.Tail[0], be.Tail[len(be.Tail)-1])
	}
	msg := err.Error()
	for _, want := range []string{"did not reach user space within 2s", "Last 50 console lines", "kernel line 80", "Next: read " + res.ConsolePath} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	if data, _ := os.ReadFile(res.ConsolePath); !strings.Contains(string(data), "kernel line 80") {
		t.Errorf("console.log does not have the console output: %q", data)
	}
}

func TestBootOutcomes(t *testing.T) {
	up := "[    1.000000] nlmmap: userspace up"
	begin := "[    2.000000] nlmmap: BEGIN example.com/p TestHang"
	tests := []struct {
		name        string
		lines       []string
		tail        string
		wantKind    string // "" for success
		wantRunning string
		wantMsg     string
		wantOffKill bool
	}{
		{
			name:  "finishes and powers off",
			lines: []string{up, begin, "[    3.000000] nlmmap: END example.com/p TestHang PASS", "[    3.100000] nlmmap: DONE"},
			tail:  "exit 0",
		},
		{
			name:        "finishes but does not power off",
			lines:       []string{up, "[    3.100000] nlmmap: DONE"},
			tail:        "exec sleep 600",
			wantOffKill: true,
		},
		{
			name:        "goes silent in a test",
			lines:       []string{up, begin},
			tail:        "exec sleep 600",
			wantKind:    VMTimeout,
			wantRunning: "example.com/p TestHang",
			wantMsg:     "while example.com/p TestHang was running (last BEGIN marker)",
		},
		{
			name:        "panics in a test",
			lines:       []string{up, begin, "[    2.500000] Kernel panic - not syncing: Fatal exception"},
			tail:        "exit 0",
			wantKind:    Stopped,
			wantRunning: "example.com/p TestHang",
			wantMsg:     "Kernel panic - not syncing",
		},
		{
			name:     "QEMU dies before user space",
			lines:    consoleLines(3),
			tail:     "kill -ABRT $$",
			wantKind: Stopped,
			wantMsg:  "QEMU exited before the guest reached user space",
		},
		{
			name:     "runner fails",
			lines:    []string{up, "[    1.500000] nlmmap: FATAL read plan: no such file"},
			tail:     "exit 0",
			wantKind: GuestFatal,
			wantMsg:  "the guest runner failed: read plan: no such file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err, took := bootFake(t, fakeQEMU(t, tt.lines, tt.tail), 5*time.Second, 3*time.Second)
			if took > 20*time.Second {
				t.Errorf("took %s", took)
			}
			if tt.wantKind == "" {
				if err != nil {
					t.Fatalf("Boot = %v, want success", err)
				}
				if res.PowerOffTimeout != tt.wantOffKill {
					t.Errorf("PowerOffTimeout = %v, want %v", res.PowerOffTimeout, tt.wantOffKill)
				}
				return
			}
			var be *BootError
			if !errors.As(err, &be) || be.Kind != tt.wantKind {
				t.Fatalf("Boot = %v, want a %s BootError", err, tt.wantKind)
			}
			if be.Running != tt.wantRunning {
				t.Errorf("Running = %q, want %q", be.Running, tt.wantRunning)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error does not contain %q:\n%s", tt.wantMsg, err)
			}
		})
	}
}

func TestBootStuckTest(t *testing.T) {
	// The guest stops answering in a test: the host gives up after the
	// step timeout, long before the VM timeout, and names the test.
	defer func(d time.Duration) { stepPoll = d }(stepPoll)
	stepPoll = 50 * time.Millisecond
	k, i := fakeImages(t)
	var mu sync.Mutex
	var seen []string
	start := time.Now()
	_, err := Boot(context.Background(), Options{
		Kernel: k, Initramfs: i, RunDir: t.TempDir(), Accel: "tcg",
		Plan:        guestrun.Plan{TestTimeout: guestrun.Duration{D: time.Minute}},
		BootTimeout: 10 * time.Second, VMTimeout: time.Minute, StepTimeout: time.Second,
		Progress: func(m guestrun.Marker) {
			mu.Lock()
			seen = append(seen, m.Kind)
			mu.Unlock()
		},
		QEMU: fakeQEMU(t, []string{
			"[    1.0] nlmmap: userspace up",
			"[    2.0] nlmmap: BEGIN example.com/p TestA",
			"[    2.1] nlmmap: END example.com/p TestA PASS",
			"[    2.2] nlmmap: BEGIN example.com/p TestStuck",
		}, "exec sleep 600"),
	})
	var be *BootError
	if !errors.As(err, &be) || be.Kind != Stuck || be.Running != "example.com/p TestStuck" {
		t.Fatalf("Boot = %v, want a %s BootError naming TestStuck", err, Stuck)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %s to notice a stuck test with a 1s step timeout", d)
	}
	if !strings.Contains(err.Error(), "example.com/p TestStuck did not end within 1s") {
		t.Errorf("error does not name the stuck test:\n%s", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{guestrun.KindUp, guestrun.KindBegin, guestrun.KindEnd, guestrun.KindBegin}; !reflect.DeepEqual(seen, want) {
		t.Errorf("Progress saw %q, want %q", seen, want)
	}
}

func TestBootWritesPlan(t *testing.T) {
	k, i := fakeImages(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, guestrun.ResultsFile), []byte("stale"), 0o644)
	plan := guestrun.Plan{Run: "TestX", TestTimeout: guestrun.Duration{D: time.Minute}, KernelRelease: "6.12.117-nlmmap"}
	_, err := Boot(context.Background(), Options{
		Kernel: k, Initramfs: i, RunDir: dir, Plan: plan, Accel: "tcg",
		BootTimeout: 5 * time.Second, VMTimeout: 5 * time.Second,
		QEMU: fakeQEMU(t, []string{"nlmmap: userspace up", "nlmmap: DONE"}, "exit 0"),
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := guestrun.ReadPlan(filepath.Join(dir, guestrun.PlanFile))
	if err != nil || got.Run != "TestX" || got.KernelRelease != "6.12.117-nlmmap" {
		t.Errorf("plan.json = %+v, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, guestrun.ResultsFile)); !os.IsNotExist(err) {
		t.Errorf("stale results.json was not removed before the boot")
	}
}

func TestChooseAccel(t *testing.T) {
	k, i := fakeImages(t)
	hang := fakeQEMU(t, consoleLines(3), "exec sleep 600")
	works := fakeQEMU(t, []string{"nlmmap: userspace up", "nlmmap: DONE"}, "exit 0")
	tests := []struct {
		name       string
		env        map[string]string
		kvm        bool
		qemu       string
		wantAccel  string
		wantReason string
		wantErr    bool
	}{
		{name: "override", env: map[string]string{"NLMMAP_ACCEL": "kvm"}, kvm: false, qemu: hang, wantAccel: "kvm", wantReason: "NLMMAP_ACCEL=kvm"},
		{name: "bad override", env: map[string]string{"NLMMAP_ACCEL": "hvf"}, wantErr: true},
		{name: "no kvm", kvm: false, qemu: hang, wantAccel: "tcg", wantReason: "no usable /dev/kvm"},
		{name: "kvm hangs", kvm: true, qemu: hang, wantAccel: "tcg", wantReason: "kvm probe: guest did not reach user space in 2s"},
		{name: "QEMU aborts under kvm", kvm: true, qemu: fakeQEMU(t, nil, "kill -ABRT $$"), wantAccel: "tcg", wantReason: "kvm probe: QEMU exited before the guest reached user space (signal: aborted)"},
		{name: "kvm works", kvm: true, qemu: works, wantAccel: "kvm", wantReason: "kvm probe: guest reached user space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			v, err := ChooseAccel(context.Background(), ProbeOptions{
				Kernel: k, Initramfs: i, CacheRoot: t.TempDir(), QEMU: tt.qemu,
				Timeout:     2 * time.Second,
				Getenv:      func(k string) string { return tt.env[k] },
				KVMUsable:   func() bool { return tt.kvm },
				BootID:      func() string { return "boot-1" },
				QEMUVersion: func() string { return "QEMU 7.2" },
			})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ChooseAccel = %v, want an error", v)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Accel != tt.wantAccel || v.Reason != tt.wantReason {
				t.Errorf("ChooseAccel = %s, want accelerator: %s (%s)", v, tt.wantAccel, tt.wantReason)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestChooseAccelCachesPerBoot(t *testing.T) {
	k, i := fakeImages(t)
	cache := t.TempDir()
	probes := 0
	opts := func(boot string) ProbeOptions {
		return ProbeOptions{
			Kernel: k, Initramfs: i, CacheRoot: cache,
			QEMU:        fakeQEMU(t, nil, "exec sleep 600"),
			Timeout:     time.Second,
			Getenv:      func(string) string { return "" },
			KVMUsable:   func() bool { return true },
			BootID:      func() string { probes++; return boot },
			QEMUVersion: func() string { return "QEMU 7.2" },
		}
	}
	if v, err := ChooseAccel(context.Background(), opts("a")); err != nil || v.Accel != "tcg" {
		t.Fatalf("first probe: %v, %v", v, err)
	}
	start := time.Now()
	v, err := ChooseAccel(context.Background(), opts("a"))
	if err != nil || v.Accel != "tcg" || !strings.Contains(v.Reason, "cached for this host boot") {
		t.Errorf("second call = %v, %v; want the cached verdict", v, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("cached verdict took %s", d)
	}
	if v, _ := ChooseAccel(context.Background(), opts("b")); strings.Contains(v.Reason, "cached") {
		t.Errorf("after a host reboot the cached verdict was reused: %v", v)
	}
}

func TestScaleTimeouts(t *testing.T) {
	kvm := ScaleTimeouts("kvm", false, 2)
	tcg := ScaleTimeouts("tcg", false, 2)
	dbg := ScaleTimeouts("tcg", true, 2)
	if !(kvm.Boot < tcg.Boot && tcg.Boot < dbg.Boot && kvm.PerTest < tcg.PerTest && tcg.PerTest < dbg.PerTest) {
		t.Errorf("timeouts do not grow with tcg and debug: %+v %+v %+v", kvm, tcg, dbg)
	}
	if want := tcg.Boot + 2*tcg.PerTest + time.Minute; tcg.VM != want {
		t.Errorf("VM timeout = %s, want boot + 2 tests + 1m = %s", tcg.VM, want)
	}
}
