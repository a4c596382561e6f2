package suite

import (
	"reflect"
	"testing"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
)

func TestSelect(t *testing.T) {
	m := &guestrun.Manifest{Packages: []guestrun.ManifestPackage{
		{ImportPath: "x/basic", Name: "basic", Tests: []string{"TestA", "TestB"}},
		{ImportPath: "x/ring", Name: "ring", Tests: []string{"TestRing"}},
	}}
	tests := []struct {
		run  string
		want map[string][]string
	}{
		{"", map[string][]string{"basic": {"TestA", "TestB"}, "ring": {"TestRing"}}},
		{"TestB", map[string][]string{"basic": {"TestB"}}},
		{"TestRing/sub", map[string][]string{"ring": {"TestRing"}}},
		{"Nothing", map[string][]string{}},
	}
	for _, tt := range tests {
		got, err := Select(m, tt.run)
		if err != nil {
			t.Fatal(err)
		}
		gm := map[string][]string{}
		for _, p := range got {
			gm[p.Name] = p.Tests
		}
		if !reflect.DeepEqual(gm, tt.want) {
			t.Errorf("Select(%q) = %v, want %v", tt.run, gm, tt.want)
		}
	}
	if _, err := Select(m, "Test("); err == nil {
		t.Error("bad filter accepted")
	}
}
