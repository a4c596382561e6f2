package repro

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/boot"
	"github.com/nlmmap/nlmmap/vmtests/console"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

const pkg = "github.com/nlmmap/nlmmap/guest/splatdemo"

// fakeRun lays out a finished run the way make kernel, make initramfs and
// suite.Run leave it, and returns its outcome: TestWarn passed in Go but
// the kernel WARNed during it.
func fakeRun(t *testing.T) *suite.Outcome {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bi, _ := json.Marshal(kernel.BuildInfo{
		Flavor: "debug", KernelVersion: "6.12.117", KernelRelease: "6.12.117-nlmmap",
		BaseCommit: "10b4c528419a726f94a1a95726f540d297edd6b9", HeadCommit: "db1026f7ecca",
		Source:   kernel.Source{Detail: "tarball linux-source-6.12.tar.xz sha256 585a4a07"},
		Patches:  []kernel.FileHash{{Name: "0001-netlink-expose.patch", SHA256: "db95fb07"}},
		Compiler: "gcc 12.2.0",
	})
	kern := write("out/debug/bzImage", "kernel image")
	write("out/debug/kernel.release", "6.12.117-nlmmap\n")
	write("out/debug/.config", "CONFIG_KASAN=y\n")
	write("out/debug/build.json", string(bi))
	initrd := write("out/initramfs.cpio", "cpio archive")
	write("out/initramfs.json", `{"packages":[{"import_path":"`+pkg+`","name":"splatdemo","tests":["TestWarn","TestOK"]}]}`)
	run := filepath.Join(dir, "out", "run")
	plan := guestrun.Plan{Mode: guestrun.ModeRun, Run: "TestWarn|TestOK", TestTimeout: guestrun.Duration{D: 9 * time.Minute}, KernelRelease: "6.12.117-nlmmap"}
	os.MkdirAll(run, 0o755)
	guestrun.WritePlan(filepath.Join(run, guestrun.PlanFile), &plan)
	cmdline := "qemu-system-x86_64 -machine q35,accel=tcg -cpu max -smp 2 -m 1G -nographic -fsdev local,id=fsdev0,path=" + run +
		",security_model=mapped-file -device virtio-9p-pci,fsdev=fsdev0,mount_tag=nlmmap -no-reboot -kernel " + kern +
		" -append 'VMTEST_MOUNT9P_fsdev0=nlmmap panic=-1 console=ttyS0 printk.devkmsg=on' -initrd " + initrd
	write("out/run/qemu-cmdline.txt", cmdline+"\n")
	consoleLog := write("out/run/console.log", `[    1.0] nlmmap: userspace up
[    2.0] nlmmap: BEGIN `+pkg+` TestOK
[    2.1] nlmmap: END `+pkg+` TestOK PASS
[    3.0] nlmmap: BEGIN `+pkg+` TestWarn
[    3.1] ------------[ cut here ]------------
[    3.1] WARNING: CPU: 0 PID: 137 at net/netlink/af_netlink.c:1775 netlink_debug_splat+0x94/0x25d
[    3.1] ---[ end trace 0000000000000000 ]---
[    3.2] nlmmap: END `+pkg+` TestWarn PASS
[    4.0] nlmmap: DONE
`)
	results := `{"Action":"pass","Package":"` + pkg + `","Test":"TestOK"}
{"Action":"pass","Package":"` + pkg + `","Test":"TestWarn"}
`
	write("out/run/results.json", results)
	cl, err := console.ScanFile(consoleLog)
	if err != nil {
		t.Fatal(err)
	}
	return &suite.Outcome{
		Kernel: kern, Initramfs: initrd, RunDir: run, KernelRelease: "6.12.117-nlmmap",
		Accel: "tcg", AccelReason: "no usable /dev/kvm", Plan: plan, Cmdline: cmdline,
		Timeouts: suite.Timeouts{VM: "20m0s"},
		Expected: []guestrun.ManifestPackage{{ImportPath: pkg, Name: "splatdemo", Tests: []string{"TestOK", "TestWarn"}}},
		Results:  boot.ParseResults([]byte(results)), Console: cl,
	}
}

