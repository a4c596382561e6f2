package kernel

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nlmmap/nlmmap/internal/hostdeps"
)

// PrefixSet is a kernel configuration that every prefix of the series is
// built with: tinyconfig plus Fragments from kernel/config/.
type PrefixSet struct {
	Name      string // e.g. "mmap=y"; also names the object directory
	Fragments []string
}

// Prefix is the outcome of building one prefix of the series with one set.
type Prefix struct {
	N        int    // patches applied, 1..len(series)
	Patch    string // file name of the last patch applied
	Set      string
	BzImage  string // valid until the set's next build
	Obj      string // the set's object directory (see Publish)
	Duration time.Duration
	// Info describes the build as build.json does; Flavor is
	// "prefix-<NN>-<set>" and Patches are the ones applied.
	Info BuildInfo
}

// BuildPrefixes applies the series from o.PatchesDir one patch at a time
// and, after each patch, configures (checking the fragments) and builds
// bzImage with every set. Each set has one object directory that is built
// incrementally, so every prefix costs what its patch changes, not a whole
// kernel. visit, if not nil, is called after each build, for example to
// boot it; an error from it stops the run.
//
// It stops at the first patch that does not apply, configuration that does
// not check or build that fails, and returns the prefixes built so far with
// an error that names the patch and set.
func BuildPrefixes(ctx context.Context, o Options, sets []PrefixSet, visit func(Prefix) error) ([]Prefix, error) {
	if err := o.defaults(); err != nil {
		return nil, fmt.Errorf("build prefixes: %w", err)
	}
	if err := hostdeps.Ensure(o.Log, hostdeps.KernelBuild...); err != nil {
		return nil, fmt.Errorf("build prefixes: %w", err)
	}
	patches, err := ListPatches(o.PatchesDir)
	if err != nil {
		return nil, fmt.Errorf("build prefixes: %w", err)
	}
	if len(patches) == 0 {
		return nil, fmt.Errorf("build prefixes: no patches in %s", o.PatchesDir)
	}
	frags := make([][]*Fragment, len(sets))
	for i, s := range sets {
		for _, name := range s.Fragments {
			f, err := ReadFragment(filepath.Join(o.ConfigDir, name))
			if err != nil {
				return nil, fmt.Errorf("build prefixes: %w", err)
			}
			frags[i] = append(frags[i], f)
		}
	}
	src, err := ResolveSource(SourceEnv{Getenv: o.Getenv, CacheRoot: o.CacheRoot, Log: o.Log})
	if err != nil {
		return nil, err
	}
	pristine, err := ImportPristine(src, o.CacheRoot, o.Log)
	if err != nil {
		return nil, err
	}

	dir := filepath.Join(o.CacheRoot, "build", "prefixes-"+src.ShortID())
	unlock, err := lockPath(ctx, dir+".lock", "the prefix build directory "+dir, o.Log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	tree := filepath.Join(dir, "src")
	if err := PrepareTree(pristine, tree); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("build prefixes: %w", err)
	}
	logPath := filepath.Join(dir, "build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("build prefixes: %w", err)
	}
	defer logf.Close()

	pb := &prefixBuilder{o: o, src: src, pristine: pristine, dir: dir, tree: tree, patches: patches, log: logf, logPath: logPath}
	var done []Prefix
	for n, p := range patches {
		if err := ApplyPatches(tree, []Patch{p}); err != nil {
			return done, err
		}
		if err := pb.record(n + 1); err != nil {
			return done, err
		}
		for i, s := range sets {
			fmt.Fprintf(o.Log, "kernel: prefix %d/%d (%s) with %s\n", n+1, len(patches), p.Name, s.Name)
			pr, err := pb.build(ctx, n+1, s, frags[i])
			if err != nil {
				return done, err
			}
			done = append(done, pr)
			if visit != nil {
				if err := visit(pr); err != nil {
					return done, fmt.Errorf("prefix %d (%s) with %s: %w", n+1, p.Name, s.Name, err)
				}
			}
		}
	}
	return done, nil
}

