package kernel

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockPathWaitsForTheOwner(t *testing.T) {
	defer func(d time.Duration) { lockPoll = d }(lockPoll)
	lockPoll = 10 * time.Millisecond
	path := filepath.Join(t.TempDir(), "build", "debug-x.lock")
	ctx := context.Background()
	release, err := lockPath(ctx, path, "the debug build", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	got := make(chan error, 1)
	go func() {
		rel, err := lockPath(ctx, path, "the debug build", &log)
		if err == nil {
			rel()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second lock returned %v while the first was held", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "waiting for process") || !strings.Contains(log.String(), "the debug build") {
		t.Errorf("the waiting side did not say whom it waits for: %q", log.String())
	}
}

func TestLockPathGivesUpWithContext(t *testing.T) {
	defer func(d time.Duration) { lockPoll = d }(lockPoll)
	lockPoll = 10 * time.Millisecond
	path := filepath.Join(t.TempDir(), "x.lock")
	release, err := lockPath(context.Background(), path, "x", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := lockPath(ctx, path, "x", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "Next:") {
		t.Errorf("lockPath with a done context = %v, want an error saying what to do", err)
	}
}

func TestListPatchesHashIsSha256sum(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "0001-a.patch"), []byte("hello\n"), 0o644)
	ps, err := ListPatches(dir)
	if err != nil || len(ps) != 1 {
		t.Fatalf("ListPatches = %v, %v", ps, err)
	}
	// sha256sum of "hello\n": what a reviewer compares build.json with.
	if want := "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"; ps[0].SHA256 != want {
		t.Errorf("SHA256 = %s, want %s", ps[0].SHA256, want)
	}
}

func TestProfileArgs(t *testing.T) {
	ps := []Patch{
		{Data: []byte("--- a/net/netlink/af_netlink.c\n+++ b/net/netlink/af_netlink.c\n@@ -1 +1 @@\n--- a/include/linux/skbuff.h\n+++ b/include/linux/skbuff.h\n")},
		{Data: []byte("--- /dev/null\n+++ b/net/netlink/mmap.c\n+++ b/net/netlink/af_netlink.c\n+++ b/Documentation/networking/netlink_mmap.rst\n")},
	}
	if got, want := strings.Join(SeriesFiles(ps), " "), "Documentation/networking/netlink_mmap.rst include/linux/skbuff.h net/netlink/af_netlink.c net/netlink/mmap.c"; got != want {
		t.Errorf("SeriesFiles = %s, want %s", got, want)
	}
	if got, want := strings.Join(ProfileArgs(ps), " "), "GCOV_PROFILE_af_netlink.o=y GCOV_PROFILE_mmap.o=y"; got != want {
		t.Errorf("ProfileArgs = %s, want %s", got, want)
	}
}
