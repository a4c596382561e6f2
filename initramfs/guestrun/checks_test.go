package guestrun

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A report as /sys/kernel/debug/kmemleak gives it (6.12 format).
const kmemleakReport = `unreferenced object 0xffff888006c3e000 (size 256):
  comm "basic.test", pid 311, jiffies 4294682114
  hex dump (first 32 bytes):
    4e 4e 4e 4e 4e 4e 4e 4e 4e 4e 4e 4e 4e 4e 4e 4e  NNNNNNNNNNNNNNNN
  backtrace (crc 5c3fe5d0):
    __kmalloc_cache_noprof+0x2a1/0x3b0
    netlink_setsockopt+0x1b6/0x6b0
unreferenced object 0xffff888006c3f000 (size 64):
  comm "kworker/u8:1", pid 45, jiffies 4294682200
  backtrace (crc 0):
<not a level>
`

func TestChecksKmemleak(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kmemleak"), []byte(kmemleakReport), 0o644); err != nil {
		t.Fatal(err)
	}
	var kmsg bytes.Buffer
	var calls []string
	c := &Checks{
		Kmsg: &kmsg, DebugFS: dir,
		Scan:  func() error { calls = append(calls, "scan"); return nil },
		Sleep: func(d time.Duration) { calls = append(calls, "sleep "+d.String()) },
	}
	n, err := c.Kmemleak()
	if err != nil || n != 2 {
		t.Fatalf("Kmemleak() = %d, %v; want 2 leaks", n, err)
	}
	if want := []string{"scan", "sleep 6s", "scan"}; !reflect.DeepEqual(calls, want) {
		t.Errorf("calls = %q, want %q (two scans with a pause: objects must be unchanged between scans and older than 5s)", calls, want)
	}
	lines := strings.Split(strings.TrimSuffix(kmsg.String(), "\n"), "\n")
	if lines[0] != MarkerLeaksBegin || lines[len(lines)-1] != LeaksEnd(2) {
		t.Errorf("report not framed by the markers:\n%s", kmsg.String())
	}
	if got := lines[2]; got != `  comm "basic.test", pid 311, jiffies 4294682114` {
		t.Errorf("indentation lost: %q", got)
	}
	if got := lines[len(lines)-2]; got != " <not a level>" {
		t.Errorf("a line starting with '<' must not reach /dev/kmsg as a level prefix: %q", got)
	}
}

func TestChecksWithoutFeatures(t *testing.T) {
	var kmsg bytes.Buffer
	c := &Checks{Kmsg: &kmsg, DebugFS: t.TempDir(), Share: t.TempDir()}
	if _, err := c.Kmemleak(); !errors.Is(err, ErrNoKmemleak) {
		t.Errorf("Kmemleak() without kmemleak = %v, want ErrNoKmemleak", err)
	}
	if _, err := c.Coverage(); !errors.Is(err, ErrNoGcov) {
		t.Errorf("Coverage() without gcov = %v, want ErrNoGcov", err)
	}
	if err := c.Run(); err != nil {
		t.Errorf("Run() = %v, want nil: missing features are not errors", err)
	}
	if !strings.Contains(kmsg.String(), "kmemleak: not built in") {
		t.Errorf("Run does not say kmemleak is missing: %q", kmsg.String())
	}
}

func TestChecksScanFails(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "kmemleak"), nil, 0o644)
	var kmsg bytes.Buffer
	c := &Checks{Kmsg: &kmsg, DebugFS: dir, Scan: func() error { return os.ErrPermission }, Sleep: func(time.Duration) {}}
	if err := c.Run(); err == nil || !strings.Contains(err.Error(), "kmemleak scan") {
		t.Errorf("Run() = %v, want the failed scan", err)
	}
}

func TestChecksCoverage(t *testing.T) {
	debug, share := t.TempDir(), t.TempDir()
	obj := filepath.Join(debug, "gcov", "build", "obj", "net", "netlink")
	os.MkdirAll(obj, 0o755)
	os.WriteFile(filepath.Join(obj, "af_netlink.gcda"), []byte("gcda"), 0o600)
	os.Symlink("/nonexistent/af_netlink.gcno", filepath.Join(obj, "af_netlink.gcno"))
	os.WriteFile(filepath.Join(debug, "gcov", "reset"), nil, 0o600)
	c := &Checks{Kmsg: &bytes.Buffer{}, DebugFS: debug, Share: share}
	n, err := c.Coverage()
	if err != nil || n != 1 {
		t.Fatalf("Coverage() = %d, %v; want 1 file", n, err)
	}
	got, err := os.ReadFile(filepath.Join(share, CoverageDir, "build", "obj", "net", "netlink", "af_netlink.gcda"))
	if err != nil || string(got) != "gcda" {
		t.Errorf("copied .gcda = %q, %v", got, err)
	}
}
