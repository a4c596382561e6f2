package fakevm

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

func TestLayout(t *testing.T) {
	g := Guest{
		ImportPath: "example.com/nlmmap/guest/basic",
		Tests:      []string{"TestA", "TestB"},
		Results:    `{"Action":"pass","Test":"TestA"}` + "\n",
		Console:    "[    1.0] nlmmap: userspace up\n",
	}
	f := Layout(t, g)

	rel, err := os.ReadFile(filepath.Join(filepath.Dir(f.Kernel), "kernel.release"))
	if err != nil || string(rel) != Release+"\n" {
		t.Errorf("kernel.release = %q, %v; want %q", rel, err, Release+"\n")
	}
	var m guestrun.Manifest
	b, err := os.ReadFile(filepath.Join(filepath.Dir(f.Initramfs), "initramfs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Packages) != 1 || m.Packages[0].Name != "basic" || !reflect.DeepEqual(m.Packages[0].Tests, g.Tests) {
		t.Errorf("manifest = %+v", m)
	}

	// The stand-in copies the results into the share named on its
	// command line and prints the console.
	share := t.TempDir()
	out, err := exec.Command(f.QEMU, "-kernel", f.Kernel,
		"-fsdev", "local,id=share,path="+share+",security_model=none").Output()
	if err != nil {
		t.Fatalf("%s: %v", f.QEMU, err)
	}
	if string(out) != g.Console {
		t.Errorf("console = %q, want %q", out, g.Console)
	}
	got, err := os.ReadFile(filepath.Join(share, "results.json"))
	if err != nil || string(got) != g.Results {
		t.Errorf("share results.json = %q, %v; want %q", got, err, g.Results)
	}
}
