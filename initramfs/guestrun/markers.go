package guestrun

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The markers the guest writes to the kernel log. The host finds them on
// the serial console after the kernel's timestamp.
const (
	MarkerPrefix = "nlmmap: "
	MarkerUp     = "nlmmap: userspace up"
	MarkerDone   = "nlmmap: DONE"
	// MarkerChecks starts the end-of-run checks (kmemleak scan, coverage
	// collection): what the kernel reports after it belongs to no test.
	MarkerChecks = "nlmmap: CHECKS"
	// MarkerLeaksBegin and the END marker frame the runner's copy of
	// /sys/kernel/debug/kmemleak on the kernel log.
	MarkerLeaksBegin = "nlmmap: KMEMLEAK BEGIN"
)

// Marker kinds.
const (
	KindUp    = "UP"
	KindBegin = "BEGIN"
	KindEnd   = "END"
	KindDone  = "DONE"
	KindFatal = "FATAL"
	// KindPID gives the process ID of a test's test2json process: every
	// process and thread the test creates has a higher one (until PIDs wrap).
	KindPID        = "PID"
	KindChecks     = "CHECKS"
	KindLeaksBegin = "KMEMLEAK BEGIN"
	KindLeaksEnd   = "KMEMLEAK END"
)

// Marker is a parsed marker line.
type Marker struct {
	Kind    string
	Package string // BEGIN, END
	Test    string // BEGIN, END
	Result  string // END: PASS, FAIL or SKIP
	Message string // FATAL
	PID     int    // PID
	Count   int    // KMEMLEAK END: number of leak reports
}

// Begin is the marker written before a test runs.
func Begin(pkg, test string) string { return fmt.Sprintf("nlmmap: BEGIN %s %s", pkg, test) }

// End is the marker written after a test ran.
func End(pkg, test, result string) string {
	return fmt.Sprintf("nlmmap: END %s %s %s", pkg, test, result)
}

// PID is the marker written once a test's process runs.
func PID(pkg, test string, pid int) string {
	return fmt.Sprintf("nlmmap: PID %s %s %d", pkg, test, pid)
}

// LeaksEnd is the marker after the copy of the kmemleak report.
func LeaksEnd(n int) string { return fmt.Sprintf("nlmmap: KMEMLEAK END %d", n) }

// Fatal is the marker written when the runner itself fails.
func Fatal(msg string) string {
	return "nlmmap: FATAL " + strings.ReplaceAll(msg, "\n", " | ")
}

// A console line: the marker at the start of the line, or after a printk
// timestamp anywhere in it: output that some process wrote to the console
// without a newline can precede the kernel's record on the same line.
var markerRe = regexp.MustCompile(`(?:^|\[\s*\d+\.\d+\]\s*)nlmmap: (userspace up|BEGIN|END|DONE|FATAL|PID|CHECKS|KMEMLEAK BEGIN|KMEMLEAK END)(?: (.*))?$`)

// ParseMarker parses one console line; ok is false for any other line.
func ParseMarker(line string) (m Marker, ok bool) {
	sub := markerRe.FindStringSubmatch(strings.TrimRight(line, "\r\n"))
	if sub == nil {
		return Marker{}, false
	}
	f := strings.Fields(sub[2])
	switch sub[1] {
	case "userspace up":
		return Marker{Kind: KindUp}, true
	case "DONE":
		return Marker{Kind: KindDone}, true
	case "FATAL":
		return Marker{Kind: KindFatal, Message: sub[2]}, true
	case "CHECKS":
		return Marker{Kind: KindChecks}, true
	case "KMEMLEAK BEGIN":
		return Marker{Kind: KindLeaksBegin}, true
	case "KMEMLEAK END":
		n, err := strconv.Atoi(strings.TrimSpace(sub[2]))
		if err != nil {
			return Marker{}, false
		}
		return Marker{Kind: KindLeaksEnd, Count: n}, true
	case "PID":
		if len(f) != 3 {
			return Marker{}, false
		}
		pid, err := strconv.Atoi(f[2])
		if err != nil {
			return Marker{}, false
		}
		return Marker{Kind: KindPID, Package: f[0], Test: f[1], PID: pid}, true
	case "BEGIN":
		if len(f) != 2 {
			return Marker{}, false
		}
		return Marker{Kind: KindBegin, Package: f[0], Test: f[1]}, true
	case "END":
		if len(f) != 3 {
			return Marker{}, false
		}
		return Marker{Kind: KindEnd, Package: f[0], Test: f[1], Result: f[2]}, true
	}
	return Marker{}, false
}
