package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

// ProbeOptions configures ChooseAccel.
type ProbeOptions struct {
	Kernel    string
	Initramfs string
	CacheRoot string // where the verdict is cached; "" disables caching
	QEMU      string // default DefaultQEMU
	// Timeout bounds the KVM probe; default 20s.
	Timeout time.Duration
	Getenv  func(string) string
	// KVMUsable reports whether /dev/kvm can be opened; default tries it.
	KVMUsable func() bool
	// BootID and QEMUVersion key the cached verdict; defaults read
	// /proc/sys/kernel/random/boot_id and run qemu --version.
	BootID      func() string
	QEMUVersion func() string
	Log         io.Writer
}

// Verdict is the chosen accelerator and why.
type Verdict struct {
	Accel  string `json:"accel"`
	Reason string `json:"reason"`
	BootID string `json:"boot_id"`
	QEMU   string `json:"qemu"`
}

func (v Verdict) String() string { return fmt.Sprintf("accelerator: %s (%s)", v.Accel, v.Reason) }

// ChooseAccel picks kvm or tcg. NLMMAP_ACCEL=kvm|tcg decides outright;
// without a usable /dev/kvm it is tcg; otherwise a probe boots the real
// kernel and initramfs under KVM with a probe plan, and falls back to tcg if
// the guest does not reach user space within the timeout (on some hosts
// /dev/kvm exists but guests hang). The probe's verdict is cached per host
// boot and QEMU version.
func ChooseAccel(ctx context.Context, o ProbeOptions) (Verdict, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
	if o.KVMUsable == nil {
		o.KVMUsable = kvmUsable
	}
	if o.BootID == nil {
		o.BootID = bootID
	}
	if o.QEMUVersion == nil {
		o.QEMUVersion = func() string { return qemuVersion(o.QEMU) }
	}
	switch a := o.Getenv("NLMMAP_ACCEL"); a {
	case "":
	case "kvm", "tcg":
		return Verdict{Accel: a, Reason: "NLMMAP_ACCEL=" + a}, nil
	default:
		return Verdict{}, fmt.Errorf("choose accelerator: NLMMAP_ACCEL=%q\nNext: set NLMMAP_ACCEL=kvm, NLMMAP_ACCEL=tcg, or unset it to probe", a)
	}
	if !o.KVMUsable() {
		return Verdict{Accel: "tcg", Reason: "no usable /dev/kvm"}, nil
	}
	v := Verdict{BootID: o.BootID(), QEMU: o.QEMUVersion()}
	cache := ""
	if o.CacheRoot != "" {
		cache = filepath.Join(o.CacheRoot, "accel.json")
		var old Verdict
		if data, err := os.ReadFile(cache); err == nil && json.Unmarshal(data, &old) == nil &&
			old.BootID == v.BootID && old.QEMU == v.QEMU && old.Accel != "" {
			old.Reason += ", cached for this host boot"
			return old, nil
		}
	}
	share, err := os.MkdirTemp("", "nlmmap-probe-")
	if err != nil {
		return Verdict{}, fmt.Errorf("choose accelerator: %w", err)
	}
	defer os.RemoveAll(share)
	fmt.Fprintf(logOrDiscard(o.Log), "accelerator: probing kvm (up to %s)\n", o.Timeout)
	_, err = Boot(ctx, Options{
		Kernel: o.Kernel, Initramfs: o.Initramfs, RunDir: share,
		Plan:        guestrun.Plan{Mode: guestrun.ModeProbe},
		Accel:       "kvm",
		BootTimeout: o.Timeout, VMTimeout: o.Timeout + 10*time.Second, PowerOffGrace: 5 * time.Second,
		QEMU: o.QEMU, Log: o.Log,
	})
	var be *BootError
	switch {
	case err == nil:
		v.Accel, v.Reason = "kvm", "kvm probe: guest reached user space"
	case errors.As(err, &be) && be.Kind == NoUserspace:
		v.Accel, v.Reason = "tcg", fmt.Sprintf("kvm probe: guest did not reach user space in %s", o.Timeout)
	case ctx.Err() != nil:
		return Verdict{}, fmt.Errorf("choose accelerator: %w", ctx.Err())
	case errors.As(err, &be) && be.Kind == Stopped && !be.ReachedUserspace:
		v.Accel, v.Reason = "tcg", "kvm probe: QEMU exited before the guest reached user space"
		if be.Err != nil {
			v.Reason += " (" + be.Err.Error() + ")"
		}
	default:
		v.Accel, v.Reason = "tcg", "kvm probe failed: "+firstLine(err.Error())
	}
	if cache != "" {
		data, _ := json.MarshalIndent(v, "", "  ")
		os.MkdirAll(filepath.Dir(cache), 0o755)
		os.WriteFile(cache, append(data, '\n'), 0o644)
	}
	return v, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func bootID() string {
	data, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(data))
}

func qemuVersion(q string) string {
	if q == "" {
		q = DefaultQEMU
	}
	f := strings.Fields(q)
	out, err := exec.Command(f[0], "--version").Output()
	if err != nil {
		return "unknown"
	}
	return firstLine(string(out))
}

// Timeouts are the bounds of one run.
type Timeouts struct {
	Boot    time.Duration // to "userspace up"
	PerTest time.Duration // each top-level guest test
	VM      time.Duration // the whole VM
}

// Base timeouts for KVM and a kernel without debugging options.
const (
	BaseBootTimeout    = 30 * time.Second
	BasePerTestTimeout = 60 * time.Second
)

// ScaleTimeouts scales the base timeouts: TCG is slower than KVM, and a
// KASAN/lockdep kernel is slower still (it boots in about 20s under TCG
// where a plain one needs 2s). The VM timeout covers boot plus every test
// plus a minute of slack.
func ScaleTimeouts(accel string, debug bool, tests int) Timeouts {
	f := time.Duration(1)
	if accel == "tcg" {
		f *= 3
	}
	if debug {
		f *= 3
	}
	if tests < 1 {
		tests = 1
	}
	t := Timeouts{Boot: BaseBootTimeout * f, PerTest: BasePerTestTimeout * f}
	t.VM = t.Boot + time.Duration(tests)*t.PerTest + time.Minute
	return t
}

// IsDebugKernel reports whether the .config next to a published bzImage
// has KASAN on (the debug flavor).
func IsDebugKernel(kernel string) bool {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(kernel), ".config"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l == "CONFIG_KASAN=y" {
			return true
		}
	}
	return false
}
