#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the install_*.sh tests, sourced after lib.sh: which
# xt_connmark is loaded and from where, autoloading it with a plain iptables
# rule, and putting back the module the runner loaded (XTCM_MODULE) so that
# later tests still run against it. They run in the VM only (tests/vm/), on
# a throw-away overlay of the host's root.

KREL=$(uname -r)
XTLIBDIR=$(pkg-config --variable=xtlibdir xtables 2>/dev/null)
# shellcheck disable=SC2034 # used by the scripts sourcing us
DKMS_SRC=/usr/src/xt_connmark-${XTCM_VERSION:-}
# shellcheck disable=SC2034
PLUGIN_FILES=("$XTLIBDIR/libxt_CONNMARK.so" "$XTLIBDIR/libxt_connmark.so")

# install_env_ok: the variables the runner exports (tests/run.sh).
install_env_ok()
{
	local var

	for var in XTCM_KROOT XTCM_MODULE XTCM_VERSION XTCM_SRCVERSION; do
		if [ -z "${!var:-}" ]; then
			echo "SKIP: $var is not set: this test runs in the VM (tests/run.sh)"
			return 1
		fi
	done
}

# link_headers: /lib/modules/$KREL/build, which DKMS builds against, to the
# unpacked kernel's headers.
link_headers()
{
	local headers=$XTCM_KROOT/usr/src/linux-headers-$KREL

	if [ ! -f "$headers/Makefile" ]; then
		echo "FAIL: no headers for $KREL in $headers"
		return 1
	fi
	ln -sfn "$headers" "/lib/modules/$KREL/build"
}

# Under TCG, over 9p, "depmod -a" takes 70 to 120 s on Debian's ~4000
# modules, and DKMS runs it at every install and removal. The tests only
# load netfilter modules: hide_modules mounts an empty tmpfs on every
# directory of kernel/ but net/, lib/, crypto/ and arch/ (~640 modules
# left), after saving the modules.* indexes; unhide_modules puts both back,
# so the indexes are the initial ones again without another depmod.
MODULES_SAVED=""
MODULES_HIDDEN=()
hide_modules()
{
	local dir=/lib/modules/$KREL sub

	MODULES_SAVED=$(mktemp -d) || return
	cp -a "$dir"/modules.* "$MODULES_SAVED/" || return
	for sub in "$dir"/kernel/*/; do
		sub=${sub%/}
		case ${sub##*/} in
		net | lib | crypto | arch) continue ;;
		esac
		mount -t tmpfs -o ro,size=4k xtcm-hidden "$sub" || return
		MODULES_HIDDEN+=("$sub")
	done
}

unhide_modules()
{
	local sub

	for sub in "${MODULES_HIDDEN[@]}"; do
		umount "$sub"
	done
	MODULES_HIDDEN=()
	if [ -n "$MODULES_SAVED" ]; then
		rm -f "/lib/modules/$KREL"/modules.*
		cp -a "$MODULES_SAVED"/modules.* "/lib/modules/$KREL/"
		rm -rf "$MODULES_SAVED"
		MODULES_SAVED=""
	fi
}

# unload_connmark: rmmod xt_connmark if it is loaded, waiting for the
# namespaces of earlier rules to go away.
unload_connmark()
{
	[ -d /sys/module/xt_connmark ] || return 0
	if ! slowwait 30 rmmod xt_connmark 2>/dev/null; then
		echo "FAIL: cannot rmmod xt_connmark (refcnt $(cat \
			/sys/module/xt_connmark/refcnt 2>/dev/null))"
		return 1
	fi
}

