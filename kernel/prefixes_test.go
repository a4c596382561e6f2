package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrefixCheckout moves a tree between prefixes of a three-patch series
// the way a bisection does, and checks that it reuses the recorded commits
// and never touches a file the series does not change.
func TestPrefixCheckout(t *testing.T) {
	tmp := t.TempDir()
	work := fakeTree(t, filepath.Join(tmp, "work"), "12")
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("one\ntwo\nthree\n"), 0o644)
	os.WriteFile(filepath.Join(work, "untouched.txt"), []byte("x\n"), 0o644)
	git(t, work, "init", "-q")
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "base")
	base := strings.TrimSpace(git(t, work, "rev-parse", "HEAD"))
	for i, content := range []string{"ONE\ntwo\nthree\n", "ONE\nTWO\nthree\n", "ONE\nTWO\nTHREE\n"} {
		os.WriteFile(filepath.Join(work, "a.txt"), []byte(content), 0o644)
		git(t, work, "commit", "-q", "-a", "-m", "patch "+string(rune('1'+i)))
	}
	series := filepath.Join(tmp, "patches")
	git(t, work, "format-patch", "-q", "-o", series, base+"..HEAD")
	// A revision of the series whose patch 3 differs.
	git(t, work, "checkout", "-q", "HEAD~1")
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("ONE\nTWO\nThree\n"), 0o644)
	git(t, work, "commit", "-q", "-a", "-m", "patch 3, revised")
	revised := filepath.Join(tmp, "revised")
	git(t, work, "format-patch", "-q", "-o", revised, base+"..HEAD")
	repo := filepath.Join(tmp, "pristine.git")
	git(t, tmp, "clone", "-q", "--bare", work, repo)
	pristine := &Pristine{Repo: repo, BaseCommit: base}

	dir := filepath.Join(tmp, "prefixes")
	os.MkdirAll(dir, 0o755)
	builder := func(patchDir string) *prefixBuilder {
		ps, err := ListPatches(patchDir)
		if err != nil || len(ps) != 3 {
			t.Fatalf("ListPatches(%s) = %d patches, %v", patchDir, len(ps), err)
		}
		return &prefixBuilder{pristine: pristine, dir: dir, tree: filepath.Join(dir, "src"), patches: ps}
	}
	pb := builder(series)
	read := func(name string) string {
		data, _ := os.ReadFile(filepath.Join(pb.tree, name))
		return string(data)
	}
	if err := pb.checkout(3); err != nil {
		t.Fatal(err)
	}
	if got := read("a.txt"); got != "ONE\nTWO\nTHREE\n" {
		t.Fatalf("prefix 3: a.txt = %q", got)
	}
	if n := len(pb.commits()); n != 3 {
		t.Errorf("%d commits recorded, want 3", n)
	}
	// git wrote untouched.txt once; moving between prefixes must not
	// write it again (its mtime would make make rebuild what uses it).
	mtime := func() time.Time {
		st, err := os.Stat(filepath.Join(pb.tree, "untouched.txt"))
		if err != nil {
			t.Fatal(err)
		}
		return st.ModTime()
	}
	old := mtime()
	for _, step := range []struct {
		n    int
		want string
	}{{1, "ONE\ntwo\nthree\n"}, {2, "ONE\nTWO\nthree\n"}, {3, "ONE\nTWO\nTHREE\n"}} {
		if err := pb.checkout(step.n); err != nil {
			t.Fatal(err)
		}
		if got := read("a.txt"); got != step.want {
			t.Errorf("prefix %d: a.txt = %q, want %q", step.n, got, step.want)
		}
	}
	if m := mtime(); !m.Equal(old) {
		t.Errorf("moving between prefixes rewrote untouched.txt (mtime %s, was %s)", m, old)
	}
	// The revised series reuses prefix 2 and applies its own patch 3.
	pb = builder(revised)
	if err := pb.checkout(3); err != nil {
		t.Fatal(err)
	}
	if got := read("a.txt"); got != "ONE\nTWO\nThree\n" {
		t.Errorf("revised prefix 3: a.txt = %q", got)
	}
	if n := len(pb.commits()); n != 4 {
		t.Errorf("%d commits recorded, want 4 (the revised prefix 3 added)", n)
	}
	if m := mtime(); !m.Equal(old) {
		t.Errorf("the revised series rewrote untouched.txt (mtime %s, was %s)", m, old)
	}
}
