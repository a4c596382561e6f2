package vmtests

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nlmmap/nlmmap/vmtests/internal/fakevm"
)

// fakeConsole is what the fake guest prints: a BUG at boot, a WARN while
// TestA runs, and TestD begun but never ended.
const fakeConsole = `[    0.500000] BUG: sleeping function called from invalid context at kernel/x.c:1
[    1.000000] nlmmap: userspace up
[    1.010000] nlmmap: BEGIN example.com/nlmmap/guest/basic TestA
[    1.020000] ------------[ cut here ]------------
[    1.020001] WARNING: CPU: 0 PID: 61 at net/netlink/af_netlink.c:1775 netlink_setsockopt+0x94/0x25d
[    1.020002] ---[ end trace 0000000000000000 ]---
[    1.030000] nlmmap: END example.com/nlmmap/guest/basic TestA PASS
[    1.100000] nlmmap: BEGIN example.com/nlmmap/guest/basic TestD
[    1.200000] nlmmap: DONE
`

const fakeResults = `{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestA"}
{"Action":"pass","Package":"example.com/nlmmap/guest/basic","Test":"TestA"}
{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestB"}
{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestB/one"}
{"Action":"output","Package":"example.com/nlmmap/guest/basic","Test":"TestB/one","Output":"    b_test.go:9: boom\n"}
{"Action":"fail","Package":"example.com/nlmmap/guest/basic","Test":"TestB/one"}
{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestB/two"}
{"Action":"pass","Package":"example.com/nlmmap/guest/basic","Test":"TestB/two"}
{"Action":"fail","Package":"example.com/nlmmap/guest/basic","Test":"TestB"}
{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestC"}
{"Action":"output","Package":"example.com/nlmmap/guest/basic","Test":"TestC","Output":"    c_test.go:3: needs CONFIG_NETLINK_MMAP\n"}
{"Action":"skip","Package":"example.com/nlmmap/guest/basic","Test":"TestC"}
{"Action":"run","Package":"example.com/nlmmap/guest/basic","Test":"TestD"}
{"Action":"output","Package":"example.com/nlmmap/guest/basic","Test":"TestD","Output":"started\n"}
`

// TestGuestWithFakeQEMU runs TestGuest in a child process against a fake
// QEMU and checks that every guest result becomes the right host subtest.
func TestGuestWithFakeQEMU(t *testing.T) {
	if os.Getenv("NLMMAP_FAKE_CHILD") == "1" {
		t.Skip("inside the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestGuest$", "-test.v")
	cmd.Env = fakeChildEnv(t)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("TestGuest passed, want it to fail (TestA WARNed, TestB, TestD and TestE failed, BUG at boot)")
	}
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) >= 3 && f[0] == "---" {
			got[f[2]] = strings.TrimSuffix(f[1], ":")
		}
	}
	want := map[string]string{
		"TestGuest":                     "FAIL",
		"TestGuest/basic":               "FAIL",
		"TestGuest/basic/TestA":         "FAIL", // passed in Go, but the kernel WARNed
		"TestGuest/basic/TestB":         "FAIL",
		"TestGuest/basic/TestB/one":     "FAIL",
		"TestGuest/basic/TestB/two":     "PASS",
		"TestGuest/basic/TestC":         "SKIP",
		"TestGuest/basic/TestD":         "FAIL",
		"TestGuest/basic/TestE":         "FAIL",
		"TestGuest/console":             "FAIL",
		"TestGuest/console/boot":        "FAIL",
		"TestGuest/console/after-tests": "PASS",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("host results = %v\nwant %v\nchild output:\n%s", got, want, out)
	}
	for _, s := range []string{
		"b_test.go:9: boom",                                                 // a failing subtest shows its guest output
		"needs CONFIG_NETLINK_MMAP",                                         // a skip shows the guest's reason
		"started but never reported a result",                               // TestD began and never ended
		"guest test never reported a result",                                // TestE never began
		"the guest test passed, but the kernel reported this while it ran:", // TestA
		"kernel WARNING report (",
		"at net/netlink/af_netlink.c:1775",                            // its excerpt
		"kernel BUG report (",                                         // console/boot
		"Next: make repro writes a self-contained bundle of this run", // TestGuest
		"make vmtest RUN='^TestA$'",
	} {
		if !strings.Contains(string(out), s) {
			t.Errorf("child output lacks %q:\n%s", s, out)
		}
	}
}

// fakeChildEnv lays out a fake kernel, initramfs, QEMU and guest results
// (tests A to E of package basic) and returns the environment for a child
// that runs TestGuest on them.
func fakeChildEnv(t *testing.T) []string {
	t.Helper()
	f := fakevm.Layout(t, fakevm.Guest{
		ImportPath: "example.com/nlmmap/guest/basic",
		Tests:      []string{"TestA", "TestB", "TestC", "TestD", "TestE"},
		Results:    fakeResults,
		Console:    fakeConsole,
	})
	return append(os.Environ(),
		"NLMMAP_FAKE_CHILD=1",
		"NLMMAP_KERNEL="+f.Kernel, "NLMMAP_INITRAMFS="+f.Initramfs,
		"NLMMAP_QEMU="+f.QEMU, "NLMMAP_ACCEL=tcg", "NLMMAP_RUN=",
		"NLMMAP_CACHE="+filepath.Join(f.Dir, "cache"),
	)
}
