package hostdeps

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// Dep is one thing a step needs from the host: a program on PATH or a file
// (usually a header), and the Debian package that provides it.
type Dep struct {
	Program string // looked up on PATH, if set
	File    string // must exist, if set
	Package string // Debian package that provides it
}

func (d Dep) String() string {
	if d.Program != "" {
		return d.Program
	}
	return d.File
}

// KernelBuild is what configuring and building a kernel needs.
var KernelBuild = []Dep{
	{Program: "gcc", Package: "gcc"},
	{Program: "make", Package: "make"},
	{Program: "flex", Package: "flex"},
	{Program: "bison", Package: "bison"},
	{Program: "bc", Package: "bc"},
	{Program: "perl", Package: "perl"},
	{Program: "git", Package: "git"},
	{Program: "tar", Package: "tar"},
	{Program: "xz", Package: "xz-utils"},
	{Program: "cpio", Package: "cpio"},
	{File: "/usr/include/gelf.h", Package: "libelf-dev"},
	{File: "/usr/include/openssl/opensslv.h", Package: "libssl-dev"},
}

// Boot is what booting the guest needs.
var Boot = []Dep{
	{Program: "qemu-system-x86_64", Package: "qemu-system-x86"},
}

// Host abstracts the machine so the decisions are testable.
type Host struct {
	LookPath func(string) (string, error)
	Exists   func(string) bool
	IsRoot   bool
	HasApt   bool
	// Run runs a command with output to w.
	Run func(w io.Writer, name string, args ...string) error
}

// Local is the machine we run on.
func Local() Host {
	_, aptErr := exec.LookPath("apt-get")
	return Host{
		LookPath: exec.LookPath,
		Exists: func(p string) bool {
			_, err := os.Stat(p)
			return err == nil
		},
		IsRoot: os.Geteuid() == 0,
		HasApt: aptErr == nil,
		Run: func(w io.Writer, name string, args ...string) error {
			cmd := exec.Command(name, args...)
			cmd.Stdout, cmd.Stderr = w, w
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			return cmd.Run()
		},
	}
}

// Missing returns the deps that h lacks.
func (h Host) Missing(deps ...Dep) []Dep {
	var out []Dep
	for _, d := range deps {
		ok := true
		if d.Program != "" {
			if _, err := h.LookPath(d.Program); err != nil {
				ok = false
			}
		}
		if d.File != "" && !h.Exists(d.File) {
			ok = false
		}
		if !ok {
			out = append(out, d)
		}
	}
	return out
}

// Packages returns the sorted, de-duplicated Debian packages of deps.
func Packages(deps []Dep) []string {
	seen := map[string]bool{}
	var pkgs []string
	for _, d := range deps {
		if !seen[d.Package] {
			seen[d.Package] = true
			pkgs = append(pkgs, d.Package)
		}
	}
	sort.Strings(pkgs)
	return pkgs
}

// InstallCommand is the command a person runs to install pkgs.
func InstallCommand(pkgs []string) string {
	return "sudo apt-get update && sudo apt-get install -y " + strings.Join(pkgs, " ")
}

// MissingError says what is missing and how to install it.
type MissingError struct {
	Missing  []Dep
	Packages []string
	// Cause is set when an install was attempted and failed.
	Cause error
}

func (e *MissingError) Error() string {
	var names []string
	for _, d := range e.Missing {
		names = append(names, d.String())
	}
	msg := fmt.Sprintf("missing on this host: %s", strings.Join(names, ", "))
	if e.Cause != nil {
		msg += fmt.Sprintf(" (apt-get install failed: %v)", e.Cause)
	}
	return msg + "\nNext: install them with:\n  " + InstallCommand(e.Packages)
}

func (e *MissingError) Unwrap() error { return e.Cause }

// Ensure makes sure every dep is present. As root on a machine with apt-get
// it installs what is missing (progress to w); otherwise it returns a
// *MissingError with the exact command to run.
func (h Host) Ensure(w io.Writer, deps ...Dep) error {
	missing := h.Missing(deps...)
	if len(missing) == 0 {
		return nil
	}
	pkgs := Packages(missing)
	if !h.IsRoot || !h.HasApt {
		return &MissingError{Missing: missing, Packages: pkgs}
	}
	if err := h.InstallPackages(w, pkgs...); err != nil {
		return &MissingError{Missing: missing, Packages: pkgs, Cause: err}
	}
	if still := h.Missing(deps...); len(still) > 0 {
		return &MissingError{Missing: still, Packages: Packages(still),
			Cause: fmt.Errorf("still missing after installing %s", strings.Join(pkgs, " "))}
	}
	return nil
}

// InstallPackages runs apt-get update and apt-get install -y pkgs.
func (h Host) InstallPackages(w io.Writer, pkgs ...string) error {
	fmt.Fprintf(w, "installing Debian packages: %s\n", strings.Join(pkgs, " "))
	if err := h.Run(w, "apt-get", "update"); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if err := h.Run(w, "apt-get", args...); err != nil {
		return fmt.Errorf("apt-get install %s: %w", strings.Join(pkgs, " "), err)
	}
	return nil
}

// Ensure checks deps on the local machine.
func Ensure(w io.Writer, deps ...Dep) error { return Local().Ensure(w, deps...) }
