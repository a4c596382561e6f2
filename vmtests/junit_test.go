package vmtests

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// junitReport is the part of a JUnit file the checks below read.
type junitReport struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []struct {
		Name  string `xml:"name,attr"`
		Tests int    `xml:"tests,attr"`
		Cases []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Failure   *struct {
				Text string `xml:",chardata"`
			} `xml:"failure"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestGuestJUnit runs TestGuest on the fake guest of TestGuestWithFakeQEMU
// under gotestsum, as make vmtest does, and checks the JUnit file: one
// case per guest test and subtest, the kernel's report as the failure of
// the case of the test it happened in, and a file that validates against
// testdata/junit.xsd (with xmllint, when it is installed).
func TestGuestJUnit(t *testing.T) {
	if os.Getenv("NLMMAP_FAKE_CHILD") == "1" {
		t.Skip("inside the child")
	}
	if testing.Short() {
		t.Skip("runs gotestsum; skipped with -short")
	}
	junit := filepath.Join(t.TempDir(), "junit.xml")
	cmd := exec.Command("go", "run", "gotest.tools/gotestsum", "--format", "testname", "--junitfile", junit,
		"--raw-command", "--", "go", "tool", "test2json", "-t", "-p", "github.com/nlmmap/nlmmap/vmtests",
		os.Args[0], "-test.v=test2json", "-test.run", "^TestGuest$")
	cmd.Env = fakeChildEnv(t)
	human, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("gotestsum passed, want it to fail:\n%s", human)
	}
	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatalf("no JUnit file: %v\ngotestsum said:\n%s", err, human)
	}
	var r junitReport
	if err := xml.Unmarshal(data, &r); err != nil {
		t.Fatalf("JUnit file does not parse: %v\n%s", err, data)
	}
	got := map[string]string{}
	failure := map[string]string{}
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			if _, dup := got[c.Name]; dup {
				t.Errorf("two cases named %s", c.Name)
			}
			switch {
			case c.Failure != nil:
				got[c.Name] = "FAIL"
				failure[c.Name] = c.Failure.Text
			case c.Skipped != nil:
				got[c.Name] = "SKIP"
			default:
				got[c.Name] = "PASS"
			}
			if c.Classname != "github.com/nlmmap/nlmmap/vmtests" {
				t.Errorf("case %s has classname %q", c.Name, c.Classname)
			}
		}
	}
	for name, want := range map[string]string{
		"TestGuest/basic/TestA":         "FAIL",
		"TestGuest/basic/TestB":         "FAIL",
		"TestGuest/basic/TestB/one":     "FAIL",
		"TestGuest/basic/TestB/two":     "PASS",
		"TestGuest/basic/TestC":         "SKIP",
		"TestGuest/basic/TestD":         "FAIL",
		"TestGuest/basic/TestE":         "FAIL",
		"TestGuest/console/boot":        "FAIL",
		"TestGuest/console/after-tests": "PASS",
	} {
		if got[name] != want {
			t.Errorf("JUnit case %s: %q, want %q", name, got[name], want)
		}
	}
	// The WARN is TestA's failure, and only TestA's.
	if !strings.Contains(failure["TestGuest/basic/TestA"], "at net/netlink/af_netlink.c:1775") {
		t.Errorf("TestA's failure lacks the kernel's WARNING:\n%s", failure["TestGuest/basic/TestA"])
	}
	for name, text := range failure {
		if name != "TestGuest/basic/TestA" && name != "TestGuest" && name != "TestGuest/basic" && strings.Contains(text, "af_netlink.c:1775") {
			t.Errorf("the WARNING of TestA also appears in the failure of %s", name)
		}
	}
	if !strings.Contains(failure["TestGuest/console/boot"], "BUG: sleeping function") {
		t.Errorf("console/boot's failure lacks the BUG at boot:\n%s", failure["TestGuest/console/boot"])
	}
	// Human output: a line per test and a summary.
	for _, s := range []string{"PASS vmtests.TestGuest/basic/TestB/two", "SKIP vmtests.TestGuest/basic/TestC", "FAIL vmtests.TestGuest/basic/TestA", "DONE "} {
		if !strings.Contains(string(human), s) {
			t.Errorf("gotestsum output lacks %q:\n%s", s, human)
		}
	}
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Log("xmllint not installed (apt-get install libxml2-utils): JUnit checked structurally only")
		return
	}
	if out, err := exec.Command(xmllint, "--noout", "--schema", "testdata/junit.xsd", junit).CombinedOutput(); err != nil {
		t.Errorf("xmllint --schema testdata/junit.xsd: %v\n%s", err, out)
	}
}
