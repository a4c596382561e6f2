package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nlmmap/nlmmap/internal/hostdeps"
)

// fakeTree writes a minimal kernel tree (just a Makefile) of version v.
func fakeTree(t *testing.T, dir, patchlevel string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := "VERSION = 6\nPATCHLEVEL = " + patchlevel + "\nSUBLEVEL = 3\nEXTRAVERSION =\n"
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte(mk), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// noApt is a host that is neither root nor has apt: nothing gets installed.
var noApt = hostdeps.Host{LookPath: exec.LookPath, Exists: func(string) bool { return true }}

func TestResolveSourceOrder(t *testing.T) {
	tmp := t.TempDir()
	tree := fakeTree(t, filepath.Join(tmp, "tree"), "12")
	debDir := filepath.Join(tmp, "usr-src")
	os.MkdirAll(debDir, 0o755)
	deb := filepath.Join(debDir, "linux-source-6.12.tar.xz")
	os.WriteFile(deb, []byte("debian tarball"), 0o644)
	other := filepath.Join(tmp, "other.tar.xz")
	os.WriteFile(other, []byte("other tarball"), 0o644)
	otherSum := sha256.Sum256([]byte("other tarball"))

	tests := []struct {
		name       string
		env        map[string]string
		debianGlob string
		wantKind   SourceKind
		wantPath   string
		wantOrigin string
		wantErr    string
	}{
		{
			name:       "KERNEL_SRC wins over everything",
			env:        map[string]string{"KERNEL_SRC": tree, "KERNEL_TARBALL": other},
			debianGlob: filepath.Join(debDir, "linux-source-6.12.tar.*"),
			wantKind:   KindDir, wantPath: tree, wantOrigin: "KERNEL_SRC",
		},
		{
			name:       "Debian tarball next",
			env:        map[string]string{"KERNEL_TARBALL": other},
			debianGlob: filepath.Join(debDir, "linux-source-6.12.tar.*"),
			wantKind:   KindTarball, wantPath: deb, wantOrigin: "Debian linux-source-6.12",
		},
		{
			name:       "KERNEL_TARBALL with its own sha256",
			env:        map[string]string{"KERNEL_TARBALL": other, "KERNEL_TARBALL_SHA256": hex.EncodeToString(otherSum[:])},
			debianGlob: filepath.Join(tmp, "none", "*"),
			wantKind:   KindTarball, wantPath: other, wantOrigin: "KERNEL_TARBALL",
		},
		{
			name:       "KERNEL_TARBALL against the pin",
			env:        map[string]string{"KERNEL_TARBALL": other},
			debianGlob: filepath.Join(tmp, "none", "*"),
			wantErr:    "Next: if you trust this tarball, set KERNEL_TARBALL_SHA256=" + hex.EncodeToString(otherSum[:]),
		},
		{
			name:       "nothing: print the apt command",
			env:        map[string]string{},
			debianGlob: filepath.Join(tmp, "none", "*"),
			wantErr:    "sudo apt-get update && sudo apt-get install -y linux-source-6.12",
		},
		{
			name:    "KERNEL_SRC without a Makefile",
			env:     map[string]string{"KERNEL_SRC": tmp},
			wantErr: "no kernel Makefile there",
		},
		{
			name:    "KERNEL_SRC of another version",
			env:     map[string]string{"KERNEL_SRC": fakeTree(t, filepath.Join(tmp, "old"), "6")},
			wantErr: "is Linux 6.6.3, not 6.12",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := ResolveSource(SourceEnv{Getenv: envFrom(tt.env), DebianGlob: tt.debianGlob, Host: noApt, CacheRoot: t.TempDir()})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolveSource error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if src.Kind != tt.wantKind || src.Path != tt.wantPath || !strings.HasPrefix(src.Origin, tt.wantOrigin) {
				t.Errorf("ResolveSource = %+v, want kind %s path %s origin %s", src, tt.wantKind, tt.wantPath, tt.wantOrigin)
			}
			if len(src.ID) != 64 {
				t.Errorf("ID = %q, want a sha256", src.ID)
			}
		})
	}
}

