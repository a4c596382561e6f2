package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Option is one line of a config fragment: CONFIG_<Name>=<Value>, or
// "# CONFIG_<Name> is not set" (Value "n").
type Option struct {
	Name     string // without the CONFIG_ prefix
	Value    string // y, m, n, a quoted string or a number, as written
	Fragment string // file name of the fragment that asked for it
	Line     int
}

func (o Option) String() string {
	if o.Value == "n" {
		return fmt.Sprintf("# CONFIG_%s is not set", o.Name)
	}
	return fmt.Sprintf("CONFIG_%s=%s", o.Name, o.Value)
}

// Fragment is a parsed config fragment.
type Fragment struct {
	Name    string // base name, e.g. "base.config"
	Options []Option
	Raw     []byte
}

var (
	setRe    = regexp.MustCompile(`^CONFIG_([A-Za-z0-9_]+)=(.*)$`)
	notSetRe = regexp.MustCompile(`^# CONFIG_([A-Za-z0-9_]+) is not set$`)
)

// ParseFragment parses a fragment (or a whole .config). Blank lines and
// comments are skipped; anything else that is not an option is an error.
// An option given twice in one fragment is an error too: one of the two is
// silently lost otherwise.
func ParseFragment(name string, data []byte) (*Fragment, error) {
	f := &Fragment{Name: name, Raw: data}
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		var o Option
		if m := setRe.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: m[2]}
			if err := checkValue(o.Value); err != nil {
				return nil, fmt.Errorf("parse config fragment %s:%d: CONFIG_%s: %w", name, n, o.Name, err)
			}
		} else if m := notSetRe.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: "n"}
		} else if line == "" || strings.HasPrefix(line, "#") {
			continue
		} else {
			return nil, fmt.Errorf("parse config fragment %s:%d: %q is neither CONFIG_X=value nor \"# CONFIG_X is not set\"", name, n, line)
		}
		if prev, ok := seen[o.Name]; ok {
			return nil, fmt.Errorf("parse config fragment %s:%d: CONFIG_%s is already set on line %d", name, n, o.Name, prev)
		}
		seen[o.Name] = n
		o.Fragment, o.Line = name, n
		f.Options = append(f.Options, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse config fragment %s: %w", name, err)
	}
	return f, nil
}

func checkValue(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("empty value")
	case strings.HasPrefix(v, `"`):
		if len(v) < 2 || !strings.HasSuffix(v, `"`) {
			return fmt.Errorf("unterminated string %s", v)
		}
	case strings.ContainsAny(v, " \t"):
		return fmt.Errorf("value %q contains blanks; quote strings", v)
	}
	return nil
}

// ReadFragment reads and parses the fragment at path.
func ReadFragment(path string) (*Fragment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config fragment: %w", err)
	}
	return ParseFragment(filepath.Base(path), data)
}

// Config is a parsed .config: option name → value ("n" for "is not set").
type Config map[string]string

// ParseConfig parses a .config as written by kconfig.
func ParseConfig(data []byte) (Config, error) {
	f, err := parseLenient(data)
	if err != nil {
		return nil, err
	}
	c := Config{}
	for _, o := range f {
		c[o.Name] = o.Value
	}
	return c, nil
}

// parseLenient parses a kconfig-written file, where duplicates cannot occur
// and only the last assignment counts anyway.
func parseLenient(data []byte) ([]Option, error) {
	var out []Option
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := setRe.FindStringSubmatch(line); m != nil {
			out = append(out, Option{Name: m[1], Value: m[2]})
		} else if m := notSetRe.FindStringSubmatch(line); m != nil {
			out = append(out, Option{Name: m[1], Value: "n"})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse .config: %w", err)
	}
	return out, nil
}

// Merge returns base (a .config) with every option of the fragments
// applied in order: an option set by a fragment replaces any line for the
// same option in base or in an earlier fragment. The result is input for
// "make olddefconfig".
func Merge(base []byte, frags ...*Fragment) []byte {
	override := map[string]bool{}
	for _, f := range frags {
		for _, o := range f.Options {
			override[o.Name] = true
		}
	}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(base))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		if m := setRe.FindStringSubmatch(t); m != nil && override[m[1]] {
			continue
		}
		if m := notSetRe.FindStringSubmatch(t); m != nil && override[m[1]] {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	// Later fragments win over earlier ones: write only the last setting.
	last := map[string]Option{}
	var order []string
	for _, f := range frags {
		for _, o := range f.Options {
			if _, ok := last[o.Name]; !ok {
				order = append(order, o.Name)
			}
			last[o.Name] = o
		}
	}
	for _, name := range order {
		o := last[name]
		fmt.Fprintf(&b, "%s\n", o)
	}
	return b.Bytes()
}

// Mismatch is a fragment option that did not end up in the final .config.
type Mismatch struct {
	Want Option
	Got  string // value in .config; "" when the option is absent
}

func (m Mismatch) String() string {
	got := "absent from .config (the option does not exist in this tree, or a dependency is not met)"
	switch {
	case m.Got == "n":
		got = "is not set (a dependency is not met or another option selects against it)"
	case m.Got != "":
		got = "is CONFIG_" + m.Want.Name + "=" + m.Got
	}
	return fmt.Sprintf("%s (asked by %s:%d): %s", m.Want, m.Want.Fragment, m.Want.Line, got)
}

// Check compares every option of the fragments with cfg and returns the
// ones that did not stick. When fragments disagree the last one wins, as in
// Merge.
func Check(cfg Config, frags ...*Fragment) []Mismatch {
	last := map[string]Option{}
	for _, f := range frags {
		for _, o := range f.Options {
			last[o.Name] = o
		}
	}
	var out []Mismatch
	for _, want := range last {
		got, present := cfg[want.Name]
		if !sameValue(want.Value, got, present) {
			if !present {
				got = ""
			}
			out = append(out, Mismatch{Want: want, Got: got})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Want, out[j].Want
		if a.Fragment != b.Fragment {
			return a.Fragment < b.Fragment
		}
		return a.Line < b.Line
	})
	return out
}

func sameValue(want, got string, present bool) bool {
	if want == "n" {
		// Absent means not set: the symbol is invisible, so it is off.
		return !present || got == "n"
	}
	if !present {
		return false
	}
	if strings.HasPrefix(want, "0x") || strings.HasPrefix(want, "0X") {
		return strings.EqualFold(want, got)
	}
	return want == got
}

// ConfigError reports fragment options that did not stick.
type ConfigError struct {
	Mismatches []Mismatch
	ConfigPath string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config check: %d option(s) asked for by the fragments did not stick after olddefconfig:\n", len(e.Mismatches))
	for _, m := range e.Mismatches {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	fmt.Fprintf(&b, "Next: look up each option's \"depends on\" in the kernel's Kconfig files and add the missing dependencies to the fragment (the resulting config is %s)", e.ConfigPath)
	for _, m := range e.Mismatches {
		if m.Want.Name == "NETLINK_MMAP" {
			b.WriteString("; CONFIG_NETLINK_MMAP only exists once patch 01 of the series is in patches/: use FLAVOR=baseline for an unpatched kernel")
			break
		}
	}
	return b.String()
}
