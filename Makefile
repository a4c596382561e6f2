# A thin wrapper: every step is a Go command that knows when it is up to date.
#
#   make vmtest            build what is stale, boot, run every guest test
#   make test              host-side unit tests, then make vmtest
#   make vmtest FLAVOR=baseline RUN=TestKernelRelease
#
# See README.md.

FLAVOR ?= debug
RUN    ?=
GO     ?= go
OUT    := out
BIN    := $(OUT)/bin
KERNEL := $(OUT)/$(FLAVOR)/bzImage
INITRAMFS := $(OUT)/initramfs.cpio
NLMMAP_CACHE_DIR = $(or $(NLMMAP_CACHE),$(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME)/nlmmap,$(HOME)/.cache/nlmmap))

.PHONY: all tools kernel initramfs vmtest unit test check-series clean distclean

all: vmtest

tools:
	@$(GO) build -o $(BIN)/ ./kernel/cmd/nlmmap-kernel ./initramfs/cmd/nlmmap-initramfs ./vmtests/cmd/nlmmap-accel ./kernel/cmd/nlmmap-series

kernel: tools
	@$(BIN)/nlmmap-kernel -flavor $(FLAVOR) -out $(OUT)

initramfs: tools
	@$(BIN)/nlmmap-initramfs -out $(OUT)

vmtest: kernel initramfs
	@accel=$$($(BIN)/nlmmap-accel -kernel $(KERNEL) -initramfs $(INITRAMFS)) && \
	NLMMAP_ACCEL=$$accel \
	NLMMAP_KERNEL=$(abspath $(KERNEL)) \
	NLMMAP_INITRAMFS=$(abspath $(INITRAMFS)) \
	NLMMAP_RUN='$(RUN)' \
	$(GO) run gotest.tools/gotestsum --format testname --junitfile $(OUT)/junit.xml -- \
		-count=1 -timeout 60m ./vmtests -run '^TestGuest$$'

# The series as a netdev maintainer would check it: 11 patches and a cover
# letter, subjects, bodies, Signed-off-by, checkpatch --strict, and every
# prefix built with CONFIG_NETLINK_MMAP=y and =n (about half an hour).
check-series: tools
	@$(BIN)/nlmmap-series -builds

unit:
	$(GO) vet ./...
	$(GO) test ./...

test: unit vmtest

clean:
	rm -rf $(OUT)

distclean: clean
	rm -rf '$(NLMMAP_CACHE_DIR)'
