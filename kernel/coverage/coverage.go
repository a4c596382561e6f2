package coverage

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Lines maps a file (relative to the tree) to line numbers.
type Lines map[string][]int

var hunkRe = regexp.MustCompile(`^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@`)

// AddedLines returns the lines a unified diff adds, by file, numbered as
// in the new file. Deleted files and binary diffs add nothing.
func AddedLines(diff []byte) (Lines, error) {
	out := Lines{}
	sc := bufio.NewScanner(bytes.NewReader(diff))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	file := ""
	next := 0
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "+++ "):
			file = ""
			if f, ok := strings.CutPrefix(line, "+++ b/"); ok {
				file = strings.TrimSpace(f)
			}
			continue
		case strings.HasPrefix(line, "--- "), strings.HasPrefix(line, "diff "):
			continue
		case strings.HasPrefix(line, "@@"):
			m := hunkRe.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("diff line %d: bad hunk header %q", n, line)
			}
			next, _ = strconv.Atoi(m[1])
			continue
		}
		if file == "" || next == 0 {
			continue
		}
		switch {
		case strings.HasPrefix(line, "+"):
			out[file] = append(out[file], next)
			next++
		case strings.HasPrefix(line, " "):
			next++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Counts maps a file (relative to the tree) and a line to how often gcov
// saw it run; a line absent from the map carries no code.
type Counts map[string]map[int]int64

// gcovJSON is the part of gcov's JSON intermediate format read here.
type gcovJSON struct {
	CWD   string `json:"current_working_directory"`
	Files []struct {
		File  string `json:"file"`
		Lines []struct {
			Line  int   `json:"line_number"`
			Count int64 `json:"count"`
		} `json:"lines"`
	} `json:"files"`
}

// ParseGcov adds the counts of one gcov JSON document to c; file names are
// made relative to tree, and files outside it are left out. Counts of the
// same line from several objects (a header's inline function) add up.
func (c Counts) ParseGcov(data []byte, tree string) error {
	var g gcovJSON
	if err := json.Unmarshal(data, &g); err != nil {
		return fmt.Errorf("parse gcov output: %w", err)
	}
	for _, f := range g.Files {
		p := f.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(g.CWD, p)
		}
		rel, err := filepath.Rel(tree, filepath.Clean(p))
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		m := c[rel]
		if m == nil {
			m = map[int]int64{}
			c[rel] = m
		}
		for _, l := range f.Lines {
			m[l.Line] += l.Count
		}
	}
	return nil
}

// Collect runs gcov on every .gcda file under gcdaDir (the guest's copy of
// /sys/kernel/debug/gcov, which mirrors the object directory's absolute
// path) with the matching .gcno file from objDir, and returns the counts
// for the files of tree.
func Collect(gcdaDir, objDir, tree string) (Counts, error) {
	tmp, err := os.MkdirTemp("", "nlmmap-gcov-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	c := Counts{}
	n := 0
	err = filepath.WalkDir(gcdaDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".virtfs_metadata" {
			return filepath.SkipDir // QEMU's 9p bookkeeping (security_model=mapped-file)
		}
		if d.IsDir() || !strings.HasSuffix(p, ".gcda") {
			return nil
		}
		rel, ok := objRel(gcdaDir, p, objDir)
		if !ok {
			return nil // not an object of this build
		}
		stem := strings.TrimSuffix(rel, ".gcda")
		dir := filepath.Join(tmp, filepath.Dir(rel))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range []struct{ from, to string }{{p, stem + ".gcda"}, {filepath.Join(objDir, stem+".gcno"), stem + ".gcno"}} {
			data, err := os.ReadFile(f.from)
			if err != nil {
				return fmt.Errorf("coverage data for %s: %w", rel, err)
			}
			if err := os.WriteFile(filepath.Join(tmp, f.to), data, 0o644); err != nil {
				return err
			}
		}
		cmd := exec.Command("gcov", "--json-format", "--stdout", "--object-directory", dir, filepath.Base(stem)+".c")
		cmd.Dir = tmp
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("gcov %s: %w: %s\nNext: gcov must come from the compiler that built the kernel (gcc --version)", rel, err, strings.TrimSpace(stderr.String()))
		}
		// One JSON document per line (one per object file).
		for _, doc := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			if err := c.ParseGcov(doc, tree); err != nil {
				return fmt.Errorf("gcov %s: %w", rel, err)
			}
		}
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("no .gcda file of %s under %s\nNext: check that the kernel was built with the coverage flavor and that the guest's end-of-run checks copied its gcov data (nlmmap: coverage: ... on the console)", objDir, gcdaDir)
	}
	return c, nil
}

