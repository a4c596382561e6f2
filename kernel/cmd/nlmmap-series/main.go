// Command nlmmap-series checks the series in patches/ before it is sent:
//
//	nlmmap-series              # count, subjects, bodies, Signed-off-by, cover letter, checkpatch --strict
//	nlmmap-series -builds      # also apply it one patch at a time and build every prefix
//	                           # with CONFIG_NETLINK_MMAP=y and =n
//
// It exits non-zero and lists every problem if anything is wrong.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/kernel/series"
)

func main() {
	root := flag.String("root", ".", "repository root (holds patches/ and kernel/config/)")
	n := flag.Int("patches", 11, "number of patches the series must have (0: any)")
	tag := flag.String("tag", "PATCH net-next", "subject tag before the numbering")
	checkpatch := flag.Bool("checkpatch", true, "run scripts/checkpatch.pl --strict from the base tree")
	builds := flag.Bool("builds", false, "build every prefix with CONFIG_NETLINK_MMAP=y and =n")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	o := series.Options{Dir: filepath.Join(*root, "patches"), Patches: *n, Tag: *tag}
	if *checkpatch {
		tree, err := kernel.BaseTree(kernel.Options{RepoRoot: *root}, "checkpatch")
		if err != nil {
			fail(err)
		}
		o.Tree = tree
	}
	probs, err := series.Check(o)
	if err != nil {
		fail(err)
	}
	for _, p := range probs {
		fmt.Printf("FAIL %s\n", p)
	}
	if len(probs) > 0 {
		fmt.Printf("series: %d problem(s)\nNext: fix the commits and regenerate patches/ with git format-patch --cover-letter --base\n", len(probs))
		os.Exit(1)
	}
	fmt.Printf("series: %d patches and a cover letter: counts, subjects, bodies, Signed-off-by ok", *n)
	if *checkpatch {
		fmt.Print(", checkpatch --strict clean")
	}
	fmt.Println()

	if !*builds {
		return
	}
	sets := []kernel.PrefixSet{
		{Name: "mmap=y", Fragments: []string{"base.config", "mmap.config"}},
		{Name: "mmap=n", Fragments: []string{"base.config", "nommap.config"}},
	}
	done, err := kernel.BuildPrefixes(ctx, kernel.Options{RepoRoot: *root}, sets, nil)
	for _, p := range done {
		fmt.Printf("PASS prefix %02d %-62s %s (%s)\n", p.N, p.Patch, p.Set, p.Duration.Round(1e9))
	}
	if err != nil {
		fmt.Printf("FAIL %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("series: every prefix builds with %d configurations\n", len(sets))
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "nlmmap-series: %v\n", err)
	os.Exit(2)
}
