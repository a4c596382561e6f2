package repro

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/vmtests/boot"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

// Format is the bundle format; Open refuses others.
const Format = "nlmmap-repro-1"

// MetaFile is the bundle's index.
const MetaFile = "bundle.json"

// Files of a bundle.
const (
	KernelFile    = "bzImage"
	InitramfsFile = "initramfs.cpio"
	ManifestFile  = "initramfs.json"
	ReleaseFile   = "kernel.release"
	ConfigFile    = ".config"
	BuildFile     = "build.json"
	ReadmeFile    = "README.md"
	ScriptFile    = "run.sh"
	JUnitFile     = "junit.xml"
)

// Meta is bundle.json.
type Meta struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// FromRun is the run directory the bundle was made from.
	FromRun string `json:"from_run"`
	Failed  bool   `json:"failed"`
	Summary string `json:"summary"`
	// Failures are "<package> <Test>: <reason>" of the failing tests and
	// "<phase>: <report title>" of kernel reports outside tests.
	Failures []string `json:"failures"`
	// Build describes the kernel; nil if it had no build.json.
	Build *kernel.BuildInfo `json:"build,omitempty"`
	Accel string            `json:"accel"`
	// Cmdline is the exact QEMU command line of the run.
	Cmdline string `json:"qemu_cmdline"`
	// Files maps every file of the bundle (but this one) to its sha256.
	Files map[string]string `json:"files"`
}

// Bundle is a bundle on disk.
type Bundle struct {
	Dir  string
	Meta Meta
	// Outcome is the recorded run, with its paths pointing into the
	// bundle.
	Outcome *suite.Outcome
}

// Options configures Write.
type Options struct {
	// JUnit, if set and present, is copied into the bundle.
	JUnit string
	// Now is the creation time; default time.Now.
	Now func() time.Time
	// FromRun names the run the bundle is of; default the outcome's run
	// directory (a bundle of a bundle names the original run).
	FromRun string
}

