package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// FormatVersion changes whenever the image layout changes.
const FormatVersion = "nlmmap-initramfs-2"

// Module is this repository's Go module.
const Module = "github.com/nlmmap/nlmmap"

// Paths inside the image.
const (
	TestsDir  = "/nlmmap/tests"
	uinitPkg  = Module + "/initramfs/uinit"
	initPkg   = "github.com/u-root/u-root/cmds/core/init"
	guestRoot = Module + "/guest/"
)

// Options configures Build.
type Options struct {
	RepoRoot string    // default "."; must be inside the module
	Out      string    // default RepoRoot/out
	GOARCH   string    // guest architecture; default amd64
	Log      io.Writer // progress; default os.Stderr
	// Inputs are the directories (relative to RepoRoot) whose files key
	// the cache; default guest and initramfs.
	Inputs []string
}

// Result is a built (or cached) initramfs.
type Result struct {
	CPIO     string
	Manifest string
	Key      string
	Cached   bool
	Tests    int // top-level tests in all packages
}

func (o *Options) defaults() {
	if o.RepoRoot == "" {
		o.RepoRoot = "."
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.RepoRoot, "out")
	}
	if o.GOARCH == "" {
		o.GOARCH = "amd64"
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Inputs == nil {
		o.Inputs = []string{"guest", "initramfs"}
	}
	// u-root's builders change directories: give them absolute paths.
	if abs, err := filepath.Abs(o.Out); err == nil {
		o.Out = abs
	}
}

// Key hashes everything the image is built from.
func Key(root, goVersion, goarch string, inputs []string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", FormatVersion, goVersion, goarch)
	files := []string{"go.mod", "go.sum"}
	for _, dir := range inputs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if d.Type().IsRegular() {
				rel, _ := filepath.Rel(root, p)
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("hash initramfs inputs: %w", err)
		}
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return "", fmt.Errorf("hash initramfs inputs: %w", err)
		}
		s := sha256.Sum256(data)
		fmt.Fprintf(h, "%s\x00%x\n", f, s)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Build builds out/initramfs.cpio and out/initramfs.json unless they are
