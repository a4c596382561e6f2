package kernel

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/nlmmap/nlmmap/internal/hostdeps"
)

// PinnedTarballSHA256 is the sha256 a KERNEL_TARBALL must have unless
// KERNEL_TARBALL_SHA256 says otherwise. It is Debian's
// linux-source-6.12_6.12.117-1~deb12u1 tarball
// (/usr/src/linux-source-6.12.tar.xz), so a runner that is not Debian can be
// given a copy of exactly the tree the Debian runners build.
const PinnedTarballSHA256 = "585a4a074597aefa2b1a68ada83a3184ba351c127544dea80618bbcceaa3961f"

// DebianPackage is the package that ships the default source tarball.
const DebianPackage = "linux-source-6.12"

// debianGlob matches the tarball DebianPackage installs.
const debianGlob = "/usr/src/linux-source-6.12.tar.*"

// SourceKind says what a kernel source is.
type SourceKind string

// Source kinds.
const (
	KindTarball SourceKind = "tarball"
	KindGit     SourceKind = "git"
	KindDir     SourceKind = "dir"
)

// Source is a resolved kernel source. It is never modified.
type Source struct {
	Kind   SourceKind `json:"kind"`
	Path   string     `json:"path"`
	Origin string     `json:"origin"` // how it was chosen, for people
	// ID identifies the content: same ID, same tree.
	ID string `json:"id"`
	// SHA256 is the tarball's sha256 (tarballs only).
	SHA256 string `json:"sha256,omitempty"`
	// Detail describes the identity (tarball sha256, git HEAD + local
	// changes); it goes into the base commit message.
	Detail string `json:"detail"`
}

// ShortID is the first 12 hex digits of ID.
func (s *Source) ShortID() string { return s.ID[:12] }

// SourceEnv is what source resolution depends on; tests replace it.
type SourceEnv struct {
	Getenv     func(string) string
	DebianGlob string // default /usr/src/linux-source-6.12.tar.*
	Host       hostdeps.Host
	CacheRoot  string
	Log        io.Writer
	HTTPClient *http.Client
}

func (e *SourceEnv) defaults() {
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.DebianGlob == "" {
		e.DebianGlob = debianGlob
	}
	if e.Host.LookPath == nil {
		e.Host = hostdeps.Local()
	}
	if e.Log == nil {
		e.Log = io.Discard
	}
	if e.HTTPClient == nil {
		e.HTTPClient = http.DefaultClient
	}
}

// ResolveSource picks the kernel source, in this order:
//
//  1. KERNEL_SRC=<dir>: any 6.12 tree, a git checkout included;
//  2. Debian's linux-source-6.12 tarball under /usr/src;
//  3. KERNEL_TARBALL=<path or URL>, checked against PinnedTarballSHA256 or
//     KERNEL_TARBALL_SHA256;
//  4. as root with apt-get: install linux-source-6.12 and use 2.
//
// Otherwise it fails with the commands that would fix it. The result
// carries the source identity (see Source.ID).
func ResolveSource(env SourceEnv) (*Source, error) {
	env.defaults()
	src, err := pickSource(&env)
	if err != nil {
		return nil, err
	}
	if err := identify(&env, src); err != nil {
		return nil, err
	}
	return src, nil
}

func pickSource(env *SourceEnv) (*Source, error) {
	if dir := env.Getenv("KERNEL_SRC"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("resolve KERNEL_SRC: %w", err)
		}
		if _, err := os.Stat(filepath.Join(abs, "Makefile")); err != nil {
			return nil, fmt.Errorf("resolve KERNEL_SRC=%s: no kernel Makefile there (%w)\nNext: point KERNEL_SRC at the top of a Linux 6.12 tree", dir, err)
		}
		if _, err := KernelVersion(abs); err != nil {
			return nil, err
		}
		kind := KindDir
		if _, err := os.Stat(filepath.Join(abs, ".git")); err == nil {
			kind = KindGit
		}
		return &Source{Kind: kind, Path: abs, Origin: "KERNEL_SRC"}, nil
	}
	if p := findDebianTarball(env.DebianGlob); p != "" {
		return &Source{Kind: KindTarball, Path: p, Origin: "Debian " + DebianPackage}, nil
	}
	if tb := env.Getenv("KERNEL_TARBALL"); tb != "" {
		return tarballFromEnv(env, tb)
	}
	if env.Host.IsRoot && env.Host.HasApt {
		if err := env.Host.InstallPackages(env.Log, DebianPackage); err != nil {
			return nil, fmt.Errorf("resolve kernel source: install %s: %w\nNext: fix apt, or set KERNEL_SRC=<6.12 tree> or KERNEL_TARBALL=<path or URL>", DebianPackage, err)
		}
		if p := findDebianTarball(env.DebianGlob); p != "" {
			return &Source{Kind: KindTarball, Path: p, Origin: "Debian " + DebianPackage + " (just installed)"}, nil
		}
		return nil, fmt.Errorf("resolve kernel source: installed %s but found no %s", DebianPackage, env.DebianGlob)
	}
	return nil, fmt.Errorf("resolve kernel source: no KERNEL_SRC, no %s and no KERNEL_TARBALL\nNext: run\n  %s\nor set KERNEL_SRC=<a 6.12 tree> or KERNEL_TARBALL=<path or URL of a 6.12 tarball>",
		env.DebianGlob, hostdeps.InstallCommand([]string{DebianPackage}))
}

