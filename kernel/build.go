package kernel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nlmmap/nlmmap/internal/hostdeps"
)

// FormatVersion changes whenever the harness builds differently, so old
// cached builds are not taken for new ones.
const FormatVersion = "nlmmap-kernel-2"

// Flavor is a named kernel configuration.
type Flavor struct {
	Name      string
	Fragments []string // file names under kernel/config/, merged in order
	Patches   bool     // apply the series from patches/
	// ProfileSeries instruments the C files the series touches for gcov
	// (GCOV_PROFILE_<file>.o=y on make's command line; see ProfileArgs).
	ProfileSeries bool
}

// Flavors are the kernels the harness knows how to build.
var Flavors = map[string]Flavor{
	// debug: the series with KASAN, lockdep and kmemleak; what make vmtest
	// runs by default.
	"debug": {Name: "debug", Fragments: []string{"base.config", "mmap.config", "debug.config"}, Patches: true},
	// baseline: unpatched 6.12, for comparison and for harness work.
	"baseline": {Name: "baseline", Fragments: []string{"base.config"}},
	// coverage: the series with gcov in the files it touches; what make
	// coverage runs.
	"coverage": {Name: "coverage", Fragments: []string{"base.config", "mmap.config", "gcov.config"}, Patches: true, ProfileSeries: true},
}

// SeriesFiles lists the files the patches touch (their "+++ b/" lines),
// sorted, without repeats.
func SeriesFiles(patches []Patch) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range patches {
		for _, line := range strings.Split(string(p.Data), "\n") {
			if f, ok := strings.CutPrefix(line, "+++ b/"); ok && !seen[f] {
				seen[f] = true
				out = append(out, strings.TrimSpace(f))
			}
		}
	}
	sort.Strings(out)
	return out
}

// ProfileArgs are the make arguments that instrument the series' C files
// for gcov. Kbuild matches GCOV_PROFILE_<stem>.o by file name only, so a
// file elsewhere with the same name (mm/mmap.c for net/netlink/mmap.c) is
// instrumented too; the coverage report only reads the series' files.
func ProfileArgs(patches []Patch) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range SeriesFiles(patches) {
		if !strings.HasSuffix(f, ".c") {
			continue
		}
		stem := strings.TrimSuffix(filepath.Base(f), ".c")
		if !seen[stem] {
			seen[stem] = true
			out = append(out, "GCOV_PROFILE_"+stem+".o=y")
		}
	}
	return out
}

// Options configures Build. Zero values pick the defaults.
type Options struct {
	Flavor string // default "debug"
	// RepoRoot holds patches/ and kernel/config/; default ".".
	RepoRoot string
	// PatchesDir and ConfigDir override RepoRoot/patches and
	// RepoRoot/kernel/config.
	PatchesDir string
	ConfigDir  string
	// Fragments replaces the flavor's fragment list when set.
	Fragments []string
	Out       string // default RepoRoot/out
	CacheRoot string // default CacheRoot(Getenv)
	Getenv    func(string) string
	Log       io.Writer // progress; default os.Stderr
	Jobs      int       // default runtime.NumCPU()
	// Progress is how often a long build prints a line; default 20s.
	Progress time.Duration
}

// Result is a finished (or cached) build.
type Result struct {
	Info    BuildInfo
	BzImage string // published copy under Out
	Config  string
	Cached  bool // true when make did not run
}

// BuildInfo is written to out/<flavor>/build.json.
type BuildInfo struct {
	Format        string     `json:"format"`
	Flavor        string     `json:"flavor"`
	Key           string     `json:"key"`
	Source        Source     `json:"source"`
	BaseCommit    string     `json:"base_commit"`
	KernelVersion string     `json:"kernel_version"`
	HeadCommit    string     `json:"head_commit"`
	Patches       []FileHash `json:"patches"`
	Fragments     []FileHash `json:"fragments"`
	Compiler      string     `json:"compiler"`
	KernelRelease string     `json:"kernel_release"`
	BuildDir      string     `json:"build_dir"`
	// MakeArgs are extra make arguments (the coverage flavor's).
	MakeArgs []string `json:"make_args,omitempty"`
}

