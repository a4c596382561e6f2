package guestrun

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ShareMount is where the guest mounts the host's share.
const ShareMount = "/mnt/nlmmap"

// OpenKmsg opens /dev/kmsg for writing markers, falling back to stdout
// (the console) if it cannot.
func OpenKmsg() io.Writer {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintf(os.Stdout, "nlmmap: cannot open /dev/kmsg (%v); markers go to the console\n", err)
		return os.Stdout
	}
	return f
}

// MountShare mounts the host's 9p share at ShareMount.
func MountShare() error {
	if err := os.MkdirAll(ShareMount, 0o755); err != nil {
		return fmt.Errorf("mount share: %w", err)
	}
	if err := unix.Mount(ShareTag, ShareMount, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144"); err != nil {
		return fmt.Errorf("mount 9p share %q at %s: %w (is CONFIG_9P_FS/CONFIG_NET_9P_VIRTIO built in, and did the host pass the share?)", ShareTag, ShareMount, err)
	}
	return nil
}

// Guest is the whole guest side after the "userspace up" marker: mount the
// share, read the plan, run the tests, write DONE. The caller powers off.
func Guest(ctx context.Context, kmsg io.Writer) error {
	if err := MountShare(); err != nil {
		return err
	}
	plan, err := ReadPlan(filepath.Join(ShareMount, PlanFile))
	if err != nil {
		return err
	}
	if plan.Mode == ModeProbe {
		io.WriteString(kmsg, MarkerDone+"\n")
		return nil
	}
	m, err := ReadManifest(ManifestPath)
	if err != nil {
		return err
	}
	res, err := os.OpenFile(filepath.Join(ShareMount, ResultsFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open results: %w", err)
	}
	defer res.Close()
	r := &Runner{
		Plan:     plan,
		Manifest: m,
		Kmsg:     kmsg,
		Results:  res,
		Sync:     res.Sync,
		// No per-test lines on stdout: it is the serial console, where
		// they would interleave with the kernel's records and cut markers.
		Log:       nil,
		Test2JSON: "/bin/test2json",
	}
	start := time.Now()
	sum, err := r.Run(ctx)
	if err != nil {
		return err
	}
	if err := res.Sync(); err != nil {
		return fmt.Errorf("sync results: %w", err)
	}
	fmt.Fprintf(kmsg, "nlmmap: guest tests: %d passed, %d failed, %d skipped in %s\n", sum.Pass, sum.Fail, sum.Skip, time.Since(start).Round(time.Second))
	io.WriteString(kmsg, MarkerChecks+"\n")
	mountDebugFS()
	c := &Checks{Kmsg: kmsg, Share: ShareMount}
	if err := c.Run(); err != nil {
		return fmt.Errorf("end-of-run checks: %w", err)
	}
	unix.Sync()
	io.WriteString(kmsg, MarkerDone+"\n")
	return nil
}

// mountDebugFS mounts debugfs unless it is there already (u-root's init
// mounts it).
func mountDebugFS() {
	if entries, err := os.ReadDir(DebugFS); err == nil && len(entries) > 0 {
		return
	}
	os.MkdirAll(DebugFS, 0o755)
	unix.Mount("debugfs", DebugFS, "debugfs", 0, "")
}

// PowerOff syncs and powers the machine off. It returns only on failure.
func PowerOff() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}
