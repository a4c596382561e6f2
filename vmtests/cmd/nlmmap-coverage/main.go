// Command nlmmap-coverage measures the line coverage of the code the series
// adds (package kernel/coverage): it builds the coverage flavor (gcov in
// the files the series touches), runs the guest tests on it, collects the
// gcov data the guest copies out, and reports per file, in total, and every
// added line that never ran.
//
//	nlmmap-coverage -out out        # make coverage
//
// The report also goes to out/coverage/report.txt and coverage.json. It
// exits 1 if a guest test failed on the coverage kernel, 2 if it could not
// measure.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nlmmap/nlmmap/initramfs/guestrun"
	"github.com/nlmmap/nlmmap/kernel"
	"github.com/nlmmap/nlmmap/kernel/coverage"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

func main() {
	out := flag.String("out", "out", "the harness's output directory")
	run := flag.String("run", "", "go test -run filter for the guest tests")
	root := flag.String("root", ".", "repository root (holds patches/ and kernel/config/)")
	patches := flag.String("patches", "", "directory of the series (default <root>/patches)")
	aim := flag.Float64("aim", 85, "the coverage the series aims at, in percent (reported, not enforced)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()

	res, err := kernel.Build(ctx, kernel.Options{Flavor: "coverage", RepoRoot: *root, PatchesDir: *patches, Out: *out})
	if err != nil {
		fail(err)
	}
	dir := filepath.Join(*out, "coverage")
	o, err := suite.Run(ctx, suite.Options{
		Kernel: res.BzImage, Initramfs: filepath.Join(*out, "initramfs.cpio"),
		RunDir: filepath.Join(dir, "run"), Run: *run,
		CacheRoot: kernel.CacheRoot(nil), Log: os.Stderr,
	})
	if err != nil {
		fail(err)
	}
	tree := filepath.Join(res.Info.BuildDir, "src")
	obj := filepath.Join(res.Info.BuildDir, "obj")
	diff, err := exec.Command("git", "-C", tree, "diff", "-U0", "--no-color", res.Info.BaseCommit, res.Info.HeadCommit).Output()
	if err != nil {
		fail(fmt.Errorf("diff of the series in %s: %w\nNext: rebuild the coverage kernel (make coverage rebuilds it when its tree is gone)", tree, err))
	}
	added, err := coverage.AddedLines(diff)
	if err != nil {
		fail(err)
	}
	counts, err := coverage.Collect(filepath.Join(o.RunDir, guestrun.CoverageDir), obj, tree)
	if err != nil {
		fail(err)
	}
	r := coverage.Compute(added, counts, tree)
	text := r.String()
	fmt.Print(text)
	verdict := "meets"
	if r.Percent() < *aim {
		verdict = "is below"
	}
	summary := fmt.Sprintf("coverage: %.1f%% of the %d code lines the series adds ran (%d never did); this %s the %.0f%% aim. Guest tests: %s. %s in all.",
		r.Percent(), r.Code, r.Code-r.Covered, verdict, *aim, o.Summary(), time.Since(start).Round(time.Second))
	fmt.Println(summary)
	os.WriteFile(filepath.Join(dir, "report.txt"), []byte(text+summary+"\n"), 0o644)
	data, _ := json.MarshalIndent(r, "", "  ")
	os.WriteFile(filepath.Join(dir, "coverage.json"), append(data, '\n'), 0o644)
	if o.Failed() {
		fmt.Printf("Next: guest tests failed on the coverage kernel; see %s (make repro FROM=%s bundles the run)\n", o.ConsolePath(), o.RunDir)
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "nlmmap-coverage: %v\n", err)
	os.Exit(2)
}