// inputHashes lists the patches and fragments with their sha256.
func inputHashes(patches []Patch, frags []*Fragment) (ph, fh []FileHash) {
	for _, p := range patches {
		ph = append(ph, FileHash{Name: p.Name, SHA256: p.SHA256})
	}
	for _, f := range frags {
		fh = append(fh, FileHash{Name: f.Name, SHA256: plainSHA256(f.Raw)})
	}
	return ph, fh
}

// plainSHA256 is the hex sha256 of data, as sha256sum prints it.
func plainSHA256(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// FileHash names an input file and its sha256 (as sha256sum prints it).
type FileHash struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// Key is the cache key of a build: it changes when the source, a patch, a
// fragment, the compiler, the flavor or the harness format changes.
func Key(sourceID, flavor, compiler string, patches []Patch, frags []*Fragment) string {
	parts := []string{FormatVersion, "flavor", flavor, "source", sourceID, "compiler", compiler}
	for _, p := range patches {
		parts = append(parts, "patch", p.Name, string(p.Data))
	}
	for _, f := range frags {
		parts = append(parts, "fragment", f.Name, string(f.Raw))
	}
	return sum(parts...)
}

func (o *Options) defaults() error {
	if o.Flavor == "" {
		o.Flavor = "debug"
	}
	if o.RepoRoot == "" {
		o.RepoRoot = "."
	}
	if o.PatchesDir == "" {
		o.PatchesDir = filepath.Join(o.RepoRoot, "patches")
	}
	if o.ConfigDir == "" {
		o.ConfigDir = filepath.Join(o.RepoRoot, "kernel", "config")
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.RepoRoot, "out")
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.CacheRoot == "" {
		o.CacheRoot = CacheRoot(o.Getenv)
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Jobs == 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.Progress == 0 {
		o.Progress = 20 * time.Second
	}
	var err error
	for _, p := range []*string{&o.PatchesDir, &o.ConfigDir, &o.Out, &o.CacheRoot} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	return nil
}

// Build resolves the source, applies the series, configures, checks and
// builds the flavor, and publishes the result under Out/<flavor>/. When a
// build with the same key has completed before, it only republishes.
func Build(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	fl, ok := Flavors[o.Flavor]
	if !ok {
		return nil, fmt.Errorf("build kernel: unknown flavor %q\nNext: use FLAVOR=debug, FLAVOR=baseline or FLAVOR=coverage", o.Flavor)
	}
	if o.Fragments != nil {
		fl.Fragments = o.Fragments
	}
	if err := hostdeps.Ensure(o.Log, hostdeps.KernelBuild...); err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	src, err := ResolveSource(SourceEnv{Getenv: o.Getenv, CacheRoot: o.CacheRoot, Log: o.Log})
	if err != nil {
		return nil, err
	}
	var frags []*Fragment
	for _, name := range fl.Fragments {
		f, err := ReadFragment(filepath.Join(o.ConfigDir, name))
		if err != nil {
			return nil, fmt.Errorf("build kernel: %w", err)
		}
		frags = append(frags, f)
	}
	var patches []Patch
	if fl.Patches {
		if patches, err = ListPatches(o.PatchesDir); err != nil {
			return nil, fmt.Errorf("build kernel: %w", err)
		}
	}
	compiler, err := compilerVersion()
	if err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	key := Key(src.ID, fl.Name, compiler, patches, frags)
	var makeArgs []string
	if fl.ProfileSeries {
		makeArgs = ProfileArgs(patches)
		key = sum(append([]string{key, "make"}, makeArgs...)...)
	}

	dir := filepath.Join(o.CacheRoot, "build", fl.Name+"-"+src.ShortID())
	unlock, err := lockPath(ctx, dir+".lock", "the "+fl.Name+" build directory "+dir, o.Log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	obj := filepath.Join(dir, "obj")
	stampPath := filepath.Join(dir, "stamp.json")
	var stamp BuildInfo
	if data, err := os.ReadFile(stampPath); err == nil && json.Unmarshal(data, &stamp) == nil && stamp.Key == key {
		if _, err := os.Stat(filepath.Join(obj, "arch/x86/boot/bzImage")); err == nil {
			fmt.Fprintf(o.Log, "kernel: %s %s is up to date (key %s)\n", fl.Name, stamp.KernelRelease, key[:12])
			// Same key, same inputs: describe them as this version does.
			stamp.Patches, stamp.Fragments = inputHashes(patches, frags)
			return publish(o.Out, obj, stamp, true)
		}
	}

	fmt.Fprintf(o.Log, "kernel: source %s: %s\n", src.Origin, src.Path)
	pristine, err := ImportPristine(src, o.CacheRoot, o.Log)
	if err != nil {
		return nil, err
	}
	info := BuildInfo{
		Format: FormatVersion, Flavor: fl.Name, Key: key, Source: *src,
		BaseCommit: pristine.BaseCommit, KernelVersion: pristine.Version,
		Compiler: compiler, BuildDir: dir, MakeArgs: makeArgs,
	}
	info.Patches, info.Fragments = inputHashes(patches, frags)
	os.Remove(stampPath) // whatever happens next, the old stamp no longer describes obj/

	tree := filepath.Join(dir, "src")
	fmt.Fprintf(o.Log, "kernel: tree %s at base %s (Linux %s), applying %d patch(es)\n", tree, pristine.BaseCommit[:12], pristine.Version, len(patches))
	if err := PrepareTree(pristine, tree); err != nil {
		return nil, err
	}
	if err := ApplyPatches(tree, patches); err != nil {
		return nil, err
	}
	head, err := gitOut(tree, "rev-parse", "HEAD")
	if err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	info.HeadCommit = strings.TrimSpace(head)

	if err := os.MkdirAll(obj, 0o755); err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	logPath := filepath.Join(dir, "build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("build kernel: %w", err)
	}
	defer logf.Close()
	mk := &maker{ctx: ctx, tree: tree, obj: obj, log: logf, logPath: logPath, progress: o.Log, every: o.Progress}
	if err := configure(mk, obj, frags); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "kernel: building %s bzImage with -j%d (log: %s)\n", fl.Name, o.Jobs, logPath)
	start := time.Now()
	if err := mk.run("build kernel", true, append([]string{fmt.Sprintf("-j%d", o.Jobs), "bzImage"}, makeArgs...)...); err != nil {
		return nil, err
	}
	rel, err := mk.output("kernelrelease")
	if err != nil {
		return nil, err
	}
	info.KernelRelease = strings.TrimSpace(rel)
	fmt.Fprintf(o.Log, "kernel: built %s in %s\n", info.KernelRelease, time.Since(start).Round(time.Second))
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFileAtomic(stampPath, data); err != nil {
		return nil, fmt.Errorf("build kernel: write stamp: %w", err)
	}
	return publish(o.Out, obj, info, false)
}

// configure runs tinyconfig, merges the fragments, runs olddefconfig and
// checks that every fragment option stuck.
func configure(mk *maker, obj string, frags []*Fragment) error {
	if err := mk.run("configure kernel", false, "tinyconfig"); err != nil {
		return err
	}
	cfgPath := filepath.Join(obj, ".config")
	base, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("configure kernel: %w", err)
	}
	if err := os.WriteFile(cfgPath, Merge(base, frags...), 0o644); err != nil {
		return fmt.Errorf("configure kernel: %w", err)
	}
	if err := mk.run("configure kernel", false, "olddefconfig"); err != nil {
		return err
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("check kernel config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return fmt.Errorf("check kernel config: %w", err)
	}
	if ms := Check(cfg, frags...); len(ms) > 0 {
		return &ConfigError{Mismatches: ms, ConfigPath: cfgPath}
	}
	return nil
}

// publish copies the build's products to out/<flavor>/.
func publish(out, obj string, info BuildInfo, cached bool) (*Result, error) {
	dst := filepath.Join(out, info.Flavor)
	if err := Publish(dst, obj, info); err != nil {
		return nil, err
	}
	return &Result{Info: info, BzImage: filepath.Join(dst, "bzImage"), Config: filepath.Join(dst, ".config"), Cached: cached}, nil
}

// Publish copies bzImage and .config from the object directory obj to dst,
// with kernel.release and build.json from info: what the boot side needs
// next to a kernel.
func Publish(dst, obj string, info BuildInfo) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("publish kernel: %w", err)
	}
	for _, c := range []struct{ from, to string }{
		{filepath.Join(obj, "arch/x86/boot/bzImage"), "bzImage"},
		{filepath.Join(obj, ".config"), ".config"},
	} {
		data, err := os.ReadFile(c.from)
		if err != nil {
			return fmt.Errorf("publish kernel: %w", err)
		}
		if err := writeFileAtomic(filepath.Join(dst, c.to), data); err != nil {
			return fmt.Errorf("publish kernel: %w", err)
		}
	}
	if err := writeFileAtomic(filepath.Join(dst, "kernel.release"), []byte(info.KernelRelease+"\n")); err != nil {
		return fmt.Errorf("publish kernel: %w", err)
	}
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFileAtomic(filepath.Join(dst, "build.json"), append(data, '\n')); err != nil {
		return fmt.Errorf("publish kernel: %w", err)
	}
	return nil
}