// Write makes a bundle of the run in dst, which must not exist or be empty.
func Write(out *suite.Outcome, dst string, o Options) (*Bundle, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FromRun == "" {
		o.FromRun = out.RunDir
	}
	if entries, err := os.ReadDir(dst); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("write bundle: %s is not empty\nNext: choose a new directory", dst)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	kdir := filepath.Dir(out.Kernel)
	idir := strings.TrimSuffix(out.Initramfs, filepath.Ext(out.Initramfs))
	copies := []struct {
		from, to string
		must     bool
	}{
		{out.Kernel, KernelFile, true},
		{filepath.Join(kdir, ReleaseFile), ReleaseFile, true},
		{filepath.Join(kdir, ConfigFile), ConfigFile, true},
		{filepath.Join(kdir, BuildFile), BuildFile, false},
		{out.Initramfs, InitramfsFile, true},
		{idir + ".json", ManifestFile, true},
		{filepath.Join(out.RunDir, guestrun.PlanFile), guestrun.PlanFile, true},
		{filepath.Join(out.RunDir, boot.CmdlineFile), boot.CmdlineFile, false},
		{filepath.Join(out.RunDir, boot.ConsoleFile), boot.ConsoleFile, false},
		{filepath.Join(out.RunDir, guestrun.ResultsFile), guestrun.ResultsFile, false},
		{o.JUnit, JUnitFile, false},
	}
	for _, c := range copies {
		if c.from == "" {
			continue
		}
		if err := copyFile(c.from, filepath.Join(dst, c.to)); err != nil {
			if !c.must && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("write bundle: %w\nNext: the run's files moved or were rebuilt since; run make vmtest again, then make repro", err)
		}
	}
	// The recorded outcome, relocated into the bundle.
	rec := *out
	rec.Kernel, rec.Initramfs, rec.RunDir = KernelFile, InitramfsFile, "."
	if err := rec.Write(filepath.Join(dst, suite.OutcomeFile)); err != nil {
		return nil, err
	}
	m := Meta{
		Format: Format, Created: o.Now().UTC().Round(time.Second), FromRun: o.FromRun,
		Failed: out.Failed(), Summary: out.Summary(), Failures: failures(out),
		Accel: out.Accel, Cmdline: out.Cmdline,
	}
	if data, err := os.ReadFile(filepath.Join(dst, BuildFile)); err == nil {
		var bi kernel.BuildInfo
		if json.Unmarshal(data, &bi) == nil {
			m.Build = &bi
		}
	}
	b := &Bundle{Dir: dst, Meta: m, Outcome: &rec}
	td := textData{B: b, Cmd: relocate(out.Cmdline), VMSeconds: vmSeconds(out)}
	if err := writeText(filepath.Join(dst, ScriptFile), scriptTmpl, td, 0o755); err != nil {
		return nil, err
	}
	if err := writeText(filepath.Join(dst, ReadmeFile), readmeTmpl, td, 0o644); err != nil {
		return nil, err
	}
	files, err := hashFiles(dst)
	if err != nil {
		return nil, err
	}
	b.Meta.Files = files
	data, _ := json.MarshalIndent(b.Meta, "", "  ")
	if err := os.WriteFile(filepath.Join(dst, MetaFile), append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	return b, nil
}

// failures lists what failed, for bundle.json and the README.
func failures(out *suite.Outcome) []string {
	var fs []string
	for _, v := range out.Failures() {
		fs = append(fs, fmt.Sprintf("%s %s: %s", v.Name, v.Test, v.Reason()))
	}
	bootSplats, after := out.Outside()
	for _, s := range append(bootSplats, after...) {
		fs = append(fs, fmt.Sprintf("%s: kernel %s: %s", s.Where, s.Kind, s.Title))
	}
	if out.BootError != "" {
		fs = append(fs, "boot: "+firstLine(out.BootError))
	}
	return fs
}

// Open reads a bundle and checks every file against bundle.json.
func Open(dir string) (*Bundle, error) {
	data, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w\nNext: give the directory make repro wrote (it holds %s)", err, MetaFile)
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("open bundle %s: %w", dir, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("open bundle %s: format %q, this harness reads %q\nNext: replay it with the harness version that wrote it", dir, m.Format, Format)
	}
	got, err := hashFiles(dir)
	if err != nil {
		return nil, err
	}
	var bad []string
	for name, want := range m.Files {
		switch g, ok := got[name]; {
		case !ok:
			bad = append(bad, name+" is missing")
		case g != want:
			bad = append(bad, name+" differs from "+MetaFile)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, fmt.Errorf("open bundle %s: %s\nNext: copy the bundle again from where it was made", dir, strings.Join(bad, "; "))
	}
	out, err := suite.ReadOutcome(filepath.Join(dir, suite.OutcomeFile))
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	out.Kernel, out.Initramfs, out.RunDir = filepath.Join(abs, KernelFile), filepath.Join(abs, InitramfsFile), abs
	return &Bundle{Dir: abs, Meta: m, Outcome: out}, nil
}

// Replay returns the options that boot the bundle's kernel and initramfs
// with its plan again, with runDir as the new run directory. Accel "" keeps
// a recorded "tcg", which works on any machine; a recorded "kvm" is probed
// for again, since the machine replaying it may not have a working KVM. On
// a slower accelerator than the recording's the per-test timeout grows
// accordingly.
func (b *Bundle) Replay(runDir, accel string) suite.Options {
	plan := b.Outcome.Plan
	why := "NLMMAP_ACCEL=" + accel
	if accel == "" {
		why = ""
		if b.Meta.Accel != "kvm" {
			accel, why = b.Meta.Accel, "recorded in the bundle"
		}
	}
	return suite.Options{
		AccelReason: why,
		Kernel:      filepath.Join(b.Dir, KernelFile),
		Initramfs:   filepath.Join(b.Dir, InitramfsFile),
		RunDir:      runDir,
		Plan:        &plan,
		PlanAccel:   b.Meta.Accel,
		Accel:       accel,
	}
}

// Comparison says how a replay relates to the recorded run.
type Comparison struct {
	Same bool
	// Gone failed in the recording and not in the replay; New the other
	// way round. Both are "<package> <Test>" or "<phase>" (kernel reports
	// outside the tests).
	Gone, New []string
}

func (c Comparison) String() string {
	if c.Same {
		return "reproduced: the replay fails exactly as the recorded run did"
	}
	var b strings.Builder
	b.WriteString("not reproduced exactly:")
	if len(c.Gone) > 0 {
		fmt.Fprintf(&b, " failed before but not now: %s;", strings.Join(c.Gone, ", "))
	}
	if len(c.New) > 0 {
		fmt.Fprintf(&b, " fail now but did not before: %s;", strings.Join(c.New, ", "))
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Compare compares the failing tests of a replay with the recording.
func Compare(recorded, replay *suite.Outcome) Comparison {
	a, b := failing(recorded), failing(replay)
	var c Comparison
	for k := range a {
		if !b[k] {
			c.Gone = append(c.Gone, k)
		}
	}
	for k := range b {
		if !a[k] {
			c.New = append(c.New, k)
		}
	}
	sort.Strings(c.Gone)
	sort.Strings(c.New)
	c.Same = len(c.Gone) == 0 && len(c.New) == 0
	return c
}

func failing(o *suite.Outcome) map[string]bool {
	m := map[string]bool{}
	for _, v := range o.Failures() {
		m[v.Name+" "+v.Test] = true
	}
	bootSplats, after := o.Outside()
	if len(bootSplats) > 0 {
		m["console/boot"] = true
	}
	if len(after) > 0 {
		m["console/after-tests"] = true
	}
	return m
}

func hashFiles(dir string) (map[string]string, error) {
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == MetaFile {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		out[e.Name()] = hex.EncodeToString(h.Sum(nil))
	}
	return out, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm()|0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeText(path string, t *template.Template, data any, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	if err := t.Execute(f, data); err != nil {
		f.Close()
		return fmt.Errorf("write bundle: %s: %w", filepath.Base(path), err)
	}
	return f.Close()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