// up to date.
func Build(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	goVersion, err := goOutput(ctx, o.RepoRoot, nil, "env", "GOVERSION")
	if err != nil {
		return nil, fmt.Errorf("build initramfs: %w\nNext: install Go (see go.mod for the version)", err)
	}
	inputs, err := localDeps(ctx, o.RepoRoot, o.GOARCH)
	if err != nil {
		return nil, err
	}
	key, err := Key(o.RepoRoot, strings.TrimSpace(goVersion), o.GOARCH, append(append([]string{}, o.Inputs...), inputs...))
	if err != nil {
		return nil, err
	}
	res := &Result{
		CPIO:     filepath.Join(o.Out, "initramfs.cpio"),
		Manifest: filepath.Join(o.Out, "initramfs.json"),
		Key:      key,
	}
	stamp := filepath.Join(o.Out, "initramfs.stamp")
	if old, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(old)) == key {
		if m, err := guestrun.ReadManifest(res.Manifest); err == nil {
			if _, err := os.Stat(res.CPIO); err == nil {
				res.Cached = true
				res.Tests = countTests(m)
				fmt.Fprintf(o.Log, "initramfs: up to date (%d packages, %d tests)\n", len(m.Packages), res.Tests)
				return res, nil
			}
		}
	}
	os.Remove(stamp)
	start := time.Now()
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	tmp, err := os.MkdirTemp(o.Out, ".initramfs-")
	if err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	defer os.RemoveAll(tmp)

	pkgs, err := guestPackages(ctx, o.RepoRoot)
	if err != nil {
		return nil, err
	}
	m := &guestrun.Manifest{}
	files := []string{}
	for _, pkg := range pkgs {
		// Named after the package below guest/: the kernel names the
		// process by its first 15 characters in its reports ("Comm:
		// rxring.test"), which says which package ran into it.
		file := strings.ReplaceAll(strings.TrimPrefix(pkg, guestRoot), "/", "_") + ".test"
		hostBin := filepath.Join(tmp, "tests", file)
		fmt.Fprintf(o.Log, "initramfs: building guest tests %s\n", pkg)
		env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + o.GOARCH}
		if _, err := goOutput(ctx, o.RepoRoot, env, "test", "-c", "-o", hostBin, pkg); err != nil {
			return nil, fmt.Errorf("build initramfs: %w\nNext: fix the guest test package %s (go vet %s)", err, pkg, pkg)
		}
		mp := guestrun.ManifestPackage{
			ImportPath: pkg,
			Name:       strings.TrimPrefix(pkg, guestRoot),
			Binary:     TestsDir + "/" + file,
		}
		if mp.Tests, err = listTests(ctx, hostBin, o.GOARCH); err != nil {
			return nil, fmt.Errorf("build initramfs: %w", err)
		}
		m.Packages = append(m.Packages, mp)
		files = append(files, hostBin+":"+strings.TrimPrefix(mp.Binary, "/"))
	}
	manifestTmp := filepath.Join(tmp, "manifest.json")
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(manifestTmp, append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	files = append(files, manifestTmp+":"+strings.TrimPrefix(guestrun.ManifestPath, "/"))

	fmt.Fprintf(o.Log, "initramfs: building u-root image (init, uinit, test2json)…\n")
	uroot := filepath.Join(tmp, "uroot")
	if err := os.MkdirAll(uroot, 0o755); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	var ulog bytes.Buffer
	l := llog.New(slog.LevelWarn, llog.WritePrintf(&ulog))
	cpioTmp := filepath.Join(tmp, "initramfs.cpio")
	stop := ticker(o.Log, 20*time.Second, "initramfs: still building the u-root image")
	err = uimage.Create(l,
		uimage.WithEnv(golang.DisableCGO(), golang.WithGOARCH(o.GOARCH), golang.WithGOOS("linux")),
		uimage.WithCPIOOutput(cpioTmp),
		uimage.WithTempDir(uroot),
		uimage.WithBusyboxCommands(initPkg, uinitPkg),
		uimage.WithBinaryCommands("cmd/test2json"),
		uimage.WithInit("init"),
		uimage.WithUinit("uinit"),
		uimage.WithFiles(files...),
		uimage.WithSkipLDD(),
	)
	stop()
	if err != nil {
		return nil, fmt.Errorf("build initramfs: u-root: %w\n%s\nNext: check that go.mod pins u-root and that tools/tools.go imports its init command", err, ulog.String())
	}
	if err := os.Rename(cpioTmp, res.CPIO); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	if err := os.Rename(manifestTmp, res.Manifest); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	if err := os.WriteFile(stamp, []byte(key+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("build initramfs: %w", err)
	}
	res.Tests = countTests(m)
	fmt.Fprintf(o.Log, "initramfs: built %s (%d packages, %d tests) in %s\n", res.CPIO, len(m.Packages), res.Tests, time.Since(start).Round(100*time.Millisecond))
	return res, nil
}

// ticker prints msg and the time since it started every interval until
// the returned function is called.
func ticker(w io.Writer, every time.Duration, msg string) func() {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "%s (%s)\n", msg, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

func countTests(m *guestrun.Manifest) int {
	n := 0
	for _, p := range m.Packages {
		n += len(p.Tests)
	}
	return n
}

// guestPackages lists the packages under guest/ that have tests.
func guestPackages(ctx context.Context, root string) ([]string, error) {
	out, err := goOutput(ctx, root, []string{"GOOS=linux", "CGO_ENABLED=0"}, "list", "-f",
		`{{.ImportPath}} {{len .TestGoFiles}} {{len .XTestGoFiles}}`, "./guest/...")
	if err != nil {
		if strings.Contains(err.Error(), "matched no packages") {
			return nil, nil
		}
		return nil, fmt.Errorf("list guest packages: %w", err)
	}
	var pkgs []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		// guesttest's own tests are host-side tests of the helpers.
		if len(f) == 3 && (f[1] != "0" || f[2] != "0") && f[0] != guestRoot+"guesttest" {
			pkgs = append(pkgs, f[0])
		}
	}
	sort.Strings(pkgs)
	return pkgs, nil
}

// listTests asks a test binary for its top-level tests; only possible when
// the host can run it.
func listTests(ctx context.Context, bin, goarch string) ([]string, error) {
	if goarch != hostArch() {
		return nil, nil
	}
	cmd := exec.CommandContext(ctx, bin, "-test.list", ".")
	cmd.Env = append(os.Environ(), "NLMMAP_LISTING=1")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list tests in %s: %w", bin, err)
	}
	var tests []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "Benchmark") && !strings.ContainsAny(line, " \t") {
			tests = append(tests, line)
		}
	}
	sort.Strings(tests)
	return tests, nil
}

func goOutput(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// localDeps returns the directories, relative to root, of the module's own
// packages that the guest tests and the runner import from outside guest/
// and initramfs/ (a guest test of a library elsewhere in the repository must
// rebuild the image when the library changes).
func localDeps(ctx context.Context, root, goarch string) ([]string, error) {
	out, err := goOutput(ctx, root, []string{"GOOS=linux", "GOARCH=" + goarch, "CGO_ENABLED=0"},
		"list", "-deps", "-test", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./guest/...", "./initramfs/uinit")
	if err != nil {
		if strings.Contains(err.Error(), "matched no packages") {
			return nil, nil
		}
		return nil, fmt.Errorf("list guest test dependencies: %w", err)
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var dirs []string
	for _, d := range strings.Split(strings.TrimSpace(out), "\n") {
		rel, err := filepath.Rel(absRoot, d)
		if d == "" || err != nil || strings.HasPrefix(rel, "..") || seen[rel] {
			continue
		}
		top := strings.Split(rel, string(filepath.Separator))[0]
		if top == "guest" || top == "initramfs" {
			continue // hashed whole
		}
		seen[rel] = true
		dirs = append(dirs, rel)
	}
	sort.Strings(dirs)
	return dirs, nil
}