func compilerVersion() (string, error) {
	out, err := exec.Command("gcc", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("gcc --version: %w", err)
	}
	return firstLine(string(out)), nil
}

// maker runs make in the kernel tree with O=obj, logging to log.
type maker struct {
	ctx      context.Context
	tree     string
	obj      string
	log      *os.File
	logPath  string
	progress io.Writer
	every    time.Duration
}

// Reproducible build metadata: the same inputs give the same uname -v.
// An empty (but set) LOCALVERSION keeps scripts/setlocalversion from
// appending "+" because the tree is a git checkout: the release is exactly
// <version>-nlmmap from CONFIG_LOCALVERSION.
var kbuildEnv = []string{
	"LOCALVERSION=",
	"KBUILD_BUILD_USER=nlmmap",
	"KBUILD_BUILD_HOST=nlmmap",
	"KBUILD_BUILD_TIMESTAMP=Sat Jan  1 00:00:00 UTC 2000",
}

func (m *maker) command(args ...string) *exec.Cmd {
	cmd := exec.CommandContext(m.ctx, "make", append([]string{"-C", m.tree, "O=" + m.obj}, args...)...)
	cmd.Env = append(os.Environ(), kbuildEnv...)
	// make runs sub-makes and compilers: on cancellation (Ctrl-C, a
	// timeout) stop them all, not just the top make, or they go on
	// building and hold the output pipe open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

var compiledRe = regexp.MustCompile(`^\s+(CC|AS|LD|AR|HOSTCC|OBJCOPY)\s`)

// run runs make with output to the log. With progress, it prints a line
// every m.every saying how many objects have been built.
func (m *maker) run(op string, progress bool, args ...string) error {
	cmd := m.command(args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	fmt.Fprintf(m.log, "+ make %s\n", strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: make %s: %w", op, strings.Join(args, " "), err)
	}
	counted := make(chan int, 1)
	go func() {
		n := 0
		start := time.Now()
		last := start
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(m.log, line)
			if compiledRe.MatchString(line) {
				n++
			}
			if progress && time.Since(last) >= m.every {
				last = time.Now()
				fmt.Fprintf(m.progress, "kernel: still building: %d objects in %s\n", n, time.Since(start).Round(time.Second))
			}
		}
		io.Copy(io.Discard, pr)
		counted <- n
	}()
	err := cmd.Wait()
	pw.Close()
	<-counted
	if err != nil {
		return fmt.Errorf("%s: make %s: %w\n%s\nNext: read the full log %s", op, strings.Join(args, " "), err, tail(m.logPath, 40), m.logPath)
	}
	return nil
}

// output runs make -s and returns its stdout.
func (m *maker) output(args ...string) (string, error) {
	cmd := m.command(append([]string{"-s"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("make -s %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// tail returns the last n lines of the file at path, indented.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  last " + strconv.Itoa(len(lines)) + " lines of the log:\n    " + strings.Join(lines, "\n    ")
}
