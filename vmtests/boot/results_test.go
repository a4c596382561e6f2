package boot

import (
	"strings"
	"testing"
)

const sampleResults = `{"Action":"start","Package":"example.com/p"}
{"Action":"run","Package":"example.com/p","Test":"TestA"}
{"Action":"output","Package":"example.com/p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Package":"example.com/p","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"example.com/p","Test":"TestA","Elapsed":0.01}
{"Action":"run","Package":"example.com/p","Test":"TestB"}
{"Action":"run","Package":"example.com/p","Test":"TestB/one"}
{"Action":"output","Package":"example.com/p","Test":"TestB/one","Output":"    b_test.go:9: boom\n"}
{"Action":"fail","Package":"example.com/p","Test":"TestB/one"}
{"Action":"run","Package":"example.com/p","Test":"TestB/two"}
{"Action":"pass","Package":"example.com/p","Test":"TestB/two"}
{"Action":"fail","Package":"example.com/p","Test":"TestB"}
{"Action":"run","Package":"example.com/p","Test":"TestC"}
{"Action":"output","Package":"example.com/p","Test":"TestC","Output":"    c_test.go:3: needs CONFIG_NETLINK_MMAP\n"}
{"Action":"output","Package":"example.com/p","Test":"TestC","Output":"--- SKIP: TestC (0.00s)\n"}
{"Action":"skip","Package":"example.com/p","Test":"TestC"}
{"Action":"run","Package":"example.com/p","Test":"TestE"}
{"Action":"run","Package":"example.com/p","Test":"TestE/slash/one"}
{"Action":"pass","Package":"example.com/p","Test":"TestE/slash/one"}
{"Action":"run","Package":"example.com/p","Test":"TestE/slash/two"}
{"Action":"skip","Package":"example.com/p","Test":"TestE/slash/two"}
{"Action":"run","Package":"example.com/p","Test":"TestE/bad/one"}
{"Action":"fail","Package":"example.com/p","Test":"TestE/bad/one"}
{"Action":"fail","Package":"example.com/p","Test":"TestE"}
{"Action":"run","Package":"example.com/p","Test":"TestD"}
{"Action":"output","Package":"example.com/p","Test":"TestD","Output":"half a li`

func TestParseResults(t *testing.T) {
	r := ParseResults([]byte(sampleResults))
	if len(r.Packages) != 1 || r.Packages[0].ImportPath != "example.com/p" {
		t.Fatalf("packages = %+v", r.Packages)
	}
	var got []string
	var walk func(ts []*Test, depth int)
	walk = func(ts []*Test, depth int) {
		for _, x := range ts {
			got = append(got, strings.Repeat(" ", depth)+x.Short()+"="+x.State)
			walk(x.Children, depth+1)
		}
	}
	walk(r.Packages[0].Tests, 0)
	// TestE's subtests have slashes in their own names (t.Run("slash/one"))
	// and no events for TestE/slash: that node takes its children's state.
	want := "TestA=pass|TestB=fail| one=fail| two=pass|TestC=skip|TestE=fail| slash=pass|  one=pass|  two=skip| bad=fail|  one=fail|TestD="
	if strings.Join(got, "|") != want {
		t.Errorf("tree = %s, want %s", strings.Join(got, "|"), want)
	}
	if r.Garbled != 1 {
		t.Errorf("Garbled = %d, want 1 (the line cut off by a dying VM)", r.Garbled)
	}
	if c := r.Find("example.com/p", "TestC"); c == nil || c.SkipReason() != "c_test.go:3: needs CONFIG_NETLINK_MMAP" {
		t.Errorf("skip reason = %q", c.SkipReason())
	}
	if one := r.Find("example.com/p", "TestB/one"); one == nil || !strings.Contains(strings.Join(one.Output, ""), "boom") {
		t.Errorf("TestB/one output = %+v", one)
	}
	if r.Find("example.com/p", "TestZ") != nil || r.Find("other", "TestA") != nil {
		t.Error("Find found a test that is not there")
	}
}
