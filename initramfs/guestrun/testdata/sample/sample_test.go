// Package sample is a fake guest test package for the runner's tests.
package sample

import (
	"os"
	"testing"
	"time"
)

func TestPass(t *testing.T) {}

func TestFail(t *testing.T) { t.Error("failing on purpose") }

func TestSkip(t *testing.T) { t.Skip("not today") }

func TestEnv(t *testing.T) {
	for k, want := range map[string]string{"NLMMAP_IN_GUEST": "1", "NLMMAP_KERNEL_RELEASE": "6.12.0-nlmmap", "SAMPLE_EXTRA": "x"} {
		if got := os.Getenv(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestSub(t *testing.T) {
	t.Run("a", func(t *testing.T) {})
	t.Run("b", func(t *testing.T) { t.Error("sub b fails") })
}

func TestHang(t *testing.T) {
	if os.Getenv("SAMPLE_HANG") == "1" {
		time.Sleep(time.Hour)
	}
}

func TestCrash(t *testing.T) {
	if os.Getenv("SAMPLE_CRASH") == "1" {
		os.Exit(3)
	}
}

func BenchmarkNothing(b *testing.B) {}
