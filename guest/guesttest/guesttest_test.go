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
