package guestrun

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DebugFS is where the guest finds debugfs.
const DebugFS = "/sys/kernel/debug"

// CoverageDir is the directory on the share that receives the kernel's
// gcov data (.gcda files, under their path in debugfs's gcov/ directory).
const CoverageDir = "gcov"

// Checks are what the runner does after the last test, between the CHECKS
// and DONE markers: ask kmemleak for leaks and copy them to the kernel log,
// and copy the kernel's gcov data to the share. Each is skipped when the
// kernel lacks the feature.
type Checks struct {
	// Kmsg receives the kmemleak report, one Write per line.
	Kmsg io.Writer
	// DebugFS is debugfs's mount point; default DebugFS.
	DebugFS string
	// Share receives CoverageDir; "" skips coverage.
	Share string
	// Pause is the wait between the two kmemleak scans: an object is only
	// reported when a scan finds it unreferenced, unchanged since the
	// previous scan and older than 5 seconds. Default 6s.
	Pause time.Duration
	// Scan asks kmemleak for a scan; default writes "scan" to the
	// kmemleak file (it returns when the scan is done).
	Scan func() error
	// Sleep is time.Sleep; tests replace it.
	Sleep func(time.Duration)
}

func (c *Checks) defaults() {
	if c.DebugFS == "" {
		c.DebugFS = DebugFS
	}
	if c.Pause == 0 {
		c.Pause = 6 * time.Second
	}
	if c.Sleep == nil {
		c.Sleep = time.Sleep
	}
	if c.Scan == nil {
		c.Scan = func() error {
			return os.WriteFile(filepath.Join(c.DebugFS, "kmemleak"), []byte("scan"), 0)
		}
	}
}

// ErrNoKmemleak means the kernel has no kmemleak (or it is off).
var ErrNoKmemleak = errors.New("kmemleak is not built in")

// Kmemleak scans twice with a pause, then writes the report framed by the
// KMEMLEAK BEGIN and END markers to Kmsg, one line per record, and returns
// the number of leaks. Without kmemleak it returns ErrNoKmemleak.
func (c *Checks) Kmemleak() (int, error) {
	c.defaults()
	path := filepath.Join(c.DebugFS, "kmemleak")
	if _, err := os.Stat(path); err != nil {
		return 0, ErrNoKmemleak
	}
	for i := 0; i < 2; i++ {
		if i > 0 {
			c.Sleep(c.Pause)
		}
		if err := c.Scan(); err != nil {
			return 0, fmt.Errorf("kmemleak scan: %w (kmemleak may have disabled itself: look for \"kmemleak:\" on the console)", err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read kmemleak report: %w", err)
	}
	n := 0
	io.WriteString(c.Kmsg, MarkerLeaksBegin+"\n")
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, " \r")
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "unreferenced object ") {
			n++
		}
		// /dev/kmsg takes one record per write; a record must not start
		// with what looks like a log level prefix ("<4>").
		if strings.HasPrefix(line, "<") {
			line = " " + line
		}
		io.WriteString(c.Kmsg, line+"\n")
	}
	io.WriteString(c.Kmsg, LeaksEnd(n)+"\n")
	return n, nil
}

// ErrNoGcov means the kernel has no gcov support (CONFIG_GCOV_KERNEL).
var ErrNoGcov = errors.New("kernel gcov is not built in")

// Coverage copies every .gcda file under debugfs's gcov/ directory to
// Share/CoverageDir, keeping its path, and returns how many it copied.
func (c *Checks) Coverage() (int, error) {
	c.defaults()
	root := filepath.Join(c.DebugFS, "gcov")
	if _, err := os.Stat(root); err != nil {
		return 0, ErrNoGcov
	}
	if c.Share == "" {
		return 0, nil
	}
	dst := filepath.Join(c.Share, CoverageDir)
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// The .gcno entries are symbolic links to the build tree.
		if !d.Type().IsRegular() || !strings.HasSuffix(p, ".gcda") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		data, err := readAll(p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("copy coverage data: %w", err)
	}
	return n, nil
}

// readAll reads a debugfs file, whose size stat reports as 0.
func readAll(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

// Run runs both checks and reports on Kmsg what it did. An error is a
// check that could not be done although the kernel supports it.
func (c *Checks) Run() error {
	var errs []error
	switch n, err := c.Kmemleak(); {
	case errors.Is(err, ErrNoKmemleak):
		io.WriteString(c.Kmsg, "nlmmap: kmemleak: not built in, no leak check\n")
	case err != nil:
		errs = append(errs, err)
	default:
		fmt.Fprintf(c.Kmsg, "nlmmap: kmemleak: %d leak(s) reported\n", n)
	}
	switch n, err := c.Coverage(); {
	case errors.Is(err, ErrNoGcov):
	case err != nil:
		errs = append(errs, err)
	default:
		fmt.Fprintf(c.Kmsg, "nlmmap: coverage: copied %d .gcda file(s) to the share\n", n)
	}
	return errors.Join(errs...)
}
