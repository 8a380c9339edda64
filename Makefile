# SPDX-License-Identifier: GPL-2.0
#
# xt_connmark: an out-of-tree CONNMARK target and connmark match.
#
#   make            module (KDIR=<kernel build dir>) and iptables plugins
#   make check      install what is missing, unit tests, VM tests on 6.1/6.12
#   make demo       boot a VM and run the how-to's basic example

VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"$$/\1/p' dkms.conf)

# Default headers: the running kernel's, else the newest installed.
KDIR ?= $(or $(wildcard /lib/modules/$(shell uname -r)/build),$(shell \
	ls -d /lib/modules/*/build 2>/dev/null | sort -V | tail -n 1))
# The release the kernel reports (uname -r); Debian's kernel.release differs.
KREL = $(shell sed -n 's/^\#define UTS_RELEASE "\(.*\)"$$/\1/p' \
	$(KDIR)/include/generated/utsrelease.h 2>/dev/null)
# Each kernel builds in its own copy of the sources, so several can coexist.
MODULE_DIR ?= build/$(KREL)
MODULE_SOURCES = Kbuild kmod include dkms.conf

.PHONY: all module plugins unit check demo clean

all: module plugins

module:
	@test -n "$(KREL)" || { echo "No kernel headers found: install" \
		"linux-headers-$$(uname -r) or pass KDIR=<build dir>"; exit 1; }
	@mkdir -p $(MODULE_DIR)
	@cp -a --update $(MODULE_SOURCES) $(MODULE_DIR)/
	$(MAKE) -C $(KDIR) M=$(abspath $(MODULE_DIR)) modules
	@echo "built $(MODULE_DIR)/kmod/xt_connmark.ko (version $(VERSION))"

plugins:
	$(MAKE) -C libxt

unit:
	$(MAKE) -C tests unit

check:
	tests/deps.sh
	tests/run.sh

demo:
	tests/deps.sh
	tests/run.sh --demo

clean:
	rm -rf build
	$(MAKE) -C libxt clean
	$(MAKE) -C tests clean
