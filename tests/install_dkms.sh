#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# "make dkms-install" and "make dkms-uninstall" on the running kernel, as on
# a router: DKMS builds our module from /usr/src/xt_connmark-<version> into
# updates/, and a plain iptables rule autoloads it instead of the kernel's
# own; after the uninstall the same rule autoloads the kernel's own again.
#
#   1. rmmod the module the runner loaded (no rule uses it any more)
#   2. make dkms-install: dkms status "installed", the .ko in updates/dkms/,
#      signed by DKMS's key where DKMS signs (modinfo -F signer), modprobe's
#      fallback to the kernel's own module installed
#   3. fresh namespace, iptables -t mangle -A PREROUTING -j CONNMARK
#      --set-mark 1: ours is loaded (version $XTCM_VERSION, from updates/)
#   4. namespace deleted (rules gone), make dkms-uninstall: no DKMS state, no
#      .ko in updates/, no /usr/src tree, no fallback; rmmod
#   5. the same rule in a fresh namespace: the kernel's own xt_connmark is
#      loaded (no version, from kernel/net/netfilter/)
#   6. the runner's module is insmod'ed again for the tests that follow
#
# Runs in the VM only (tests/run.sh), where the root is a throw-away overlay.
# Most module directories are hidden meanwhile, to keep DKMS's depmod runs
# short (install_lib.sh, hide_modules).

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"

install_env_ok || exit "$ksft_skip"
checktool "dkms --version" "run test without dkms"
checktool "make --version" "run test without make"
checktool "iptables --version" "run test without iptables"
checktool "modinfo --version" "run test without modinfo"

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	if dkms status xt_connmark 2>/dev/null | grep -q .; then
		make -s -C "$REPO_DIR" dkms-uninstall KVER="$KREL" >/dev/null 2>&1
	fi
	restore_module || exit "$ksft_fail"
}
trap cleanup EXIT

ret=0
log=$(mktemp)
link_headers || exit "$ksft_fail"
hide_modules || exit "$ksft_fail"
unload_connmark || exit "$ksft_fail"

timed_step "make dkms-install" make -C "$REPO_DIR" dkms-install KVER="$KREL" ||
	exit "$ksft_fail"
dkms_installed || ret=1
ko=$(find "/lib/modules/$KREL/updates/dkms" -name 'xt_connmark.ko*' 2>/dev/null)
if [ -z "$ko" ]; then
	echo "FAIL: no xt_connmark.ko in /lib/modules/$KREL/updates/dkms"
	ret=1
else
	echo "PASS: make dkms-install: $status, $ko"
fi

check_signed_install "make dkms-install" || ret=1
autoload_rule iptables || ret=1
check_loaded ours || ret=1

cleanup_all_ns
timed_step "make dkms-uninstall" \
	make -C "$REPO_DIR" dkms-uninstall KVER="$KREL" || ret=1
if dkms_gone "make dkms-uninstall"; then
	echo "PASS: make dkms-uninstall left no DKMS state, module or sources"
else
	ret=1
fi
in_tree_autoloads || ret=1

[ "$ret" -eq 0 ] && echo "PASS: DKMS install and uninstall on $KREL"
exit "$ret"
