package fakevm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

// Release is the kernel release Layout writes next to the fake kernel.
const Release = "6.12.117-nlmmap"

// Guest is what the fake guest reports: the tests of one package, the
// go test -json events it writes to results.json and the console it prints.
type Guest struct {
	ImportPath string
	Tests      []string
	Results    string
	Console    string
}

// Files are the paths Layout wrote.
type Files struct {
	Dir       string // the directory everything is below
	Kernel    string // out/baseline/bzImage
	Initramfs string // out/initramfs.cpio, with out/initramfs.json beside it
	QEMU      string // the QEMU stand-in
}

// qemuScript is the QEMU stand-in; %[1]q is the results file and %[2]q
// the console file.
const qemuScript = `#!/bin/sh
for a in "$@"; do
	case "$a" in *,path=*) share=$(echo "$a" | sed 's/.*,path=\([^,]*\).*/\1/');; esac
done
cp %[1]q "$share/results.json"
cat %[2]q
if [ "$FAKE_HANG" = 1 ]; then exec sleep 600; fi
`

// Layout writes g's kernel, initramfs, manifest, results, console and QEMU
// stand-in below a new temporary directory of t.
func Layout(t testing.TB, g Guest) Files {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m, err := json.Marshal(guestrun.Manifest{Packages: []guestrun.ManifestPackage{{
		ImportPath: g.ImportPath, Name: filepath.Base(g.ImportPath), Tests: g.Tests,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	f := Files{
		Dir:       dir,
		Kernel:    write("out/baseline/bzImage", "kernel", 0o644),
		Initramfs: write("out/initramfs.cpio", "cpio", 0o644),
	}
	write("out/baseline/kernel.release", Release+"\n", 0o644)
	write("out/initramfs.json", string(m), 0o644)
	results := write("guest/results.json", g.Results, 0o644)
	console := write("guest/console.txt", g.Console, 0o644)
	f.QEMU = write("qemu", fmt.Sprintf(qemuScript, results, console), 0o755)
	return f
}
