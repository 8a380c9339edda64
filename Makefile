# SPDX-License-Identifier: GPL-2.0
#
# xt_connmark: an out-of-tree CONNMARK target and connmark match.
#
#   make            module (KDIR=<kernel build dir>) and iptables plugins
#   make check      install what is missing, the host checks (check-host),
#                   then the VM tests on every lane (tests/vm/lane.sh: a
#                   Debian kernel and a userland root of its release): the
#                   whole suite on Debian 12's 6.1 and on sid's newest
#                   kernel, a core set on Debian 11's 5.10, 12's and 13's
#                   6.12 and on Debian 12's 6.12 for arm64 (qemu-system-
#                   aarch64, everything cross-built; every lane's kernel has
#                   an arm64 cross build of the module), a longer one on the
#                   debug kernel
#   make check-matrix  every test on every lane (hours)
#   make check-host the host part of make check alone, no VM: unit tests,
#                   builds, static analysis, fuzz smoke run, packages
#   make demo       boot a VM and run the how-to's basic example
#   make check-cookbook, check-install   docs/cookbook.md's recipes, and the
#                   DKMS, plugin and .deb installs, alone (SERIES= kernels,
#                   default "6.1 6.12"; make check runs them too)
#   make check-clients  the rulesets of real tools (tests/clients/: Shorewall,
#                   wg-quick, mwan3's and Tailscale's rules), ours against
#                   the kernel's module (SERIES= as above; in check-matrix)
#   make check-debug   the longer set on the KASAN/lockdep/kmemleak/UBSAN
#                   kernel (XTCM_DEBUG_KERNEL_DIR, else ../shared/debug-kernel,
#                   else make debug-kernel's)
#   make debug-kernel  build that kernel from Debian's linux-source-6.1 with
#                   tests/vm/debug-kernel.config into .cache/debug-kernel
#                   (about 20 minutes on 2 cores)
#   make check-kcsan   the concurrent tests (KCSAN_PROGS) on the KCSAN kernel
#   make kcsan-kernel  build it: the same source and fragment with
#                   tests/vm/kcsan-kernel.config (KCSAN in place of KASAN)
#                   into .cache/kcsan-kernel
#   make lifecycle  100 load/use/unload cycles
#   make differential   DIFF_PROGRAMS (default 1000) random rule programs
#                   per kernel, ours against the kernel's own xt_connmark
#   make fuzz       the iptables plugins under libFuzzer, ASan and UBSan
#                   (tests/fuzz), FUZZ_RUNS executions (default 1000000)
#   make bench      forwarding benchmark on 6.1, 6.12 and sid: ours, in-tree,
#                   nftables (bench/run.sh; results in bench/results/)
#
# Installing on the machine itself (as root):
#   make dkms-install     register the module with DKMS (/usr/src/xt_connmark-
#                         <version>), build and install it into updates/ for
#                         the running kernel (or KVER=<release>); DKMS rebuilds
#                         it for every kernel installed later
#                         and modprobe's fallback to the kernel's own module
#                         when the kernel refuses ours (boot-install)
#   make dkms-uninstall   remove it for that kernel; the sources, the DKMS
#                         registration and the fallback go with the last kernel
#   make boot-install     only the boot path's files (boot/): modprobe's
#                         fallback (/usr/lib/modprobe.d/xt-connmark.conf) and
#                         the signing check (README, "Secure Boot")
#   make install          the plugins into the xtables plugin directory
#                         (pkg-config --variable=xtlibdir xtables), the man
#                         page into $(MANDIR)/man8, xtables-connmark-restore
#                         and its link in netfilter-persistent's plugins.d
#                         (README, "Safe boot"); on dpkg systems the
#                         distribution's plugins are kept aside with a local
#                         dpkg-divert, so an iptables upgrade keeps ours
#   make uninstall        remove them and the diversions: the distribution's
#                         files come back unchanged
#   make deb              xt-connmark-dkms and xtables-connmark-plugins
#                         packages, with dpkg-buildpackage, into $(DEB_OUT)
#   make dkms-source      only copy the tree DKMS builds to $(DESTDIR)/usr/src/
#                         xt_connmark-<version> (for debian/rules)
# install and uninstall honour DESTDIR (then no diversion is made) and PREFIX
# (default /usr/local, for the man page).

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

