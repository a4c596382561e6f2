//go:build tools

// Package tools pins the u-root and vmtest commands that vmtest builds into
// the guest initramfs, so that their versions are recorded in go.sum.
package tools

import (
	_ "github.com/hugelgupf/vmtest/vminit/gouinit"
	_ "github.com/hugelgupf/vmtest/vminit/shutdownafter"
	_ "github.com/hugelgupf/vmtest/vminit/vmmount"
	_ "github.com/u-root/u-root/cmds/core/init"
	_ "gotest.tools/gotestsum"
)
