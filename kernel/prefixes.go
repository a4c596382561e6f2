package kernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
	Duration time.Duration
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

	var done []Prefix
	for n, p := range patches {
		if err := ApplyPatches(tree, []Patch{p}); err != nil {
			return done, err
		}
		for i, s := range sets {
			obj := filepath.Join(dir, "obj-"+safeName(s.Name))
			if err := os.MkdirAll(obj, 0o755); err != nil {
				return done, fmt.Errorf("build prefixes: %w", err)
			}
			mk := &maker{ctx: ctx, tree: tree, obj: obj, log: logf, logPath: logPath, progress: o.Log, every: o.Progress}
			fmt.Fprintf(o.Log, "kernel: prefix %d/%d (%s) with %s\n", n+1, len(patches), p.Name, s.Name)
			start := time.Now()
			if err := configure(mk, obj, frags[i]); err != nil {
				return done, fmt.Errorf("prefix %d (%s) with %s: %w", n+1, p.Name, s.Name, err)
			}
			if err := mk.run("build kernel", true, fmt.Sprintf("-j%d", o.Jobs), "bzImage"); err != nil {
				return done, fmt.Errorf("prefix %d (%s) with %s: %w", n+1, p.Name, s.Name, err)
			}
			pr := Prefix{N: n + 1, Patch: p.Name, Set: s.Name,
				BzImage: filepath.Join(obj, "arch/x86/boot/bzImage"), Duration: time.Since(start)}
			fmt.Fprintf(o.Log, "kernel: prefix %d/%d with %s built in %s\n", n+1, len(patches), s.Name, pr.Duration.Round(time.Second))
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
