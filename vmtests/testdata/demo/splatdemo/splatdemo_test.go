// Package splatdemo is a THROWAWAY guest test package for the demonstration
// of the harness's splat detection (see ../README.md). Each test makes one
// setsockopt call that the throwaway debug patch 0012 turns into a real
// kernel report; every test passes in Go. It lives under testdata so that
// neither go test ./... nor the initramfs builder ever sees it: copy it to
// guest/splatdemo to use it, and delete the copy afterwards.
package splatdemo

import (
	"os"
	"runtime"
	"testing"

	"github.com/nlmmap/nlmmap/guest/guesttest"
	"golang.org/x/sys/unix"
)

// netlinkDebugSplat is the socket option patch 0012 adds.
const netlinkDebugSplat = 0x4e4c

func splat(t *testing.T, what int) {
	t.Helper()
	guesttest.SkipIfNotInVM(t)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, netlinkDebugSplat, what); err != nil {
		t.Skipf("setsockopt(NETLINK_DEBUG_SPLAT): %v: the kernel lacks the throwaway debug patch 0012", err)
	}
	t.Logf("asked the kernel for report %d; this test passes in Go", what)
}

func TestWarnOnPurpose(t *testing.T)          { splat(t, 1) }
func TestKASANOnPurpose(t *testing.T)         { splat(t, 2) }
func TestLeakOnPurpose(t *testing.T)          { splat(t, 3) }
func TestRefcountOnPurpose(t *testing.T)      { splat(t, 4) }
func TestLockdepOnPurpose(t *testing.T)       { splat(t, 5) }
func TestSleepInAtomicOnPurpose(t *testing.T) { splat(t, 6) }
func TestRCUOnPurpose(t *testing.T)           { splat(t, 7) }
func TestPanicOnPurpose(t *testing.T)         { splat(t, 8) }

// TestHangOnPurpose spins every CPU in the kernel with preemption off:
// the guest stops answering and only the host's step timeout ends the run.
func TestHangOnPurpose(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	for i := 0; i < runtime.NumCPU(); i++ {
		go func() {
			runtime.LockOSThread()
			fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
			if err == nil {
				unix.SetsockoptInt(fd, unix.SOL_NETLINK, netlinkDebugSplat, 9)
			}
		}()
	}
	select {}
}

// TestFakeWarningLine writes a line that looks like a report to the kernel
// log, without any kernel involvement.
func TestFakeWarningLine(t *testing.T) {
	guesttest.SkipIfNotInVM(t)
	if err := os.WriteFile("/dev/kmsg", []byte("WARNING: a line a test wrote to /dev/kmsg\n"), 0); err != nil {
		t.Fatal(err)
	}
}
