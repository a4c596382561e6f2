// Package suite runs the guest tests once and judges the run: it boots the
// kernel and initramfs (package vmtests/boot), reads the guest's results,
// scans the console for kernel reports (package vmtests/console), and
// writes everything to outcome.json in the run directory.
//
//	out, err := suite.Run(ctx, suite.Options{Kernel: "out/debug/bzImage", Initramfs: "out/initramfs.cpio", RunDir: "out/run"})
//	for _, v := range out.Verdicts() {
//		fmt.Println(v.Result(), v.Name, v.Test)
//	}
//
// A guest test fails when the guest says it failed, when it never finished
// (the VM died or was killed while it ran, or never got to it), or when the
// kernel reported something while it ran (see package vmtests/console for
// what "while it ran" means) even though the Go test passed. Kernel reports
// at boot or after the tests fail the run on their own.
//
// The host test TestGuest (package vmtests) turns an Outcome into one host
// subtest per guest test, for go test, gotestsum and JUnit; the commands
// nlmmap-vm, nlmmap-repro, nlmmap-bisect, nlmmap-compare and nlmmap-coverage
// use Run directly.
package suite