# DKMS: the kernel to install for, the command (options such as
# --installtree or --kernelsourcedir may be added) and its trees.
KVER ?= $(shell uname -r)
DKMS ?= dkms
DKMS_TREE ?= /var/lib/dkms
DKMS_SOURCE_TREE ?= /usr/src
DKMS_CMD = $(DKMS) --dkmstree $(DKMS_TREE) --sourcetree $(DKMS_SOURCE_TREE)
DKMS_SOURCE = $(DKMS_SOURCE_TREE)/xt_connmark-$(VERSION)
# The sources of $(MODULE_SOURCES), without build products.
DKMS_FILES = Kbuild dkms.conf $(wildcard include/*.h kmod/Kbuild kmod/*.[ch])

PREFIX ?= /usr/local
MANDIR ?= $(PREFIX)/share/man
XTLIBDIR ?= $(shell pkg-config --variable=xtlibdir xtables 2>/dev/null)
PLUGINS = libxt_CONNMARK.so libxt_connmark.so
MANPAGE = doc/xt_connmark.8

# The boot path: modprobe's fallback and the signing check (boot/), in
# fixed places (xt-connmark.conf names the helper); netfilter-persistent's
# plugin, a link to xtables-connmark-restore.
BOOT_DIR = /usr/lib/xt-connmark
MODPROBE_CONF = /usr/lib/modprobe.d/xt-connmark.conf
RESTORE_TOOL = $(PREFIX)/share/xtables-connmark-plugins/xtables-connmark-restore
PERSISTENT_PLUGIN = /usr/share/netfilter-persistent/plugins.d/14-xt-connmark

DEB_OUT ?= build/deb
DEB_TREE = $(DEB_OUT)/xt-connmark-$(VERSION)
# What the Debian packages are built from (not build products).
DIST_FILES = Makefile Kbuild dkms.conf LICENSE README.md $(MANPAGE) \
	$(wildcard include/*.h kmod/Kbuild kmod/*.c kmod/*.h \
		libxt/Makefile libxt/xtables.mk libxt/*.c libxt/*.h \
		libxt/xtables-connmark-rules libxt/xtables-connmark-restore \
		boot/xt-connmark.conf boot/modprobe-fallback boot/signing-check \
		debian/control debian/copyright debian/rules debian/source/format \
		debian/*.dkms debian/*.install debian/*.preinst debian/*.prerm \
		debian/*.postinst debian/*.postrm debian/*.lintian-overrides \
		debian/*.manpages)

.PHONY: all module plugins unit check check-host check-matrix demo \
	check-cookbook check-install check-clients check-debug check-kcsan \
	debug-kernel \
	kcsan-kernel lifecycle \
	differential bench fuzz clean dkms-source dkms-install dkms-uninstall \
	install uninstall deb boot-install boot-uninstall

all: module plugins

module:
	@test -n "$(KREL)" || { echo "No kernel headers found: install" \
		"linux-headers-$$(uname -r) or pass KDIR=<build dir>"; exit 1; }
	@mkdir -p $(MODULE_DIR)
	@# The sources afresh (their times kept, so that an unchanged file does
	@# not rebuild): a file deleted from the tree must not stay in the build.
	@rm -rf $(addprefix $(MODULE_DIR)/,include Kbuild dkms.conf) \
		$(wildcard $(MODULE_DIR)/kmod/*.[ch] $(MODULE_DIR)/kmod/Kbuild)
	@cp -a $(MODULE_SOURCES) $(MODULE_DIR)/
	$(MAKE) -C $(KDIR) M=$(abspath $(MODULE_DIR)) modules
	@echo "built $(MODULE_DIR)/kmod/xt_connmark.ko (version $(VERSION))"

plugins:
	$(MAKE) -C libxt

unit:
	$(MAKE) -C tests unit

# check runs the host part (check-host's) first, then the VMs.
check:
	tests/deps.sh
	tests/run.sh

check-host:
	tests/deps.sh
	tests/run.sh --host-only

check-matrix:
	tests/deps.sh
	tests/run.sh --matrix

demo:
	tests/deps.sh
	tests/run.sh --demo

# The sets of tests/Makefile, each on its own, and the long runs; on 6.1 and
# 6.12 unless XTCM_SERIES says otherwise.
SERIES ?= 6.1 6.12
check-cookbook check-install check-clients: check-%:
	tests/deps.sh
	XTCM_SERIES="$(SERIES)" \
		tests/run.sh $$($(MAKE) -s -C tests print-$(shell echo $* | tr a-z A-Z)_PROGS)

# Longer than DEBUG_ENV (make check): every hostile payload, 5 lifecycle
# cycles, 60 s of SMP stress.
check-debug:
	tests/deps.sh
	XTCM_SERIES=debug XTCM_TEST_TIMEOUT=3600 XTCM_HOSTILE_STEP=1 \
		XTCM_LIFECYCLE_CYCLES=5 XTCM_STRESS_SECONDS=60 \
		tests/run.sh $$($(MAKE) -s -C tests print-DEBUG_PROGS)

# KCSAN_PROGS on the KCSAN kernel of make kcsan-kernel, with KCSAN_ENV.
check-kcsan:
	tests/deps.sh
	XTCM_SERIES=kcsan XTCM_TEST_TIMEOUT=3600 \
		tests/run.sh $$($(MAKE) -s -C tests print-KCSAN_PROGS)

# Install what they need themselves; nothing is done when up to date.
debug-kernel:
	tests/vm/build-debug-kernel.sh kasan

kcsan-kernel:
	tests/vm/build-debug-kernel.sh kcsan

lifecycle:
	tests/deps.sh
	XTCM_SERIES="$(SERIES)" XTCM_LIFECYCLE_CYCLES=100 XTCM_TEST_TIMEOUT=7200 \
		tests/run.sh lifecycle.sh

DIFF_PROGRAMS ?= 1000
differential:
	tests/deps.sh
	XTCM_SERIES="$(SERIES)" XTCM_DIFF_PROGRAMS=$(DIFF_PROGRAMS) \
		XTCM_TEST_TIMEOUT=7200 tests/run.sh differential.sh

FUZZ_RUNS ?= 1000000
fuzz:
	tests/deps.sh
	tests/static/fuzz.sh $(FUZZ_RUNS) 0

bench:
	tests/deps.sh
	bench/run.sh

# The tree DKMS builds, in $(DESTDIR)$(DKMS_SOURCE) (also used by debian/).
dkms-source:
	install -d $(DESTDIR)$(DKMS_SOURCE)
	cp --parents $(DKMS_FILES) $(DESTDIR)$(DKMS_SOURCE)/
	chmod -R u=rwX,go=rX $(DESTDIR)$(DKMS_SOURCE)

# not_packaged TARGET: fail when the xt-connmark-dkms package manages the
# module: DKMS and dpkg would disagree.
not_packaged = if [ "$$(dpkg-query -W -f '$${Status}' xt-connmark-dkms \
	2>/dev/null)" = "install ok installed" ]; then echo "$(1): the" \
	"xt-connmark-dkms package manages xt_connmark: dpkg -r" \
	"xt-connmark-dkms instead"; exit 1; fi

# dkms exits with 77 when dkms.conf's BUILD_EXCLUSIVE_* skips the kernel; a
# build that kmod/Kbuild refuses leaves its one-line reason in make.log.
dkms-install:
	@command -v $(firstword $(DKMS)) >/dev/null || { echo "dkms-install:" \
		"dkms is missing: apt-get install dkms linux-headers-$(KVER)"; \
		exit 1; }
	@$(call not_packaged,dkms-install)
	-$(DKMS_CMD) remove xt_connmark/$(VERSION) --all >/dev/null 2>&1
	rm -rf $(DKMS_SOURCE)
	$(MAKE) --no-print-directory dkms-source DESTDIR=
	$(DKMS_CMD) add xt_connmark/$(VERSION)
	@$(DKMS_CMD) install xt_connmark/$(VERSION) -k $(KVER); rc=$$?; \
	if [ $$rc -eq 77 ]; then \
		echo "xt_connmark: not built for $(KVER): the kernel is older" \
			"than 4.19 or lacks one of $$(sed -n \
			's/^BUILD_EXCLUSIVE_CONFIG="\(.*\)"$$/\1/p' dkms.conf)"; \
	elif [ $$rc -ne 0 ]; then \
		sed -n 's/.*\*\*\* \(xt_connmark: .*\)\.  Stop\.$$/\1/p' \
			$(DKMS_TREE)/xt_connmark/$(VERSION)/build/make.log \
			2>/dev/null | head -n 1; \
	fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	echo "xt_connmark $(VERSION) installed for $(KVER): rmmod" \
		"xt_connmark (or reboot) to replace a module already loaded"
	$(MAKE) --no-print-directory boot-install DESTDIR=
	@$(BOOT_DIR)/signing-check $(KVER) || true

dkms-uninstall:
	@$(call not_packaged,dkms-uninstall)
	-$(DKMS_CMD) remove xt_connmark/$(VERSION) -k $(KVER)
	@if ! $(DKMS_CMD) status xt_connmark/$(VERSION) 2>/dev/null | \
		grep -q .; then echo "rm -rf $(DKMS_SOURCE)"; \
		rm -rf $(DKMS_SOURCE); \
		$(MAKE) --no-print-directory boot-uninstall DESTDIR=; fi
	@if [ -e /sys/module/xt_connmark/version ]; then echo "xt_connmark" \
		"$$(cat /sys/module/xt_connmark/version) is still loaded:" \
		"rmmod xt_connmark (after flushing its rules) or reboot"; fi

boot-install:
	install -D -m 0755 boot/modprobe-fallback $(DESTDIR)$(BOOT_DIR)/modprobe-fallback
	install -D -m 0755 boot/signing-check $(DESTDIR)$(BOOT_DIR)/signing-check
	install -D -m 0644 boot/xt-connmark.conf $(DESTDIR)$(MODPROBE_CONF)

boot-uninstall:
	rm -f $(DESTDIR)$(MODPROBE_CONF) $(DESTDIR)$(BOOT_DIR)/modprobe-fallback \
		$(DESTDIR)$(BOOT_DIR)/signing-check
	-rmdir $(DESTDIR)$(BOOT_DIR)

# divert: true when the distribution's plugins are to be diverted.
divert = [ -z "$(DESTDIR)" ] && command -v dpkg-divert >/dev/null

install: plugins
	@test -n "$(XTLIBDIR)" || { echo "install: no xtables plugin" \
		"directory: install libxtables-dev (pkg-config xtables)"; exit 1; }
	install -d $(DESTDIR)$(XTLIBDIR) $(DESTDIR)$(MANDIR)/man8
	@set -e; if $(divert); then for p in $(PLUGINS); do \
		f=$(XTLIBDIR)/$$p; owner=$$(dpkg-divert --listpackage $$f); \
		case $$owner in ""|LOCAL) ;; *) echo "install: $$f is" \
			"diverted by the $$owner package: dpkg -r $$owner first"; \
			exit 1 ;; esac; \
		echo "dpkg-divert --local --rename --add $$f"; \
		dpkg-divert --local --rename --divert $$f.distrib --add $$f; \
	done; fi
	install -m 0644 $(addprefix libxt/,$(PLUGINS)) $(DESTDIR)$(XTLIBDIR)/
	install -m 0644 $(MANPAGE) $(DESTDIR)$(MANDIR)/man8/
	install -D -m 0755 libxt/xtables-connmark-restore $(DESTDIR)$(RESTORE_TOOL)
	install -d $(DESTDIR)$(dir $(PERSISTENT_PLUGIN))
	ln -sfnr $(DESTDIR)$(RESTORE_TOOL) $(DESTDIR)$(PERSISTENT_PLUGIN)

# A plugin is removed when it is ours: locally diverted, or (no dpkg, or
# DESTDIR) simply there. A file of a package that nobody diverted is the
# distribution's own and stays. First, on the machine itself, the loaded
# --set-dscpmark rules are listed on stderr, while our plugins can still
# read them: the distribution's have no revision 3.
uninstall:
	@test -n "$(XTLIBDIR)" || { echo "uninstall: no xtables plugin" \
		"directory: install libxtables-dev (pkg-config xtables)"; exit 1; }
	@[ -n "$(DESTDIR)" ] || sh libxt/xtables-connmark-rules
	@set -e; for p in $(PLUGINS); do f=$(XTLIBDIR)/$$p; \
		if ! $(divert); then echo "rm -f $(DESTDIR)$$f"; \
			rm -f $(DESTDIR)$$f; continue; fi; \
		owner=$$(dpkg-divert --listpackage $$f); \
		case $$owner in \
		LOCAL) echo "rm -f $$f"; rm -f $$f; \
			echo "dpkg-divert --local --rename --remove $$f"; \
			dpkg-divert --local --rename --divert $$f.distrib \
				--remove $$f ;; \
		"") if pkg=$$(dpkg-query -S $$f 2>/dev/null); then \
				echo "uninstall: $$f is $${pkg%%:*}'s, not" \
					"ours: left alone"; \
			else echo "rm -f $$f"; rm -f $$f; fi ;; \
		*) echo "uninstall: $$f belongs to the $$owner package:" \
			"dpkg -r $$owner instead"; exit 1 ;; \
		esac; \
	done
	rm -f $(DESTDIR)$(MANDIR)/man8/$(notdir $(MANPAGE))
	rm -f $(DESTDIR)$(PERSISTENT_PLUGIN) $(DESTDIR)$(RESTORE_TOOL)

# The packages are built in a copy of the sources, with a debian/changelog
# made from dkms.conf's PACKAGE_VERSION: the version has one home.
deb:
	rm -rf $(DEB_TREE)
	mkdir -p $(DEB_TREE)
	cp -a --parents $(DIST_FILES) $(DEB_TREE)/
	{ echo "xt-connmark ($(VERSION)) unstable; urgency=medium"; echo; \
	  echo "  * Version $(VERSION), from dkms.conf."; echo; \
	  echo " -- $$(sed -n 's/^Maintainer: //p' debian/control)  $$(git \
		log -1 --format=%aD -- dkms.conf 2>/dev/null | grep . || \
		date -R -r dkms.conf)"; } >$(DEB_TREE)/debian/changelog
	cd $(DEB_TREE) && dpkg-buildpackage -us -uc -b
	@ls $(DEB_OUT)/*_$(VERSION)_*.deb

clean:
	rm -rf build
	$(MAKE) -C libxt clean
	$(MAKE) -C tests clean
	$(MAKE) -C bench clean
