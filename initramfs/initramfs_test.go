package initramfs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKey(t *testing.T) {
	root := t.TempDir()
	write := func(rel, data string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module x\n")
	write("go.sum", "")
	write("guest/basic/basic_test.go", "package basic\n")
	write("initramfs/uinit/main.go", "package main\n")
	write("kernel/build.go", "package kernel\n")
	inputs := []string{"guest", "initramfs"}
	key := func() string {
		k, err := Key(root, "go1.26", "amd64", inputs)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := key()
	if key() != base {
		t.Fatal("Key is not stable")
	}
	write("kernel/build.go", "package kernel // changed\n")
	if key() != base {
		t.Error("a change outside guest/ and initramfs/ changed the key")
	}
	for _, change := range []struct{ file, data string }{
		{"guest/basic/basic_test.go", "package basic // changed\n"},
		{"guest/ring/ring_test.go", "package ring\n"},
		{"initramfs/uinit/main.go", "package main // changed\n"},
		{"go.sum", "x v1 h1:abc\n"},
	} {
		before := key()
		write(change.file, change.data)
		if key() == before {
			t.Errorf("changing %s did not change the key", change.file)
		}
	}
	k1, _ := Key(root, "go1.26", "amd64", inputs)
	k2, _ := Key(root, "go1.27", "amd64", inputs)
	k3, _ := Key(root, "go1.26", "arm64", inputs)
	if k1 == k2 || k1 == k3 {
		t.Error("Go version or GOARCH does not change the key")
	}
}
