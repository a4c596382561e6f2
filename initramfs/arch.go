package initramfs

import "runtime"

func hostArch() string { return runtime.GOARCH }
