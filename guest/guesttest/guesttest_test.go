package guesttest

import "testing"

func TestSkipIfNotInVM(t *testing.T) {
	t.Setenv("NLMMAP_IN_GUEST", "")
	ran := false
	t.Run("skips", func(t *testing.T) {
		SkipIfNotInVM(t)
		ran = true
	})
	if ran {
		t.Error("SkipIfNotInVM did not skip outside the VM")
	}
	t.Setenv("NLMMAP_IN_GUEST", "1")
	t.Run("runs", func(t *testing.T) {
		SkipIfNotInVM(t)
		ran = true
	})
	if !ran {
		t.Error("SkipIfNotInVM skipped inside the VM")
	}
}

func TestNeedsPatch(t *testing.T) {
	tests := []struct {
		env  string
		need int
		runs bool
	}{
		{"", 9, true},   // the whole series or the baseline: no opinion
		{"x", 9, true},  // garbage: as unset
		{"8", 9, false}, // a prefix without patch 09
		{"9", 9, true},
		{"11", 9, true},
		{"0", 1, false},
	}
	for _, tt := range tests {
		t.Setenv(SeriesPatchesEnv, tt.env)
		ran := false
		t.Run("", func(t *testing.T) {
			NeedsPatch(t, tt.need)
			ran = true
		})
		if ran != tt.runs {
			t.Errorf("%s=%q, NeedsPatch(%d): ran %v, want %v", SeriesPatchesEnv, tt.env, tt.need, ran, tt.runs)
		}
	}
}