func findDebianTarball(glob string) string {
	m, _ := filepath.Glob(glob)
	sort.Strings(m)
	for _, p := range m {
		if strings.HasSuffix(p, ".tar.xz") || strings.HasSuffix(p, ".tar.bz2") || strings.HasSuffix(p, ".tar.gz") {
			return p
		}
	}
	return ""
}

func tarballFromEnv(env *SourceEnv, tb string) (*Source, error) {
	want := PinnedTarballSHA256
	origin := "KERNEL_TARBALL (pinned sha256)"
	if s := env.Getenv("KERNEL_TARBALL_SHA256"); s != "" {
		want = strings.ToLower(s)
		origin = "KERNEL_TARBALL (KERNEL_TARBALL_SHA256)"
	}
	path := tb
	if u, err := url.Parse(tb); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		p, err := download(env, u)
		if err != nil {
			return nil, err
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve KERNEL_TARBALL: %w", err)
	}
	sum, err := fileSHA256(abs)
	if err != nil {
		return nil, fmt.Errorf("resolve KERNEL_TARBALL: %w", err)
	}
	if sum != want {
		return nil, fmt.Errorf("resolve KERNEL_TARBALL=%s: sha256 is %s, want %s\nNext: if you trust this tarball, set KERNEL_TARBALL_SHA256=%s", tb, sum, want, sum)
	}
	return &Source{Kind: KindTarball, Path: abs, Origin: origin, SHA256: sum}, nil
}

