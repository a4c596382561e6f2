# A thin wrapper: every step is a Go command that knows when it is up to date.
#
#   make vmtest            build what is stale, boot, run every guest test
#   make test              host-side unit tests, then make vmtest
#   make vmtest FLAVOR=baseline RUN=TestKernelRelease
#   make repro             bundle the last failing run; make repro BUNDLE=<dir> replays one
#
# See README.md.

FLAVOR ?= debug
RUN    ?=
PATCHES ?= patches
GO     ?= go
OUT    := out
BIN    := $(OUT)/bin
KERNEL := $(OUT)/$(FLAVOR)/bzImage
INITRAMFS := $(OUT)/initramfs.cpio
NLMMAP_CACHE_DIR = $(or $(NLMMAP_CACHE),$(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME)/nlmmap,$(HOME)/.cache/nlmmap))

.PHONY: all tools kernel initramfs vmtest repro check-bisect bisect compare coverage unit test check-series clean distclean

all: vmtest

tools:
	@$(GO) build -o $(BIN)/ ./kernel/cmd/nlmmap-kernel ./initramfs/cmd/nlmmap-initramfs ./vmtests/cmd/nlmmap-accel ./kernel/cmd/nlmmap-series \
		./vmtests/cmd/nlmmap-vm ./vmtests/cmd/nlmmap-repro ./vmtests/cmd/nlmmap-bisect \
		./vmtests/cmd/nlmmap-compare ./vmtests/cmd/nlmmap-coverage

kernel: tools
	@$(BIN)/nlmmap-kernel -flavor $(FLAVOR) -out $(OUT) -patches $(PATCHES)

initramfs: tools
	@$(BIN)/nlmmap-initramfs -out $(OUT)

# report turns the outcome.json in run directory $(1) into one line per
# guest test and JUnit $(2); on failure it says what failed and how to
# reproduce it.
define report
NLMMAP_OUTCOME=$(abspath $(1))/outcome.json $(GO) run gotest.tools/gotestsum --format testname --junitfile $(2) -- \
	-count=1 ./vmtests -run '^TestGuest$$' || { $(BIN)/nlmmap-vm -explain $(1); exit 1; }
endef

# nlmmap-vm boots (printing progress) and judges the run, keeping a bundle
# of it in out/last-failed if it failed; gotestsum then reports it.
vmtest: kernel initramfs
	@$(BIN)/nlmmap-vm -kernel $(KERNEL) -initramfs $(INITRAMFS) -rundir $(OUT)/run -run '$(RUN)' -snapshot $(OUT)/last-failed
	@$(call report,$(OUT)/run,$(OUT)/junit.xml)

# make repro: a self-contained bundle of the last failing (or last) run in
# out/repro/<time>/ (FROM=<run directory> for another run, e.g. a prefix's
# from make check-bisect). make repro BUNDLE=<dir>: boot that bundle again and
# report like vmtest (it needs neither the cache nor a kernel build).
repro: tools
ifeq ($(BUNDLE),)
	@$(BIN)/nlmmap-repro -out $(OUT) $(if $(FROM),-from '$(FROM)')
else
	@$(BIN)/nlmmap-vm -bundle '$(BUNDLE)' -rundir $(OUT)/replay
	@$(call report,$(OUT)/replay,$(OUT)/replay/junit.xml)
endif

# The series as a netdev maintainer would check it: 11 patches and a cover
# letter, subjects, bodies, Signed-off-by, checkpatch --strict, and every
# prefix built with CONFIG_NETLINK_MMAP=y and =n (about half an hour).
check-series: tools
	@$(BIN)/nlmmap-series -builds

# Every prefix of the series built with CONFIG_NETLINK_MMAP=y and =n and
# booted with the guest tests that apply to it (30-60 minutes on 2 cores).
check-bisect: initramfs
	@$(BIN)/nlmmap-bisect -check -initramfs $(INITRAMFS) -out $(OUT)/bisect -patches $(PATCHES)

# The first patch at which the guest tests RUN selects fail, by binary
# search over the prefixes (SET=debug, make vmtest's configuration, or y/n).
SET ?= debug
bisect: initramfs
	@test -n '$(RUN)' || { echo "make bisect: say which test, e.g. make bisect RUN=TestOverrun"; exit 2; }
	@$(BIN)/nlmmap-bisect -run '$(RUN)' -set $(SET) -initramfs $(INITRAMFS) -out $(OUT)/bisect -patches $(PATCHES)

# The same guest tests on the unpatched kernel and on FLAVOR, side by side:
# on the baseline the ring tests skip with ENOPROTOOPT and the rest passes.
compare: initramfs
	@$(BIN)/nlmmap-kernel -flavor baseline -out $(OUT)
	@$(BIN)/nlmmap-kernel -flavor $(FLAVOR) -out $(OUT) -patches $(PATCHES)
	@$(BIN)/nlmmap-compare -initramfs $(INITRAMFS) -out $(OUT)/compare -run '$(RUN)' \
		baseline=$(OUT)/baseline/bzImage $(FLAVOR)=$(OUT)/$(FLAVOR)/bzImage

# Line coverage of the code the series adds: a gcov kernel, the guest
# tests, and a report (out/coverage/report.txt) listing the added lines
# that never ran.
coverage: initramfs
	@$(BIN)/nlmmap-coverage -out $(OUT) -run '$(RUN)' -patches $(PATCHES)

unit:
	$(GO) vet ./...
	$(GO) test ./...

test: unit vmtest

clean:
	rm -rf $(OUT)

distclean: clean
	rm -rf '$(NLMMAP_CACHE_DIR)'
