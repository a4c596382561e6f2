// Package repro writes and reads reproduction bundles: a directory that
// holds everything a reviewer needs to boot a run of the guest tests again
// on another machine, without this repository's caches: the bzImage and its
// .config, kernel.release and build.json (base version and commit, the
// series' file hashes, fragments, compiler), the initramfs and its
// manifest, the plan (the test selection, timeouts and environment), the
// exact QEMU command line, the console log, the results and the judged
// outcome, a README and a run.sh that boots it with QEMU alone.
//
//	b, err := repro.Write(outcome, "out/repro/20261125-201500", repro.Options{})
//	b, err = repro.Open("out/repro/20261125-201500") // checks every file's sha256
//	opts := b.Replay("out/replay", "")               // suite.Options that boot exactly that again
//
// bundle.json lists every file with its sha256; Open refuses a bundle whose
// files do not match it.
//
// It does not judge a replay: package vmtests/suite does, and Compare says
// whether the replay failed the same way.
package repro
