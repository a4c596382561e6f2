package coverage

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const diff = `diff --git a/net/netlink/af_netlink.c b/net/netlink/af_netlink.c
index 1111111..2222222 100644
--- a/net/netlink/af_netlink.c
+++ b/net/netlink/af_netlink.c
@@ -10,0 +11,2 @@ static int x;
+#include "mmap.h"
+int y;
@@ -40,2 +42,3 @@ int f(void)
-	return 0;
+	if (y)
+		return 1;
+	return 0;
diff --git a/net/netlink/mmap.c b/net/netlink/mmap.c
new file mode 100644
--- /dev/null
+++ b/net/netlink/mmap.c
@@ -0,0 +1,3 @@
+int g(void)
+{
+}
diff --git a/gone.c b/gone.c
deleted file mode 100644
--- a/gone.c
+++ /dev/null
@@ -1 +0,0 @@
-int z;
`

func TestAddedLines(t *testing.T) {
	got, err := AddedLines([]byte(diff))
	if err != nil {
		t.Fatal(err)
	}
	want := Lines{"net/netlink/af_netlink.c": {11, 12, 42, 43, 44}, "net/netlink/mmap.c": {1, 2, 3}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AddedLines = %v, want %v", got, want)
	}
	if _, err := AddedLines([]byte("+++ b/x.c\n@@ garbage @@\n")); err == nil {
		t.Error("bad hunk header accepted")
	}
}

func TestComputeAndReport(t *testing.T) {
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "net/netlink"), 0o755)
	os.WriteFile(filepath.Join(tree, "net/netlink/mmap.c"), []byte("int g(void)\n{\n\treturn never();\n}\n"), 0o644)
	added := Lines{
		"net/netlink/af_netlink.c": {11, 12, 42, 43, 44},
		"net/netlink/mmap.c":       {1, 2, 3},
		"net/netlink/diag.c":       {5},
		"Documentation/x.rst":      {1},
	}
	c := Counts{}
	// af_netlink.c from its object, with an absolute path; mmap.c from
	// its object with a path relative to the build's directory; a header
	// outside the tree.
	c.ParseGcov([]byte(`{"current_working_directory":"/obj","files":[{"file":"`+tree+`/net/netlink/af_netlink.c","lines":[{"line_number":42,"count":3},{"line_number":43,"count":0},{"line_number":44,"count":3},{"line_number":7,"count":9}]},{"file":"/usr/include/stdio.h","lines":[{"line_number":1,"count":1}]}]}`), tree)
	c.ParseGcov([]byte(`{"current_working_directory":"`+tree+`","files":[{"file":"net/netlink/mmap.c","lines":[{"line_number":1,"count":1},{"line_number":3,"count":0}]}]}`), tree)
	r := Compute(added, c, tree)
	if r.Code != 5 || r.Covered != 3 || len(r.Files) != 2 {
		t.Fatalf("report %+v, want 5 code lines, 3 run, 2 files", r)
	}
	if !reflect.DeepEqual(r.Untracked, []string{"net/netlink/diag.c"}) {
		t.Errorf("untracked %v", r.Untracked)
	}
	s := r.String()
	for _, want := range []string{
		"net/netlink/af_netlink.c                      5      3      2   66.7%",
		"total (lines the series adds)                        5      3   60.0%",
		"not measured: net/netlink/diag.c",
		"  net/netlink/af_netlink.c:43: ",
		"  net/netlink/mmap.c:3: return never();",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

// TestCollect compiles a small program with gcov, runs it, lays its data
// out like the guest's copy of /sys/kernel/debug/gcov and reads it back.
func TestCollect(t *testing.T) {
	if _, err := exec.LookPath("gcov"); err != nil {
		t.Skip("no gcov")
	}
	dir := t.TempDir()
	tree, obj := filepath.Join(dir, "src"), filepath.Join(dir, "obj")
	os.MkdirAll(filepath.Join(tree, "net"), 0o755)
	os.MkdirAll(filepath.Join(obj, "net"), 0o755)
	src := filepath.Join(tree, "net", "t.c")
	os.WriteFile(src, []byte("int f(int x)\n{\n\tif (x > 1)\n\t\treturn 2;\n\treturn 3;\n}\nint main(void)\n{\n\treturn f(0) - 3;\n}\n"), 0o644)
	for _, args := range [][]string{
		{"gcc", "-fprofile-arcs", "-ftest-coverage", "-c", "-o", filepath.Join(obj, "net", "t.o"), src},
		{"gcc", "-fprofile-arcs", "-o", filepath.Join(obj, "t"), filepath.Join(obj, "net", "t.o")},
		{filepath.Join(obj, "t")},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	// The guest's copy: gcov/<absolute object directory>/net/t.gcda.
	gcda := filepath.Join(dir, "run", "gcov")
	copyTo := filepath.Join(gcda, obj, "net")
	os.MkdirAll(copyTo, 0o755)
	data, err := os.ReadFile(filepath.Join(obj, "net", "t.gcda"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(copyTo, "t.gcda"), data, 0o644)
	// QEMU's 9p share keeps its own files beside the guest's.
	os.MkdirAll(filepath.Join(copyTo, ".virtfs_metadata"), 0o700)
	os.WriteFile(filepath.Join(copyTo, ".virtfs_metadata", "t.gcda"), []byte("virtfs.uid=0"), 0o600)
	c, err := Collect(gcda, obj, tree)
	if err != nil {
		t.Fatal(err)
	}
	if got := c["net/t.c"]; got[3] != 1 || got[4] != 0 || got[5] != 1 {
		t.Errorf("counts for net/t.c = %v, want line 3 and 5 run once, line 4 never", got)
	}
	if _, err := Collect(t.TempDir(), obj, tree); err == nil || !strings.Contains(err.Error(), "Next:") {
		t.Errorf("Collect without data = %v", err)
	}
}