// BuildPrefix builds the first n patches of the series with one set, in
// the tree and object directories BuildPrefixes uses. The tree moves to
// the prefix with git checkout when an earlier run recorded its commit
// (the harness's commits are deterministic), so only the files that differ
// from the tree's last state are touched and rebuilt: a bisection costs
// what the patches between its steps change.
func BuildPrefix(ctx context.Context, o Options, set PrefixSet, n int) (Prefix, error) {
	if err := o.defaults(); err != nil {
		return Prefix{}, fmt.Errorf("build prefix: %w", err)
	}
	if err := hostdeps.Ensure(o.Log, hostdeps.KernelBuild...); err != nil {
		return Prefix{}, fmt.Errorf("build prefix: %w", err)
	}
	patches, err := ListPatches(o.PatchesDir)
	if err != nil {
		return Prefix{}, fmt.Errorf("build prefix: %w", err)
	}
	if n < 1 || n > len(patches) {
		return Prefix{}, fmt.Errorf("build prefix %d: the series in %s has patches 1 to %d", n, o.PatchesDir, len(patches))
	}
	var frags []*Fragment
	for _, name := range set.Fragments {
		f, err := ReadFragment(filepath.Join(o.ConfigDir, name))
		if err != nil {
			return Prefix{}, fmt.Errorf("build prefix: %w", err)
		}
		frags = append(frags, f)
	}
	src, err := ResolveSource(SourceEnv{Getenv: o.Getenv, CacheRoot: o.CacheRoot, Log: o.Log})
	if err != nil {
		return Prefix{}, err
	}
	pristine, err := ImportPristine(src, o.CacheRoot, o.Log)
	if err != nil {
		return Prefix{}, err
	}
	dir := filepath.Join(o.CacheRoot, "build", "prefixes-"+src.ShortID())
	unlock, err := lockPath(ctx, dir+".lock", "the prefix build directory "+dir, o.Log)
	if err != nil {
		return Prefix{}, err
	}
	defer unlock()
	tree := filepath.Join(dir, "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Prefix{}, fmt.Errorf("build prefix: %w", err)
	}
	logPath := filepath.Join(dir, "build.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Prefix{}, fmt.Errorf("build prefix: %w", err)
	}
	defer logf.Close()
	pb := &prefixBuilder{o: o, src: src, pristine: pristine, dir: dir, tree: tree, patches: patches, log: logf, logPath: logPath}
	if err := pb.checkout(n); err != nil {
		return Prefix{}, err
	}
	fmt.Fprintf(o.Log, "kernel: prefix %d/%d (%s) with %s\n", n, len(patches), patches[n-1].Name, set.Name)
	return pb.build(ctx, n, set, frags)
}

// prefixBuilder builds prefixes in one tree.
type prefixBuilder struct {
	o        Options
	src      *Source
	pristine *Pristine
	dir      string
	tree     string
	patches  []Patch
	log      *os.File
	logPath  string
}

// commitsFile maps a prefix's identity (base commit and the patches' hashes)
// to the commit the harness made for it.
const commitsFile = "commits.json"

func (pb *prefixBuilder) prefixKey(n int) string {
	parts := []string{pb.pristine.BaseCommit}
	for _, p := range pb.patches[:n] {
		parts = append(parts, p.SHA256)
	}
	return sum(parts...)
}

func (pb *prefixBuilder) commits() map[string]string {
	m := map[string]string{}
	if data, err := os.ReadFile(filepath.Join(pb.dir, commitsFile)); err == nil {
		json.Unmarshal(data, &m)
	}
	return m
}

// record notes the tree's HEAD as the commit of prefix n.
func (pb *prefixBuilder) record(n int) error {
	head, err := gitOut(pb.tree, "rev-parse", "HEAD")
	if err != nil {
		return fmt.Errorf("build prefixes: %w", err)
	}
	m := pb.commits()
	m[pb.prefixKey(n)] = strings.TrimSpace(head)
	data, _ := json.MarshalIndent(m, "", "  ")
	return writeFileAtomic(filepath.Join(pb.dir, commitsFile), data)
}

