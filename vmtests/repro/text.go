package repro

import (
	"fmt"
	"regexp"
	"text/template"
	"time"

	"github.com/nlmmap/nlmmap/vmtests/suite"
)

// textData is what the README and run.sh templates see.
type textData struct {
	B *Bundle
	// Cmd is the recorded QEMU command line with the kernel, initramfs
	// and share paths replaced by "$B/..." and "$SHARE", and the
	// accelerator by "${ACCEL:-<recorded>}"; "" if that failed.
	Cmd       string
	VMSeconds int
}

var (
	kernelArgRe = regexp.MustCompile(` -kernel (\S+)`)
	initrdArgRe = regexp.MustCompile(` -initrd (\S+)`)
	shareArgRe  = regexp.MustCompile(`([ ,]path=)([^, ]+)(,)`)
	accelArgRe  = regexp.MustCompile(`(accel=)(\w+)`)
)

// relocate rewrites the recorded QEMU command line for run.sh: the kernel,
// initramfs and share paths become "$B/...", "$SHARE", and the accelerator
// "${ACCEL:-<recorded>}". It returns "" if the line does not have them all.
func relocate(cmdline string) string {
	for _, re := range []*regexp.Regexp{kernelArgRe, initrdArgRe, shareArgRe, accelArgRe} {
		if !re.MatchString(cmdline) {
			return ""
		}
	}
	cmd := kernelArgRe.ReplaceAllLiteralString(cmdline, ` -kernel "$B/`+KernelFile+`"`)
	cmd = initrdArgRe.ReplaceAllLiteralString(cmd, ` -initrd "$B/`+InitramfsFile+`"`)
	cmd = shareArgRe.ReplaceAllString(cmd, `${1}"$$SHARE"${3}`)
	return accelArgRe.ReplaceAllString(cmd, `${1}"$${ACCEL:-${2}}"`)
}

// vmSeconds is the VM timeout of the recorded run, for run.sh.
func vmSeconds(out *suite.Outcome) int {
	d, err := time.ParseDuration(out.Timeouts.VM)
	if err != nil || d <= 0 {
		return 3600
	}
	return int(d.Seconds())
}

var funcs = template.FuncMap{
	"date": func(t time.Time) string { return t.Format("2006-01-02 15:04 MST") },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"q": func(s string) string { return fmt.Sprintf("%q", s) },
}

var scriptTmpl = template.Must(template.New(ScriptFile).Funcs(funcs).Parse(`#!/bin/sh
# Boots this bundle's kernel and initramfs with the recorded plan, with the
# QEMU command line of the recorded run (qemu-cmdline.txt) relocated into
# this directory. Needs qemu-system-x86_64 and nothing else; the full report
# comes from the harness: make repro BUNDLE=<this directory>.
#
#   ./run.sh              # console and results go to replay-<time>/
#   ACCEL=kvm ./run.sh    # another accelerator than the recorded {{.B.Meta.Accel}}
set -eu
B=$(cd "$(dirname "$0")" && pwd)
SHARE=$B/replay-$(date +%Y%m%d-%H%M%S)
mkdir -p "$SHARE"
cp "$B/plan.json" "$SHARE/plan.json"
{{- if not .Cmd}}
echo "run.sh: the recorded command line could not be relocated automatically;" >&2
echo "edit the paths in $B/qemu-cmdline.txt (kernel, initrd, 9p share path=$SHARE) and run it" >&2
exit 2
{{- else}}
echo "run.sh: booting (at most {{.VMSeconds}}s); console: $SHARE/console.log"
status=0
timeout {{.VMSeconds}} {{.Cmd}} > "$SHARE/console.log" 2>&1 || status=$?
c=$SHARE/console.log
echo "run.sh: QEMU exited with status $status"
echo "run.sh: guest tests: $(grep -c 'nlmmap: END .* PASS' "$c") passed, $(grep -c 'nlmmap: END .* FAIL' "$c") failed, $(grep -c 'nlmmap: END .* SKIP' "$c") skipped"
grep 'nlmmap: END .* FAIL' "$c" | sed 's/.*nlmmap: END /run.sh: FAIL /' || true
if ! grep -q 'nlmmap: DONE' "$c"; then
	echo "run.sh: the guest did not finish; last test begun: $(grep 'nlmmap: BEGIN' "$c" | tail -1 | sed 's/.*nlmmap: BEGIN //')"
fi
echo "run.sh: lines that start kernel reports:"
grep -nE '\] (BUG: |WARNING: |UBSAN: |refcount_t: |unreferenced object |Kernel panic|INFO: task .*blocked for more than|rcu: INFO: .*stall|Oops: |Call Trace:)' "$c" || echo "  none"
echo "run.sh: recorded run: {{.B.Meta.Summary}}"
{{- end}}
`))

