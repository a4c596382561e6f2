// Package console reads the guest's serial console log (out/run/console.log)
// and finds what the kernel reported there: BUG, WARNING, KASAN, UBSAN,
// KFENCE, lockdep and RCU-lockdep reports, refcount_t warnings, kmemleak's
// unreferenced objects, panics, Oopses, hung tasks, RCU stalls and bare call
// traces. Each report comes with an excerpt (from its first line to its end
// marker) and the guest test it belongs to, found from the guest runner's
// markers (see package initramfs/guestrun):
//
//   - before the first BEGIN marker: "boot";
//
//   - from a test's BEGIN marker to the next test's BEGIN: that test (a
//     report after its END marker is most likely deferred work of the test:
//     RCU callbacks, workqueues, socket destruction);
//
//   - in the kmemleak copy after the tests: the test whose processes
//     allocated the object, from the PID markers;
//
//   - anything else after the tests: "after tests".
//
//     log, err := console.ScanFile("out/run/console.log")
//     for _, s := range log.Splats {
//     fmt.Printf("%s in %s:\n%s\n", s.Title, s.Where, strings.Join(s.Excerpt, "\n"))
//     }
//
// It reads the log; it does not judge it. What a report means for a test
// (fail it) is the caller's business (package vmtests/suite).
package console