# check_loaded ours|in-tree: the loaded xt_connmark is the file modprobe
# finds, and that file is ours in updates/ (our version, same srcversion) or
# the kernel's own in kernel/net/netfilter/ (in-tree, no version: the kernel
# records neither a version nor a srcversion for it, nor the out-of-tree
# taint "O" that ours carries).
check_loaded()
{
	local want=$1 path version taint

	path=$(modinfo -n xt_connmark 2>/dev/null)
	version=$(cat /sys/module/xt_connmark/version 2>/dev/null)
	taint=$(cat /sys/module/xt_connmark/taint 2>/dev/null)
	case $want in
	ours)
		if [[ $path != "/lib/modules/$KREL/updates/"* ]] ||
			[ "$version" != "$XTCM_VERSION" ] ||
			[ "$(cat /sys/module/xt_connmark/srcversion)" != \
				"$(modinfo -F srcversion "$path")" ]; then
			echo "FAIL: ours: loaded xt_connmark version '$version', srcversion '$(cat \
				/sys/module/xt_connmark/srcversion 2>/dev/null)', want $XTCM_VERSION and those of $path in updates/"
			return 1
		fi
		;;
	in-tree)
		if [[ $path != "/lib/modules/$KREL/kernel/net/netfilter/xt_connmark.ko"* ]] ||
			[ ! -d /sys/module/xt_connmark ] || [ -n "$version" ] ||
			[[ $taint == *O* ]] || [ "$(modinfo -F intree "$path")" != Y ]; then
			echo "FAIL: in-tree: loaded xt_connmark version '$version' taint '$taint', modprobe's is $path, want kernel/net/netfilter/, no version, no O"
			return 1
		fi
		;;
	esac
	echo "PASS: $want xt_connmark loaded: $path${version:+ version $version}"
}

# autoload_rule IPTABLES: in a fresh namespace, the plain rule a user would
# write, with xt_connmark unloaded: the kernel must load the module itself.
# IPTABLES is a command, e.g. "iptables" or "env XTABLES_LIBDIR=... iptables".
autoload_rule()
{
	local ipt=$1 ns_autoload out

	if [ -d /sys/module/xt_connmark ]; then
		echo "FAIL: xt_connmark is loaded before the rule"
		return 1
	fi
	setup_ns ns_autoload || return
	# shellcheck disable=SC2086 # IPTABLES is a command with arguments
	if ! out=$(ip netns exec "$ns_autoload" $ipt -t mangle -A PREROUTING \
		-j CONNMARK --set-mark 1 2>&1); then
		echo "FAIL: $ipt -j CONNMARK --set-mark 1: $out"
		return 1
	fi
	# shellcheck disable=SC2086
	out=$(ip netns exec "$ns_autoload" $ipt -t mangle -S PREROUTING 2>&1)
	if ! grep -qx -- '-A PREROUTING -j CONNMARK --set-xmark 0x1/0xffffffff' \
		<<<"$out"; then
		echo "FAIL: $ipt -t mangle -S PREROUTING, want the rule, got: $out"
		return 1
	fi
	echo "PASS: $ipt -t mangle -A PREROUTING -j CONNMARK --set-mark 1 loaded xt_connmark"
}

# restore_module: the state the runner left, whatever happened: the
# modules and their indexes as they were, no other xt_connmark loaded,
# XTCM_MODULE insmod'ed.
restore_module()
{
	local loaded

	cleanup_all_ns
	unhide_modules
	unload_connmark || return
	if ! insmod "$XTCM_MODULE"; then
		echo "FAIL: cannot insmod $XTCM_MODULE again"
		return 1
	fi
	loaded=$(cat /sys/module/xt_connmark/version)/$(cat /sys/module/xt_connmark/srcversion)
	if [ "$loaded" != "$XTCM_VERSION/$XTCM_SRCVERSION" ]; then
		echo "FAIL: restored xt_connmark is $loaded"
		return 1
	fi
	echo "PASS: $XTCM_MODULE loaded again"
}

# skip_man_db: dpkg's man-db trigger rebuilds the manual page index, which
# takes minutes under TCG; man-db's own switch turns it off until
# restore_man_db.
MAN_DB_SKIPPED=false
skip_man_db()
{
	if [ -e /var/lib/man-db/auto-update ]; then
		rm -f /var/lib/man-db/auto-update
		MAN_DB_SKIPPED=true
	fi
}

restore_man_db()
{
	if $MAN_DB_SKIPPED; then
		touch /var/lib/man-db/auto-update
		MAN_DB_SKIPPED=false
	fi
}

# sha256_of FILE...: "sha256 name" lines; a missing file prints "missing".
sha256_of()
{
	local f

	for f in "$@"; do
		if [ -e "$f" ]; then
			sha256sum "$f"
		else
			echo "missing $f"
		fi
	done
}