var readmeTmpl = template.Must(template.New(ReadmeFile).Funcs(funcs).Parse(`# Reproduction bundle

{{.B.Meta.Summary}}

Made {{date .B.Meta.Created}} from the run in ` + "`{{.B.Meta.FromRun}}`" + `.
{{- if .B.Meta.Failures}}

## What failed
{{range .B.Meta.Failures}}
- {{.}}
{{- end}}

The kernel's reports, with excerpts, are in ` + "`outcome.json`" + ` and in
` + "`console.log`" + `.
{{- end}}

## Replay it

From a checkout of the nlmmap harness, on any machine with QEMU, in any
directory (the bundle does not use the harness's caches):

    make repro BUNDLE={{.B.Dir}}

It checks every file against ` + "`bundle.json`" + `, boots this kernel and initramfs
with this plan and accelerator, prints one line per guest test like
` + "`make vmtest`" + ` (JUnit in ` + "`out/replay/junit.xml`" + `), and says whether the replay
failed the same way. ` + "`NLMMAP_ACCEL=kvm`" + ` changes the accelerator.

Without the harness, ` + "`./run.sh`" + ` boots it with QEMU alone and greps the
console.

## The kernel
{{with .B.Meta.Build}}
- Linux {{.KernelVersion}}, release ` + "`{{.KernelRelease}}`" + `, flavor ` + "`{{.Flavor}}`" + `
- base commit ` + "`{{.BaseCommit}}`" + ` (the harness's deterministic import of {{.Source.Detail}})
- head commit ` + "`{{.HeadCommit}}`" + ` (base plus the series, applied with git am)
- compiler: {{.Compiler}}
- series, with each file's sha256 (as sha256sum prints it):
{{range .Patches}}
      {{.SHA256}}  {{.Name}}
{{- end}}
- config fragments (tinyconfig, then these, then olddefconfig; the result is ` + "`.config`" + `):
{{range .Fragments}}
      {{.SHA256}}  {{.Name}}
{{- end}}
{{- else}}
No build.json came with the kernel; ` + "`.config`" + ` and ` + "`kernel.release`" + ` describe it.
{{- end}}

## The run

- accelerator: {{.B.Meta.Accel}} ({{.B.Outcome.AccelReason}})
- guest test selection: {{if .B.Outcome.Plan.Run}}` + "`-run {{q .B.Outcome.Plan.Run}}`" + `{{else}}all tests{{end}}, per-test timeout {{.B.Outcome.Plan.TestTimeout.D}}
{{- range $k, $v := .B.Outcome.Plan.Env}}
- guest environment: ` + "`{{$k}}={{$v}}`" + `
{{- end}}
- QEMU command line (` + "`qemu-cmdline.txt`" + `):

      {{.B.Meta.Cmdline}}

## Files

| file | what |
| --- | --- |
| ` + "`bzImage`, `.config`, `kernel.release`, `build.json`" + ` | the kernel and how it was built |
| ` + "`initramfs.cpio`, `initramfs.json`" + ` | the guest: u-root, the guest runner, the test binaries, their list |
| ` + "`plan.json`" + ` | what the guest runner was asked to run |
| ` + "`qemu-cmdline.txt`" + ` | the exact QEMU command line of the run |
| ` + "`console.log`, `results.json`, `outcome.json`" + ` | the serial console, the guest's go test -json events, the judged run |
| ` + "`junit.xml`" + ` | the run's JUnit report, when it had one |
| ` + "`run.sh`" + ` | boots the bundle with QEMU alone |
| ` + "`bundle.json`" + ` | this bundle's index: every file's sha256 |
`))
