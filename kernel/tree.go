package kernel

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Fixed identity and date of every commit the harness makes, so the same
// source and the same series give the same commit hashes on every machine.
var commitEnv = []string{
	"GIT_AUTHOR_NAME=nlmmap harness",
	"GIT_AUTHOR_EMAIL=harness@nlmmap.invalid",
	"GIT_AUTHOR_DATE=2000-01-01T00:00:00Z",
	"GIT_COMMITTER_NAME=nlmmap harness",
	"GIT_COMMITTER_EMAIL=harness@nlmmap.invalid",
	"GIT_COMMITTER_DATE=2000-01-01T00:00:00Z",
}

// gitConfig keeps the user's git configuration from changing what we commit.
var gitConfig = []string{"-c", "core.autocrlf=false", "-c", "core.fileMode=true", "-c", "commit.gpgSign=false", "-c", "gc.auto=0", "-c", "init.defaultBranch=pristine"}

// Pristine is a source imported into a bare git repository with one
// deterministic commit.
type Pristine struct {
	Repo       string // bare repository
	BaseCommit string
	Version    string // e.g. 6.12.117
}

// ImportPristine imports src into cacheRoot/src/<id>.git once; later calls
// with the same source identity return the existing repository.
func ImportPristine(src *Source, cacheRoot string, log io.Writer) (*Pristine, error) {
	repo := filepath.Join(cacheRoot, "src", src.ShortID()+".git")
	unlock, err := lockPath(context.Background(), repo+".lock", "the source import "+repo, log)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if base, err := gitOut(repo, "rev-parse", "--verify", "-q", "refs/heads/pristine^{commit}"); err == nil {
		ver, _ := gitOut(repo, "config", "nlmmap.version")
		return &Pristine{Repo: repo, BaseCommit: strings.TrimSpace(base), Version: strings.TrimSpace(ver)}, nil
	}
	if err := os.MkdirAll(filepath.Dir(repo), 0o755); err != nil {
		return nil, fmt.Errorf("import kernel source: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(repo), ".import-*")
	if err != nil {
		return nil, fmt.Errorf("import kernel source: %w", err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	fmt.Fprintf(log, "kernel: importing %s (%s) into %s (once per source; takes a minute or two)\n", src.Path, src.Origin, repo)
	if err := copySource(src, tmp); err != nil {
		return nil, fmt.Errorf("import kernel source %s: %w", src.Path, err)
	}
	ver, err := KernelVersion(tmp)
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("Linux %s\n\nImported by the nlmmap harness from %s.\n", ver, src.Detail)
	steps := [][]string{
		append(append([]string{}, gitConfig...), "init", "-q"),
		append(append([]string{}, gitConfig...), "add", "-f", "-A"),
		append(append([]string{}, gitConfig...), "commit", "-q", "--no-verify", "-m", msg),
		{"config", "nlmmap.version", ver},
		{"config", "core.bare", "true"},
	}
	for _, args := range steps {
		if _, err := gitEnvOut(tmp, commitEnv, args...); err != nil {
			return nil, fmt.Errorf("import kernel source %s: %w", src.Path, err)
		}
	}
	os.RemoveAll(repo) // a half-finished import from an interrupted run
	if err := os.Rename(filepath.Join(tmp, ".git"), repo); err != nil {
		return nil, fmt.Errorf("import kernel source: %w", err)
	}
	base, err := gitOut(repo, "rev-parse", "refs/heads/pristine")
	if err != nil {
		return nil, fmt.Errorf("import kernel source: %w", err)
	}
	fmt.Fprintf(log, "kernel: imported Linux %s as base commit %s in %s\n", ver, strings.TrimSpace(base)[:12], time.Since(start).Round(time.Second))
	return &Pristine{Repo: repo, BaseCommit: strings.TrimSpace(base), Version: ver}, nil
}

// copySource puts the files of src into dst (an empty directory).
func copySource(src *Source, dst string) error {
	var script string
	switch src.Kind {
	case KindTarball:
		script = `tar -xf "$1" -C "$2" --strip-components=1 --no-same-owner`
	case KindDir:
		script = `tar -C "$1" --exclude=./.git -cf - . | tar -C "$2" -xf -`
	case KindGit:
		// Tracked and untracked-but-not-ignored files, as they are in the
		// work tree (local changes included), skipping deleted ones.
		list, err := gitOut(src.Path, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
		if err != nil {
			return err
		}
		f, err := os.CreateTemp("", "nlmmap-files-*")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		for _, p := range splitNul(list) {
			if _, err := os.Lstat(filepath.Join(src.Path, p)); err == nil {
				fmt.Fprintf(f, "%s\x00", p)
			}
		}
		if err := f.Close(); err != nil {
			return err
		}
		script = `tar -C "$1" --null -T "$3" -cf - | tar -C "$2" -xf -`
		return runSh(script, src.Path, dst, f.Name())
	}
	return runSh(script, src.Path, dst)
}

func runSh(script string, args ...string) error {
	cmd := exec.Command("bash", append([]string{"-c", "set -eo pipefail; " + script, "bash"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", script, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PrepareTree makes dir a detached work tree of the pristine repository at
// the base commit, with no patch applied and nothing else in it. An existing
// work tree is reset rather than recreated, so files the series does not
// touch keep their timestamps and make rebuilds only what changed.
func PrepareTree(p *Pristine, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		gitOut(dir, "am", "--abort") // an interrupted earlier run; ignore "no am in progress"
		if _, err := gitOut(dir, "checkout", "-q", "-f", "--detach", p.BaseCommit); err == nil {
			if _, err := gitOut(dir, "clean", "-q", "-f", "-d", "-x"); err == nil {
				return nil
			}
		}
		// Fall through: recreate a broken tree.
	}
	os.RemoveAll(dir)
	gitOut(p.Repo, "worktree", "prune")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("prepare kernel tree: %w", err)
	}
	if _, err := gitOut(p.Repo, "worktree", "add", "-f", "-q", "--detach", dir, p.BaseCommit); err != nil {
		return fmt.Errorf("prepare kernel tree %s: %w\nNext: remove %s and retry", dir, err, dir)
	}
	return nil
}

// Patch is one file of the series.
type Patch struct {
	Name   string // file name, e.g. 0001-netlink-add-mmap.patch
	Path   string
	SHA256 string // of the file, as sha256sum prints it
	Data   []byte
}

// CoverLetter is skipped when applying the series.
const CoverLetter = "0000-cover-letter.patch"

// ListPatches returns every *.patch in dir in lexical order, except the
// cover letter. A missing or empty dir is an empty series.
func ListPatches(dir string) ([]Patch, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	if err != nil {
		return nil, fmt.Errorf("list patches: %w", err)
	}
	sort.Strings(m)
	var out []Patch
	for _, p := range m {
		if filepath.Base(p) == CoverLetter {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("list patches: %w", err)
		}
		out = append(out, Patch{Name: filepath.Base(p), Path: p, SHA256: plainSHA256(data), Data: data})
	}
	return out, nil
}

// PatchError is a patch of the series that does not apply.
type PatchError struct {
	Patch    string // file name
	Tree     string
	Output   string // git am's complaint
	Rejected string // rejected hunks, from git apply --reject
}

func (e *PatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apply %s: does not apply\n%s\n", e.Patch, strings.TrimRight(e.Output, "\n "))
	if e.Rejected != "" {
		fmt.Fprintf(&b, "Rejected hunks:\n%s\n", strings.TrimRight(e.Rejected, "\n"))
	}
	fmt.Fprintf(&b, "Next: rebase %s onto the base commit plus the patches before it (the earlier patches are applied in %s), fix the hunks above, and regenerate it with git format-patch", e.Patch, e.Tree)
	return b.String()
}

// ApplyPatches applies patches in order to the work tree dir with git am.
// A patch that does not apply returns a *PatchError with its rejected hunks,
// and leaves dir with the earlier patches applied and no am in progress.
func ApplyPatches(dir string, patches []Patch) error {
	for _, p := range patches {
		abs, err := filepath.Abs(p.Path)
		if err != nil {
			return fmt.Errorf("apply %s: %w", p.Name, err)
		}
		args := append(append([]string{}, gitConfig...), "am", "-q", "--no-gpg-sign", abs)
		out, err := gitEnvOut(dir, commitEnv, args...)
		if err == nil {
			continue
		}
		pe := &PatchError{Patch: p.Name, Tree: dir, Output: amComplaint(out + "\n" + err.Error())}
		pe.Rejected = rejectedHunks(dir, abs, p.Data)
		gitOut(dir, "am", "--abort")
		gitOut(dir, "checkout", "-q", "-f", "HEAD")
		gitOut(dir, "clean", "-q", "-f", "-d", "-x")
		return pe
	}
	return nil
}

// rejectedHunks re-applies the patch with --reject and returns the
// contents of the .rej files it leaves behind.
func rejectedHunks(dir, patchPath string, data []byte) string {
	out, _ := gitOut(dir, "apply", "--reject", "--verbose", patchPath)
	var b strings.Builder
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "+++ b/") && !strings.HasPrefix(line, "--- a/") {
			continue
		}
		f := line[6:]
		if seen[f] {
			continue
		}
		seen[f] = true
		rej, err := os.ReadFile(filepath.Join(dir, f+".rej"))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s.rej\n%s", f, rej)
	}
	if b.Len() == 0 {
		// No .rej: the patch is malformed or touches missing files; git's
		// own words are the best we have.
		return strings.TrimSpace(out)
	}
	return b.String()
}

// amComplaint keeps git am's diagnosis and drops its advice about
// continuing, which does not apply: the harness aborts the am.
func amComplaint(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, ": exit status "); i >= 0 && strings.HasPrefix(line, "git ") {
			// "git -c ... am -q x.patch: exit status 128: error: ..." → the error.
			if j := strings.Index(line[i+len(": exit status "):], ": "); j >= 0 {
				line = line[i+len(": exit status ")+j+2:]
			}
		}
		switch {
		case line == "",
			strings.HasPrefix(line, "hint:"),
			strings.HasPrefix(line, "Patch failed at"), // numbered from 1 per am: misleading
			strings.HasPrefix(line, "When you have resolved"),
			strings.HasPrefix(line, "If you prefer to skip"),
			strings.HasPrefix(line, "To restore the original branch"):
			continue
		}
		keep = append(keep, "  "+line)
	}
	return strings.Join(keep, "\n")
}