func TestWriteOpen(t *testing.T) {
	out := fakeRun(t)
	dst := filepath.Join(t.TempDir(), "bundle")
	b, err := Write(out, dst, Options{Now: func() time.Time { return time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{KernelFile, ReleaseFile, ConfigFile, BuildFile, InitramfsFile, ManifestFile, guestrun.PlanFile, boot.CmdlineFile, boot.ConsoleFile, guestrun.ResultsFile, suite.OutcomeFile, ReadmeFile, ScriptFile, MetaFile} {
		if _, err := os.Stat(filepath.Join(dst, f)); err != nil {
			t.Errorf("bundle lacks %s: %v", f, err)
		}
	}
	if !b.Meta.Failed || len(b.Meta.Failures) != 1 || !strings.HasPrefix(b.Meta.Failures[0], "splatdemo TestWarn: kernel WARNING: WARNING: CPU: 0 PID: 137") {
		t.Errorf("failures = %q", b.Meta.Failures)
	}
	readme, _ := os.ReadFile(filepath.Join(dst, ReadmeFile))
	for _, s := range []string{
		"make repro BUNDLE=" + dst,
		"base commit `10b4c528419a726f94a1a95726f540d297edd6b9`",
		"db95fb07  0001-netlink-expose.patch",
		"`-run \"TestWarn|TestOK\"`, per-test timeout 9m0s",
		"-kernel " + out.Kernel,
		"splatdemo TestWarn: kernel WARNING",
	} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("README lacks %q:\n%s", s, readme)
		}
	}
	script, _ := os.ReadFile(filepath.Join(dst, ScriptFile))
	if !strings.Contains(string(script), `-kernel "$B/bzImage" `) || !strings.Contains(string(script), `path="$SHARE",`) || !strings.Contains(string(script), `-initrd "$B/initramfs.cpio"`) {
		t.Errorf("run.sh does not relocate the command line:\n%s", script)
	}

	// Another directory: it opens, and it is self-contained.
	moved := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.Rename(dst, moved); err != nil {
		t.Fatal(err)
	}
	got, err := Open(moved)
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome.Kernel != filepath.Join(moved, KernelFile) || got.Outcome.Summary() != out.Summary() {
		t.Errorf("reopened: kernel %s, summary %q; want the bundle's and %q", got.Outcome.Kernel, got.Outcome.Summary(), out.Summary())
	}
	o := got.Replay("/tmp/replay", "")
	if o.Kernel != filepath.Join(moved, KernelFile) || o.Accel != "tcg" || o.PlanAccel != "tcg" || o.Plan == nil || o.Plan.Run != "TestWarn|TestOK" {
		t.Errorf("Replay = %+v", o)
	}
	// A KVM recording is probed for again (the replaying machine may
	// have no working KVM); NLMMAP_ACCEL still decides.
	kvm := *got
	kvm.Meta.Accel = "kvm"
	if o := kvm.Replay("/tmp/replay", ""); o.Accel != "" || o.PlanAccel != "kvm" {
		t.Errorf("Replay of a KVM bundle: accel %q, plan accel %q; want a probe and kvm", o.Accel, o.PlanAccel)
	}
	if o := kvm.Replay("/tmp/replay", "tcg"); o.Accel != "tcg" || o.AccelReason != "NLMMAP_ACCEL=tcg" {
		t.Errorf("Replay with NLMMAP_ACCEL=tcg: accel %q (%s)", o.Accel, o.AccelReason)
	}

	// A bundle of the bundle (what make repro does with out/last-failed)
	// still relocates the original command line and names the original run.
	again := filepath.Join(t.TempDir(), "again")
	b2, err := Write(got.Outcome, again, Options{FromRun: got.Meta.FromRun})
	if err != nil {
		t.Fatal(err)
	}
	script2, _ := os.ReadFile(filepath.Join(again, ScriptFile))
	if !strings.Contains(string(script2), `-kernel "$B/bzImage" `) || b2.Meta.FromRun != out.RunDir {
		t.Errorf("bundle of a bundle: from %q, run.sh:\n%s", b2.Meta.FromRun, script2)
	}

	// A damaged bundle is refused, naming the file.
	os.WriteFile(filepath.Join(moved, KernelFile), []byte("another kernel"), 0o644)
	if _, err := Open(moved); err == nil || !strings.Contains(err.Error(), "bzImage differs") {
		t.Errorf("Open(damaged) = %v, want it to name bzImage", err)
	}
}

func TestRunScript(t *testing.T) {
	// run.sh with a QEMU stand-in that prints a console like the guest's.
	out := fakeRun(t)
	dst := filepath.Join(t.TempDir(), "bundle")
	if _, err := Write(out, dst, Options{}); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	fake := "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in -kernel) k=1;; esac; done\n" +
		"echo '[    1.0] nlmmap: BEGIN p TestWarn'\n" +
		"echo '[    1.1] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2'\n" +
		"echo '[    1.2] nlmmap: END p TestWarn FAIL'\n" +
		"echo \"[    1.3] args: $*\"\n" +
		"echo '[    1.4] nlmmap: DONE'\n"
	os.WriteFile(filepath.Join(bin, "qemu-system-x86_64"), []byte(fake), 0o755)
	cmd := exec.Command("sh", filepath.Join(dst, ScriptFile))
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "ACCEL=kvm")
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run.sh: %v\n%s", err, got)
	}
	for _, s := range []string{"0 passed, 1 failed, 0 skipped", "FAIL p TestWarn FAIL", "WARNING: CPU: 0", "recorded run: 2 guest tests: 1 passed, 1 failed"} {
		if !strings.Contains(string(got), s) {
			t.Errorf("run.sh output lacks %q:\n%s", s, got)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(dst, "replay-*", "console.log"))
	if len(logs) != 1 {
		t.Fatalf("replay console logs: %v", logs)
	}
	data, _ := os.ReadFile(logs[0])
	if !strings.Contains(string(data), "accel=kvm ") || !strings.Contains(string(data), "-kernel "+dst+"/bzImage ") {
		t.Errorf("QEMU did not get the relocated command line with ACCEL=kvm:\n%s", data)
	}
}

func TestCompare(t *testing.T) {
	a := fakeRun(t)
	b := fakeRun(t)
	if c := Compare(a, b); !c.Same || !strings.HasPrefix(c.String(), "reproduced") {
		t.Errorf("Compare(same) = %+v", c)
	}
	b.Console.Splats = nil
	b.Console.Splats = append(b.Console.Splats, console.Splat{Kind: console.KindBUG, Title: "BUG: x", Where: console.Where{Phase: console.PhaseBoot}})
	c := Compare(a, b)
	if c.Same || len(c.Gone) != 1 || c.Gone[0] != "splatdemo TestWarn" || len(c.New) != 1 || c.New[0] != "console/boot" {
		t.Errorf("Compare = %+v", c)
	}
	if s := c.String(); !strings.Contains(s, "failed before but not now: splatdemo TestWarn") || !strings.Contains(s, "fail now but did not before: console/boot") {
		t.Errorf("String() = %q", s)
	}
}