func TestTarballURLDownload(t *testing.T) {
	body := []byte("a kernel tarball")
	s := sha256.Sum256(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	defer srv.Close()
	cache := t.TempDir()
	env := map[string]string{"KERNEL_TARBALL": srv.URL + "/linux-6.12.tar.xz", "KERNEL_TARBALL_SHA256": hex.EncodeToString(s[:])}
	src, err := ResolveSource(SourceEnv{Getenv: envFrom(env), DebianGlob: filepath.Join(cache, "none"), Host: noApt, CacheRoot: cache, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "downloads", "linux-6.12.tar.xz"); src.Path != want {
		t.Errorf("Path = %s, want %s", src.Path, want)
	}
}

func TestIdentityDir(t *testing.T) {
	tree := fakeTree(t, t.TempDir(), "12")
	resolve := func() string {
		src, err := ResolveSource(SourceEnv{Getenv: envFrom(map[string]string{"KERNEL_SRC": tree}), Host: noApt, CacheRoot: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return src.ID
	}
	a, b := resolve(), resolve()
	if a != b {
		t.Errorf("same tree, different IDs %s %s", a, b)
	}
	os.WriteFile(filepath.Join(tree, "new.c"), []byte("x"), 0o644)
	if c := resolve(); c == a {
		t.Errorf("adding a file did not change the ID")
	}
}

func TestIdentityGit(t *testing.T) {
	tree := fakeTree(t, t.TempDir(), "12")
	git(t, tree, "init", "-q")
	git(t, tree, "add", "-A")
	git(t, tree, "commit", "-q", "-m", "base")
	resolve := func() *Source {
		src, err := ResolveSource(SourceEnv{Getenv: envFrom(map[string]string{"KERNEL_SRC": tree}), Host: noApt, CacheRoot: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if src.Kind != KindGit {
			t.Fatalf("Kind = %s, want git", src.Kind)
		}
		return src
	}
	clean := resolve()
	if strings.Contains(clean.Detail, "local changes") {
		t.Errorf("clean tree Detail = %q", clean.Detail)
	}
	os.WriteFile(filepath.Join(tree, "Makefile"), []byte("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 4\n"), 0o644)
	dirty := resolve()
	if dirty.ID == clean.ID || !strings.Contains(dirty.Detail, "local changes") {
		t.Errorf("modified tree: ID %s (clean %s), Detail %q", dirty.ID, clean.ID, dirty.Detail)
	}
	git(t, tree, "checkout", "-q", "Makefile")
	os.WriteFile(filepath.Join(tree, "untracked.c"), []byte("x"), 0o644)
	if u := resolve(); u.ID == clean.ID {
		t.Errorf("untracked file did not change the ID")
	}
}

func TestCachedSHA256(t *testing.T) {
	cache := t.TempDir()
	f := filepath.Join(t.TempDir(), "x.tar.xz")
	os.WriteFile(f, []byte("one"), 0o644)
	a, err := cachedSHA256(cache, f)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f, []byte("two!"), 0o644) // size changes: must rehash
	b, _ := cachedSHA256(cache, f)
	if a == b {
		t.Errorf("changed file, same sha256 %s", a)
	}
}

func TestCacheRoot(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"NLMMAP_CACHE": "/c", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c"},
		{map[string]string{"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/nlmmap"},
		{map[string]string{"HOME": "/h"}, "/h/.cache/nlmmap"},
	}
	for _, tt := range tests {
		if got := CacheRoot(envFrom(tt.env)); got != tt.want {
			t.Errorf("CacheRoot(%v) = %s, want %s", tt.env, got, tt.want)
		}
	}
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitEnvOut(dir, commitEnv, append(append([]string{}, gitConfig...), args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
