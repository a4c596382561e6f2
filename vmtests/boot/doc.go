// Package boot boots the harness's kernel and initramfs under QEMU, runs
// the guest runner's plan, and collects what it left behind: the console
// log and the guest tests' results.
//
//	accel, why, _ := boot.ChooseAccel(ctx, boot.ProbeOptions{Kernel: k, Initramfs: i})
//	res, err := boot.Boot(ctx, boot.Options{Kernel: k, Initramfs: i, RunDir: "out/run", Accel: accel, Plan: plan})
//	tree, _ := boot.ReadResults(res.ResultsPath)
//
// Every boot is bounded: a kernel that does not reach user space within
// the boot timeout is killed and reported as exactly that with the last 50
// console lines; a guest that does not finish within the VM timeout is
// killed and reported with the test that was running, and so is a test
// that outlives the step timeout (the guest stopped answering). ChooseAccel
// tries KVM with a short probe and falls back to TCG.
//
// It does not judge the kernel's console: package vmtests/console finds the
// kernel's reports there, and package vmtests/suite puts it all together.
package boot
