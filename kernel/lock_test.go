package kernel

import (
	"bytes"
	"context"
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