func download(env *SourceEnv, u *url.URL) (string, error) {
	dir := filepath.Join(env.CacheRoot, "downloads")
	dst := filepath.Join(dir, filepath.Base(u.Path))
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("download %s: %w", u, err)
	}
	fmt.Fprintf(env.Log, "kernel: downloading %s\n", u)
	resp, err := env.HTTPClient.Get(u.String())
	if err != nil {
		return "", fmt.Errorf("download %s: %w\nNext: check the URL, or download it yourself and set KERNEL_TARBALL=<path>", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s\nNext: check the URL, or download it yourself and set KERNEL_TARBALL=<path>", u, resp.Status)
	}
	tmp, err := os.CreateTemp(dir, ".download-*")
	if err != nil {
		return "", fmt.Errorf("download %s: %w", u, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		tmp.Close()
		return "", fmt.Errorf("download %s: %w", u, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("download %s: %w", u, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("download %s: %w", u, err)
	}
	return dst, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sum(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// identify fills in ID, Detail and (for tarballs) SHA256.
func identify(env *SourceEnv, s *Source) error {
	switch s.Kind {
	case KindTarball:
		if s.SHA256 == "" {
			sha, err := cachedSHA256(env.CacheRoot, s.Path)
			if err != nil {
				return fmt.Errorf("identify kernel source %s: %w", s.Path, err)
			}
			s.SHA256 = sha
		}
		s.Detail = "tarball " + filepath.Base(s.Path) + " sha256 " + s.SHA256
		s.ID = sum("tarball", s.SHA256)
	case KindGit:
		head, err := gitOut(s.Path, "rev-parse", "HEAD")
		if err != nil {
			return fmt.Errorf("identify kernel source %s: %w", s.Path, err)
		}
		diff, err := gitOut(s.Path, "diff", "--binary", "HEAD")
		if err != nil {
			return fmt.Errorf("identify kernel source %s: %w", s.Path, err)
		}
		untracked, err := gitOut(s.Path, "ls-files", "-z", "--others", "--exclude-standard")
		if err != nil {
			return fmt.Errorf("identify kernel source %s: %w", s.Path, err)
		}
		uh, err := statListHash(s.Path, splitNul(untracked))
		if err != nil {
			return fmt.Errorf("identify kernel source %s: %w", s.Path, err)
		}
		s.Detail = "git " + strings.TrimSpace(head)
		if diff != "" || len(splitNul(untracked)) > 0 {
			s.Detail += fmt.Sprintf(" with local changes %s", sum(diff, uh)[:12])
		}
		s.ID = sum("git", strings.TrimSpace(head), diff, uh)
	case KindDir:
		var paths []string
		err := filepath.WalkDir(s.Path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == ".git" {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				rel, _ := filepath.Rel(s.Path, p)
				paths = append(paths, rel)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("identify kernel source %s: %w", s.Path, err)
		}
		h, err := statListHash(s.Path, paths)
		if err != nil {
			return fmt.Errorf("identify kernel source %s: %w", s.Path, err)
		}
		s.Detail = "directory " + s.Path + " files " + h[:12]
		s.ID = sum("dir", s.Path, h)
	default:
		return fmt.Errorf("identify kernel source: unknown kind %q", s.Kind)
	}
	return nil
}

func splitNul(s string) []string {
	var out []string
	for _, p := range strings.Split(s, "\x00") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// statListHash hashes the sorted relative paths with size, mode and mtime.
func statListHash(root string, paths []string) (string, error) {
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%o\x00%d\n", p, fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type shaCacheEntry struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	MTime  int64  `json:"mtime_ns"`
	SHA256 string `json:"sha256"`
}

// cachedSHA256 hashes a tarball once per (path, size, mtime).
func cachedSHA256(cacheRoot, path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	file := filepath.Join(cacheRoot, "ids", sum(path)[:16]+".json")
	var e shaCacheEntry
	if data, err := os.ReadFile(file); err == nil && json.Unmarshal(data, &e) == nil &&
		e.Path == path && e.Size == fi.Size() && e.MTime == fi.ModTime().UnixNano() && e.SHA256 != "" {
		return e.SHA256, nil
	}
	sha, err := fileSHA256(path)
	if err != nil {
		return "", err
	}
	e = shaCacheEntry{Path: path, Size: fi.Size(), MTime: fi.ModTime().UnixNano(), SHA256: sha}
	data, _ := json.Marshal(e)
	if err := writeFileAtomic(file, data); err != nil {
		return "", err
	}
	return sha, nil
}

var versionRe = regexp.MustCompile(`(?m)^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)\s*$`)

// KernelVersion reads VERSION.PATCHLEVEL.SUBLEVEL from the tree's Makefile
// and fails unless it is 6.12.
func KernelVersion(tree string) (string, error) {
	data, err := os.ReadFile(filepath.Join(tree, "Makefile"))
	if err != nil {
		return "", fmt.Errorf("read kernel version: %w", err)
	}
	v := map[string]string{}
	for _, m := range versionRe.FindAllStringSubmatch(string(data), 4) {
		v[m[1]] = m[2]
	}
	ver := fmt.Sprintf("%s.%s.%s%s", v["VERSION"], v["PATCHLEVEL"], v["SUBLEVEL"], v["EXTRAVERSION"])
	if v["VERSION"] != "6" || v["PATCHLEVEL"] != "12" {
		return ver, fmt.Errorf("kernel source %s is Linux %s, not 6.12\nNext: point KERNEL_SRC at a 6.12 tree; the series is based on 6.12", tree, ver)
	}
	return ver, nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// gitOut runs git in dir and returns stdout; the error carries stderr.
func gitOut(dir string, args ...string) (string, error) {
	return gitEnvOut(dir, nil, args...)
}

func gitEnvOut(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	// GIT_OPTIONAL_LOCKS=0: identifying a KERNEL_SRC checkout must not
	// even refresh its index.
	cmd.Env = append(append(os.Environ(), "GIT_OPTIONAL_LOCKS=0"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.String(), fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

// firstLine returns the first line of s.
func firstLine(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	if sc.Scan() {
		return strings.TrimSpace(sc.Text())
	}
	return ""
}
