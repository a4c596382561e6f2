package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makePatches returns a pristine repo with file a.txt and two format-patch
// files against it: one that applies and one whose context does not.
func makePatches(t *testing.T) (*Pristine, string) {
	t.Helper()
	tmp := t.TempDir()
	work := fakeTree(t, filepath.Join(tmp, "work"), "12")
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("one\ntwo\nthree\nfour\nfive\n"), 0o644)
	git(t, work, "init", "-q")
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "base")
	base := strings.TrimSpace(git(t, work, "rev-parse", "HEAD"))

	os.WriteFile(filepath.Join(work, "a.txt"), []byte("one\nTWO\nthree\nfour\nfive\n"), 0o644)
	git(t, work, "commit", "-q", "-a", "-m", "good: capitalize two")
	// The second patch is made against a history the series does not have,
	// so its context ("THREE") does not match.
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("one\nTWO\nTHREE\nfour\nfive\n"), 0o644)
	git(t, work, "commit", "-q", "-a", "-m", "not in the series")
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("one\nTWO\nTHREE\nFOUR\nfive\n"), 0o644)
	git(t, work, "commit", "-q", "-a", "-m", "bad: capitalize four")

	patches := filepath.Join(tmp, "patches")
	os.MkdirAll(patches, 0o755)
	git(t, work, "format-patch", "-q", "-o", patches, base+"..HEAD~2")
	git(t, work, "format-patch", "-q", "--start-number", "2", "-o", patches, "HEAD~1..HEAD")
	os.WriteFile(filepath.Join(patches, CoverLetter), []byte("not a patch"), 0o644)

	// Bare "pristine" repo like ImportPristine makes.
	repo := filepath.Join(tmp, "pristine.git")
	git(t, tmp, "clone", "-q", "--bare", work, repo)
	return &Pristine{Repo: repo, BaseCommit: base}, patches
}

func TestListPatches(t *testing.T) {
	_, dir := makePatches(t)
	ps, err := ListPatches(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	want := "0001-good-capitalize-two.patch 0002-bad-capitalize-four.patch"
	if strings.Join(names, " ") != want {
		t.Errorf("ListPatches = %v, want %s (cover letter skipped)", names, want)
	}
	if ps, err := ListPatches(filepath.Join(dir, "missing")); err != nil || len(ps) != 0 {
		t.Errorf("missing dir: %v, %v; want an empty series", ps, err)
	}
}

func TestApplyPatches(t *testing.T) {
	p, dir := makePatches(t)
	ps, err := ListPatches(dir)
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(t.TempDir(), "tree")
	if err := PrepareTree(p, tree); err != nil {
		t.Fatal(err)
	}
	if err := ApplyPatches(tree, ps[:1]); err != nil {
		t.Fatalf("good patch: %v", err)
	}
	first := strings.TrimSpace(git(t, tree, "rev-parse", "HEAD"))

	// Reset and apply the whole series: the second patch fails.
	if err := PrepareTree(p, tree); err != nil {
		t.Fatal(err)
	}
	err = ApplyPatches(tree, ps)
	pe, ok := err.(*PatchError)
	if !ok {
		t.Fatalf("ApplyPatches = %v, want *PatchError", err)
	}
	msg := pe.Error()
	for _, want := range []string{
		"apply 0002-bad-capitalize-four.patch: does not apply",
		"Rejected hunks:",
		"--- a.txt.rej",
		"-four", // the hunk that did not apply
		"error: patch failed: a.txt:1",
		"+FOUR",
		"Next: rebase 0002-bad-capitalize-four.patch",
	} {
		if strings.Contains(msg, "git am --continue") {
			t.Errorf("error repeats git am's advice to continue:\n%s", msg)
		}
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	// The tree is left with patch 1 applied, no am in progress, no .rej.
	if head := strings.TrimSpace(git(t, tree, "rev-parse", "HEAD")); head != first {
		t.Errorf("HEAD = %s, want %s (patch 1 applied, deterministic)", head, first)
	}
	if _, err := os.Stat(filepath.Join(tree, "a.txt.rej")); err == nil {
		t.Error("a.txt.rej left behind")
	}
	if st := git(t, tree, "status", "--porcelain"); st != "" {
		t.Errorf("tree not clean: %s", st)
	}
}

func TestImportPristineDeterministic(t *testing.T) {
	// The same source imported into two caches gives the same base commit.
	tree := fakeTree(t, t.TempDir(), "12")
	os.WriteFile(filepath.Join(tree, "x.c"), []byte("int x;\n"), 0o644)
	src, err := ResolveSource(SourceEnv{Getenv: envFrom(map[string]string{"KERNEL_SRC": tree}), Host: noApt, CacheRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// A dir source's identity includes its path and mtimes, so the message
	// would differ between machines; fix Detail as a tarball's would be.
	src.Detail = "tarball x sha256 0"
	var bases []string
	for i := 0; i < 2; i++ {
		p, err := ImportPristine(src, t.TempDir(), os.Stderr)
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, p.BaseCommit)
		if p.Version != "6.12.3" {
			t.Errorf("Version = %q", p.Version)
		}
	}
	if bases[0] != bases[1] {
		t.Errorf("base commits differ: %v", bases)
	}
}

func TestKeySensitivity(t *testing.T) {
	f1 := mustFragment(t, "base.config", "CONFIG_A=y\n")
	f2 := mustFragment(t, "base.config", "CONFIG_A=m\n")
	p1 := []Patch{{Name: "0001-a.patch", Data: []byte("x")}}
	p2 := []Patch{{Name: "0001-a.patch", Data: []byte("y")}}
	p3 := []Patch{{Name: "0001-b.patch", Data: []byte("x")}}
	base := Key("src", "debug", "gcc 12", p1, []*Fragment{f1})
	if again := Key("src", "debug", "gcc 12", p1, []*Fragment{f1}); again != base {
		t.Errorf("Key is not stable")
	}
	for name, k := range map[string]string{
		"source":        Key("src2", "debug", "gcc 12", p1, []*Fragment{f1}),
		"flavor":        Key("src", "baseline", "gcc 12", p1, []*Fragment{f1}),
		"compiler":      Key("src", "debug", "gcc 13", p1, []*Fragment{f1}),
		"patch content": Key("src", "debug", "gcc 12", p2, []*Fragment{f1}),
		"patch name":    Key("src", "debug", "gcc 12", p3, []*Fragment{f1}),
		"no patches":    Key("src", "debug", "gcc 12", nil, []*Fragment{f1}),
		"fragment":      Key("src", "debug", "gcc 12", p1, []*Fragment{f2}),
	} {
		if k == base {
			t.Errorf("changing the %s does not change the key", name)
		}
	}
}