// objRel finds the path of a .gcda file relative to the object directory:
// the debugfs copy holds it under the object directory's absolute path.
func objRel(gcdaDir, p, objDir string) (string, bool) {
	rel, err := filepath.Rel(gcdaDir, p)
	if err != nil {
		return "", false
	}
	abs := "/" + rel
	if r, err := filepath.Rel(objDir, abs); err == nil && !strings.HasPrefix(r, "..") {
		return r, true
	}
	return "", false
}

// File is the coverage of one file's added lines.
type File struct {
	Name      string   `json:"name"`
	Added     int      `json:"added"`     // lines the series adds
	Code      int      `json:"code"`      // of those, lines gcov counts
	Covered   int      `json:"covered"`   // of those, lines that ran
	Uncovered []int    `json:"uncovered"` // added code lines that never ran
	Source    []string `json:"-"`         // the uncovered lines' text
}

// Report is the coverage of a series' added lines.
type Report struct {
	Files []File `json:"files"`
	// Untracked are added files with code gcov never saw (not built,
	// or not instrumented).
	Untracked []string `json:"untracked"`
	Code      int      `json:"code"`
	Covered   int      `json:"covered"`
}

// Percent is the covered share of the added code lines.
func (r *Report) Percent() float64 {
	if r.Code == 0 {
		return 0
	}
	return 100 * float64(r.Covered) / float64(r.Code)
}

// Compute intersects the added lines with the counts. tree is read for
// the text of uncovered lines. Only C sources and headers count.
func Compute(added Lines, c Counts, tree string) *Report {
	r := &Report{}
	var names []string
	for f := range added {
		if strings.HasSuffix(f, ".c") || strings.HasSuffix(f, ".h") {
			names = append(names, f)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		lines := added[name]
		counts, seen := c[name]
		if !seen {
			if strings.HasSuffix(name, ".c") {
				r.Untracked = append(r.Untracked, name)
			}
			continue
		}
		f := File{Name: name, Added: len(lines)}
		var text []string
		if data, err := os.ReadFile(filepath.Join(tree, name)); err == nil {
			text = strings.Split(string(data), "\n")
		}
		for _, l := range lines {
			n, code := counts[l]
			if !code {
				continue
			}
			f.Code++
			if n > 0 {
				f.Covered++
				continue
			}
			f.Uncovered = append(f.Uncovered, l)
			src := ""
			if l-1 < len(text) {
				src = text[l-1]
			}
			f.Source = append(f.Source, src)
		}
		if f.Code > 0 {
			r.Files = append(r.Files, f)
			r.Code += f.Code
			r.Covered += f.Covered
		}
	}
	return r
}

// String is the report for people: a line per file, the total, then every
// uncovered added line with its text.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-40s %6s %6s %6s %7s\n", "file", "added", "code", "run", "cover")
	for _, f := range r.Files {
		fmt.Fprintf(&b, "%-40s %6d %6d %6d %6.1f%%\n", f.Name, f.Added, f.Code, f.Covered, 100*float64(f.Covered)/float64(f.Code))
	}
	fmt.Fprintf(&b, "%-40s %6s %6d %6d %6.1f%%\n", "total (lines the series adds)", "", r.Code, r.Covered, r.Percent())
	for _, u := range r.Untracked {
		fmt.Fprintf(&b, "not measured: %s (gcov has no data for it)\n", u)
	}
	if r.Code > r.Covered {
		fmt.Fprintf(&b, "\nadded lines that never ran (%d):\n", r.Code-r.Covered)
		for _, f := range r.Files {
			for i, l := range f.Uncovered {
				fmt.Fprintf(&b, "  %s:%d: %s\n", f.Name, l, strings.TrimSpace(f.Source[i]))
			}
		}
	}
	return b.String()
}
