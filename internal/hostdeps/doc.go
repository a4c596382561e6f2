// Package hostdeps checks that the host has the programs and headers a
// harness step needs, and installs the missing Debian packages when it can.
//
// Each step names what it needs; Ensure either returns nil, installs the
// missing packages (as root, with apt-get), or returns an error that carries
// the exact command to run:
//
//	if err := hostdeps.Ensure(os.Stderr, hostdeps.KernelBuild...); err != nil {
//		return err // "missing gcc, flex: run: sudo apt-get install -y gcc flex"
//	}
//
// It knows Debian package names only; on other distributions the error still
// lists what is missing.
package hostdeps
