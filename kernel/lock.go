package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lockPoll is how often a waiting lock retries.
var lockPoll = time.Second

// lockPath takes an exclusive lock on the file at path (creating it), so
// that two harness processes sharing a cache never build in the same
// directory at once. While another process holds it, it says so on log
// once and waits until the lock is free or ctx is done. The lock file
// holds the owner's PID, for that message. The returned function releases
// the lock; the kernel releases it too if the process dies.
func lockPath(ctx context.Context, path, what string, log io.Writer) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", what, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", what, err)
	}
	start := time.Now()
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", what, err)
		}
		if !told {
			owner := "another process"
			if data, err := os.ReadFile(path); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
					owner = "process " + strconv.Itoa(pid)
				}
			}
			fmt.Fprintf(log, "kernel: waiting for %s to finish with %s (lock %s)\n", owner, what, path)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: gave up after %s: %w\nNext: wait for the other build to finish, or stop it; the lock is %s", what, time.Since(start).Round(time.Second), ctx.Err(), path)
		case <-time.After(lockPoll):
		}
	}
	if told {
		fmt.Fprintf(log, "kernel: got %s after %s\n", what, time.Since(start).Round(time.Second))
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