// checkout puts the tree at prefix n: it checks out the longest recorded
// prefix of it (the commits are deterministic, so a prefix recorded by an
// earlier run, even of an older revision of the later patches, is the same
// commit) and applies the rest; without one it starts from a fresh base
// tree. git checkout only rewrites the files that differ, so make rebuilds
// only what the move changes.
func (pb *prefixBuilder) checkout(n int) error {
	from := 0
	if _, err := os.Stat(filepath.Join(pb.tree, ".git")); err == nil {
		recorded := pb.commits()
		for k := n; k >= 1; k-- {
			c, ok := recorded[pb.prefixKey(k)]
			if !ok {
				continue
			}
			gitOut(pb.tree, "am", "--abort")
			if _, err := gitOut(pb.tree, "checkout", "-q", "-f", "--detach", c); err == nil {
				from = k
			}
			break
		}
	}
	if from == 0 {
		if err := PrepareTree(pb.pristine, pb.tree); err != nil {
			return err
		}
	}
	for i := from; i < n; i++ {
		if err := ApplyPatches(pb.tree, []Patch{pb.patches[i]}); err != nil {
			return err
		}
		if err := pb.record(i + 1); err != nil {
			return err
		}
	}
	return nil
}

// build configures and builds the tree as it is (prefix n) with set.
func (pb *prefixBuilder) build(ctx context.Context, n int, s PrefixSet, frags []*Fragment) (Prefix, error) {
	p := pb.patches[n-1]
	obj := filepath.Join(pb.dir, "obj-"+safeName(s.Name))
	if err := os.MkdirAll(obj, 0o755); err != nil {
		return Prefix{}, fmt.Errorf("build prefixes: %w", err)
	}
	mk := &maker{ctx: ctx, tree: pb.tree, obj: obj, log: pb.log, logPath: pb.logPath, progress: pb.o.Log, every: pb.o.Progress}
	start := time.Now()
	if err := configure(mk, obj, frags); err != nil {
		return Prefix{}, fmt.Errorf("prefix %d (%s) with %s: %w", n, p.Name, s.Name, err)
	}
	if err := mk.run("build kernel", true, fmt.Sprintf("-j%d", pb.o.Jobs), "bzImage"); err != nil {
		return Prefix{}, fmt.Errorf("prefix %d (%s) with %s: %w", n, p.Name, s.Name, err)
	}
	rel, err := mk.output("kernelrelease")
	if err != nil {
		return Prefix{}, err
	}
	head, err := gitOut(pb.tree, "rev-parse", "HEAD")
	if err != nil {
		return Prefix{}, fmt.Errorf("build prefixes: %w", err)
	}
	compiler, _ := compilerVersion()
	info := BuildInfo{
		Format: FormatVersion, Flavor: fmt.Sprintf("prefix-%02d-%s", n, safeName(s.Name)),
		Source: *pb.src, BaseCommit: pb.pristine.BaseCommit, KernelVersion: pb.pristine.Version,
		HeadCommit: strings.TrimSpace(head), Compiler: compiler,
		KernelRelease: strings.TrimSpace(rel), BuildDir: obj,
	}
	info.Patches, info.Fragments = inputHashes(pb.patches[:n], frags)
	pr := Prefix{N: n, Patch: p.Name, Set: s.Name, Obj: obj,
		BzImage: filepath.Join(obj, "arch/x86/boot/bzImage"), Duration: time.Since(start), Info: info}
	fmt.Fprintf(pb.o.Log, "kernel: prefix %d/%d with %s built in %s\n", n, len(pb.patches), s.Name, pr.Duration.Round(time.Second))
	return pr, nil
}

var unsafeRe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func safeName(s string) string { return unsafeRe.ReplaceAllString(s, "_") }

// BaseTree returns a work tree of the pristine source at the series' base
// commit, under the cache, for tools that need a kernel tree without the
// series (scripts/checkpatch.pl, for example). name keeps the trees of
// different users apart.
func BaseTree(o Options, name string) (string, error) {
	if err := o.defaults(); err != nil {
		return "", fmt.Errorf("base tree: %w", err)
	}
	src, err := ResolveSource(SourceEnv{Getenv: o.Getenv, CacheRoot: o.CacheRoot, Log: o.Log})
	if err != nil {
		return "", err
	}
	pristine, err := ImportPristine(src, o.CacheRoot, o.Log)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(o.CacheRoot, "build", safeName(name)+"-"+src.ShortID())
	unlock, err := lockPath(context.Background(), dir+".lock", "the tree "+dir, o.Log)
	if err != nil {
		return "", err
	}
	defer unlock()
	tree := filepath.Join(dir, "src")
	if err := PrepareTree(pristine, tree); err != nil {
		return "", err
	}
	return tree, nil
}
