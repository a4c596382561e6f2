// Package coverage measures how much of the code a patch series adds the
// tests execute: it reads the lines the series adds from a unified diff
// (the series' cumulative diff, so line numbers are those of the patched
// tree), the kernel's gcov counts (.gcda files the guest copied, with the
// .gcno files of the build, through gcov's JSON output), and reports line
// coverage of the added lines that carry code, listing those never run.
//
//	added, _ := coverage.AddedLines(diff)           // git diff -U0 base..head
//	counts, _ := coverage.Collect(gcdaDir, objDir, treeDir)
//	r := coverage.Compute(added, counts, treeDir)
//	fmt.Print(r)                                      // per file, total, uncovered lines
//
// An added line gcov knows nothing about (a comment, a declaration, a
// brace, a line in a file that was not instrumented) does not count either
// way; Report.Untracked lists the added files gcov never saw.
package coverage
