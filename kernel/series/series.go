package series

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// CoverLetter is the file name git format-patch gives the cover letter.
const CoverLetter = "0000-cover-letter.patch"

// MaxSummary is the longest summary (the subject without its [PATCH ...]
// tag) that submitting-patches.rst accepts.
const MaxSummary = 75

// Options says what to check.
type Options struct {
	Dir     string // the directory git format-patch wrote to
	Patches int    // how many patches the series must have, 0 for any
	// Tag is the subject tag before the numbering, e.g. "PATCH net-next".
	Tag string
	// Tree is a kernel tree whose scripts/checkpatch.pl is run on every
	// file, from inside the tree; empty skips checkpatch.
	Tree string
}

// Problem is one thing wrong with the series.
type Problem struct {
	File string // patch file name, "" for the series as a whole
	Msg  string
}

func (p Problem) String() string {
	if p.File == "" {
		return p.Msg
	}
	return p.File + ": " + p.Msg
}

// Mail is a patch file as git format-patch writes it.
type Mail struct {
	File    string
	From    string
	Subject string // unfolded, with the [PATCH ...] tag
	Body    string // the commit message below the headers, up to "---"
	Diff    string // everything after the "---" line
}

var tagRE = regexp.MustCompile(`^\[([^\]]*?)\s*(?:(\d+)/(\d+))?\]\s*(.*)$`)

// Summary returns the subject without its tag.
func (m *Mail) Summary() string {
	if s := tagRE.FindStringSubmatch(m.Subject); s != nil {
		return s[4]
	}
	return m.Subject
}

