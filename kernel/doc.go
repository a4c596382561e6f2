// Package kernel turns a Linux 6.12 source and the series in patches/ into
// a checked, cached bzImage.
//
// The path is: resolve the source (KERNEL_SRC, the Debian linux-source-6.12
// tarball, or KERNEL_TARBALL), import it once into a pristine git repository
// with one deterministic commit (the series' base commit), check out a
// per-flavor tree from it, apply every patches/*.patch with git am, configure
// with tinyconfig plus the flavor's fragments from kernel/config/, check that
// every option the fragments ask for stuck, build bzImage out of tree, and
// publish bzImage, .config, kernel.release and build.json under
// out/<flavor>/.
//
//	res, err := kernel.Build(ctx, kernel.Options{Flavor: "baseline", Out: "out", Log: os.Stderr})
//	// res.BzImage is out/baseline/bzImage
//
// A build is keyed by the source identity, the patches, the fragments, the
// compiler and the flavor; a second Build with nothing changed only checks
// the key and republishes, without running make.
//
// It does not boot anything: see package vmtests/boot.
package kernel
