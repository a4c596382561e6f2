// Package basic has the first guest tests: the VM runs the kernel the host
// built, and netlink works there at all. They need no part of the series.
package basic