// ParseMail splits a format-patch file into headers, commit message and
// diff.
func ParseMail(file string, data []byte) (*Mail, error) {
	m := &Mail{File: file}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var last *string
	inHeaders, sawHeader := true, false
	var body, diff strings.Builder
	inDiff := false
	for sc.Scan() {
		line := sc.Text()
		if inHeaders {
			switch {
			case line == "" && sawHeader:
				inHeaders = false
			case strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t"):
				if last != nil {
					*last += " " + strings.TrimSpace(line)
				}
			case strings.HasPrefix(line, "From "):
				sawHeader = true
				last = nil
			case strings.HasPrefix(line, "From: "):
				sawHeader = true
				m.From = strings.TrimPrefix(line, "From: ")
				last = &m.From
			case strings.HasPrefix(line, "Subject: "):
				sawHeader = true
				m.Subject = strings.TrimPrefix(line, "Subject: ")
				last = &m.Subject
			default:
				sawHeader = true
				last = nil
			}
			continue
		}
		if !inDiff && line == "---" {
			inDiff = true
			continue
		}
		if inDiff {
			diff.WriteString(line)
			diff.WriteByte('\n')
		} else {
			body.WriteString(line)
			body.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	if m.Subject == "" {
		return nil, fmt.Errorf("parse %s: no Subject header; is it git format-patch output?", file)
	}
	m.Body = body.String()
	m.Diff = diff.String()
	return m, nil
}

// Read parses every *.patch file in dir, in order.
func Read(dir string) (cover *Mail, patches []*Mail, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	if err != nil {
		return nil, nil, fmt.Errorf("read series: %w", err)
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("read series: %w", err)
		}
		m, err := ParseMail(filepath.Base(f), data)
		if err != nil {
			return nil, nil, err
		}
		if m.File == CoverLetter {
			cover = m
		} else {
			patches = append(patches, m)
		}
	}
	return cover, patches, nil
}

var (
	// "netlink: ", "netfilter: nfnetlink_queue: ", "net: "
	prefixRE  = regexp.MustCompile(`^[a-z0-9_.-]+(/[a-z0-9_.-]+)*: ([a-z0-9_.-]+: )*`)
	trailerRE = regexp.MustCompile(`^[A-Z][A-Za-z-]+: `)
	totalRE   = regexp.MustCompile(`total: (\d+) errors, (\d+) warnings, (\d+) checks`)
)

// Check checks the series in o.Dir and returns what is wrong with it; the
// error is for problems reading it or running checkpatch.
func Check(o Options) ([]Problem, error) {
	cover, patches, err := Read(o.Dir)
	if err != nil {
		return nil, err
	}
	var probs []Problem
	add := func(file, format string, args ...any) {
		probs = append(probs, Problem{File: file, Msg: fmt.Sprintf(format, args...)})
	}

	if len(patches) == 0 {
		add("", "no patches in %s", o.Dir)
		return probs, nil
	}
	if o.Patches > 0 && len(patches) != o.Patches {
		add("", "%d patches, the series has %d", len(patches), o.Patches)
	}
	checkCover(cover, add)
	for i, m := range patches {
		checkPatch(o, m, i+1, len(patches), add)
	}

	if o.Tree != "" {
		all := patches
		if cover != nil {
			all = append([]*Mail{cover}, patches...)
		}
		for _, m := range all {
			p, err := checkpatch(o.Tree, filepath.Join(o.Dir, m.File))
			if err != nil {
				return probs, err
			}
			probs = append(probs, p...)
		}
	}
	return probs, nil
}

func checkCover(cover *Mail, add func(file, format string, args ...any)) {
	if cover == nil {
		add("", "no %s: generate the series with git format-patch --cover-letter --base", CoverLetter)
		return
	}
	if strings.Contains(cover.Subject, "*** SUBJECT HERE ***") {
		add(cover.File, "the subject is still the template's")
	}
	if strings.Contains(cover.Body, "*** BLURB HERE ***") {
		add(cover.File, "the blurb is still the template's")
	}
	if !strings.Contains(cover.Body+cover.Diff, "\nbase-commit: ") {
		add(cover.File, "no base-commit line: generate it with git format-patch --base")
	}
}

func checkPatch(o Options, m *Mail, n, total int, add func(file, format string, args ...any)) {
	s := tagRE.FindStringSubmatch(m.Subject)
	if s == nil {
		add(m.File, "subject %q has no [PATCH ...] tag", m.Subject)
		return
	}
	if o.Tag != "" && s[1] != o.Tag {
		add(m.File, "subject tag %q, want %q", s[1], o.Tag)
	}
	if total > 1 {
		num, _ := strconv.Atoi(s[2])
		of, _ := strconv.Atoi(s[3])
		if num != n || of != total {
			add(m.File, "subject numbered %s/%s, want %d/%d", s[2], s[3], n, total)
		}
	}
	summary := s[4]
	if len(summary) > MaxSummary {
		add(m.File, "summary is %d characters, at most %d: %q", len(summary), MaxSummary, summary)
	}
	if p := prefixRE.FindString(summary); p == "" {
		add(m.File, "summary %q does not start with a subsystem prefix such as \"netlink: \"", summary)
	} else if w := firstWord(summary[len(p):]); strings.HasSuffix(w, "ed") || strings.HasSuffix(w, "ing") {
		add(m.File, "summary %q should be in the imperative (\"add\", not %q)", summary, w)
	}

	var text, sob int
	for _, line := range strings.Split(m.Body, "\n") {
		switch {
		case strings.HasPrefix(line, "Signed-off-by: "):
			sob++
		case trailerRE.MatchString(line), strings.TrimSpace(line) == "":
		default:
			text++
		}
	}
	if sob == 0 {
		add(m.File, "no Signed-off-by")
	}
	if text < 3 {
		add(m.File, "the commit message has %d lines of text; say why the change is needed", text)
	}
	if strings.TrimSpace(m.Diff) == "" {
		add(m.File, "no diff")
	}
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, " ("); i >= 0 {
		return s[:i]
	}
	return s
}

// checkpatch runs scripts/checkpatch.pl --strict on one file from inside
// tree and reports anything it does not consider clean.
func checkpatch(tree, file string) ([]Problem, error) {
	script := filepath.Join(tree, "scripts", "checkpatch.pl")
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("checkpatch: %w (point Tree at a kernel source tree)", err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("checkpatch: %w", err)
	}
	cmd := exec.Command("perl", script, "--strict", "--no-color", "--showfile", abs)
	cmd.Dir = tree
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return nil, fmt.Errorf("checkpatch %s: %w", filepath.Base(file), err)
	}
	tot := totalRE.FindSubmatch(out)
	if tot == nil {
		return nil, fmt.Errorf("checkpatch %s: no summary line in its output:\n%s", filepath.Base(file), out)
	}
	if string(tot[1]) == "0" && string(tot[2]) == "0" && string(tot[3]) == "0" {
		return nil, nil
	}
	return []Problem{{File: filepath.Base(file), Msg: fmt.Sprintf("checkpatch --strict: %s errors, %s warnings, %s checks:\n%s",
		tot[1], tot[2], tot[3], strings.TrimSpace(string(out)))}}, nil
}
