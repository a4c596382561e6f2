// Package guestrun is the test runner inside the guest, and the contract
// between it and the host: the plan the host writes, the markers the guest
// writes to the kernel log, and the results file.
//
// The host shares a directory with the guest over virtio-9p (tag "nlmmap")
// holding plan.json. The guest (command initramfs/uinit):
//
//  1. writes "nlmmap: userspace up" to /dev/kmsg, first thing;
//  2. mounts the share at /mnt/nlmmap and reads plan.json;
//  3. for every test binary under /nlmmap/tests and every top-level test in
//     it that matches the plan's run filter, writes
//     "nlmmap: BEGIN <pkg> <Test>", runs the test alone in its own process
//     through test2json with the plan's timeout, writes
//     "nlmmap: PID <pkg> <Test> <pid>" once it runs, appends the JSON events
//     to results.json on the share, and writes "nlmmap: END <pkg> <Test> <PASS|FAIL|SKIP>";
//  4. writes "nlmmap: CHECKS" and runs the end-of-run checks (see Checks):
//     when the kernel has kmemleak, two scans and a copy of its report
//     between "nlmmap: KMEMLEAK BEGIN" and "nlmmap: KMEMLEAK END <n>"; when
//     it has gcov, a copy of the .gcda files to gcov/ on the share;
//  5. writes "nlmmap: DONE" and powers off.
//
// One process per top-level test isolates crashes and lets the host tie
// what it sees on the console to the test that was running. A plan with
// mode "probe" stops after step 1 (the host's accelerator probe).
//
// It does not decide pass or fail for the run: the host does that from
// results.json and the console (package vmtests/console reads the markers
// and the kernel's reports).
package guestrun
