// Package initramfs builds the guest's initramfs: u-root's init, the guest
// runner (command initramfs/uinit) as uinit, test2json, and one static test
// binary per package under guest/ that has tests, with a manifest listing
// them and their top-level tests.
//
//	res, err := initramfs.Build(ctx, initramfs.Options{Log: os.Stderr})
//	// res.CPIO is out/initramfs.cpio, res.Manifest out/initramfs.json
//
// The image is cached by a hash of the Go toolchain version, go.mod, go.sum
// and every file under guest/ and initramfs/; a second Build with nothing
// changed returns at once.
//
// It must run inside the module (the repository root): packages are
// resolved with the go command from the current directory.
package initramfs
