// Command nlmmap-repro writes a reproduction bundle (package vmtests/repro)
// of the last failing run, or of the last run if none failed, to
// <out>/repro/<time>/, and says how to replay it.
//
//	nlmmap-repro -out out
//
// make repro runs it; make repro BUNDLE=<dir> replays a bundle (with
// nlmmap-vm -bundle).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nlmmap/nlmmap/vmtests/repro"
	"github.com/nlmmap/nlmmap/vmtests/suite"
)

func main() {
	out := flag.String("out", "out", "the harness's output directory (holds run/ and last-failed/)")
	from := flag.String("from", "", "bundle the run in this run directory instead (e.g. a prefix's from make check-bisect)")
	flag.Parse()

	var src *suite.Outcome
	junit, fromRun := "", ""
	lastFailed := filepath.Join(*out, "last-failed")
	lastRun := filepath.Join(*out, "run", suite.OutcomeFile)
	if *from != "" {
		o, err := suite.ReadOutcome(filepath.Join(*from, suite.OutcomeFile))
		if err != nil {
			fail(err)
		}
		src = o
		fmt.Fprintf(os.Stderr, "repro: bundling the run in %s: %s\n", *from, o.Summary())
	} else if _, err := os.Stat(lastFailed); err == nil {
		b, err := repro.Open(lastFailed)
		if err != nil {
			fail(fmt.Errorf("%v\nNext: remove %s, rerun make vmtest, then make repro", err, lastFailed))
		}
		src, fromRun = b.Outcome, b.Meta.FromRun
		fmt.Fprintf(os.Stderr, "repro: the last failing run (%s): %s\n", b.Outcome.Started.Format(time.DateTime), b.Meta.Summary)
		if last, err := suite.ReadOutcome(lastRun); err == nil && !last.Failed() && last.Started.After(b.Outcome.Started) {
			fmt.Fprintf(os.Stderr, "repro: the last run (%s) passed; remove %s to bundle that one instead\n", last.Started.Format(time.DateTime), lastFailed)
		}
	} else {
		o, err := suite.ReadOutcome(lastRun)
		if err != nil {
			fail(err)
		}
		src = o
		junit = filepath.Join(*out, "junit.xml")
		fmt.Fprintf(os.Stderr, "repro: no failing run kept; bundling the last run: %s\n", o.Summary())
	}
	dst := filepath.Join(*out, "repro", time.Now().Format("20060102-150405"))
	b, err := repro.Write(src, dst, repro.Options{JUnit: junit, FromRun: fromRun})
	if err != nil {
		fail(err)
	}
	abs, _ := filepath.Abs(b.Dir)
	fmt.Printf("repro: wrote %s (see its README.md)\nNext: replay it, here or on another machine with QEMU and this repository:\n  make repro BUNDLE=%s\nor without the repository: %s/run.sh\n", b.Dir, abs, abs)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "nlmmap-repro: %v\n", err)
	os.Exit(1)
}
