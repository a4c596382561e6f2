package kernel

import (
	"os"
	"path/filepath"
)

// CacheRoot returns the harness cache directory: $NLMMAP_CACHE, else
// $XDG_CACHE_HOME/nlmmap, else ~/.cache/nlmmap.
func CacheRoot(getenv func(string) string) string {
	if getenv == nil {
		getenv = os.Getenv
	}
	if d := getenv("NLMMAP_CACHE"); d != "" {
		return d
	}
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "nlmmap")
	}
	home := getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".cache", "nlmmap")
}
