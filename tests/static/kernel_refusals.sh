#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Kernels the module cannot work on are refused before anything is compiled,
# with a one-line reason: one without CONFIG_NF_CONNTRACK_MARK, and one whose
# CONNMARK is built in (CONFIG_NETFILTER_XT_CONNMARK=y), which no module can
# replace. Each is a copy of a cached Debian kernel's headers with the option
# changed in .config, include/config/auto.conf (what Kbuild reads) and
# include/generated/autoconf.h (what the C code reads), refused by
# "make module" (kmod/Kbuild) and by "make dkms-install" (dkms.conf's
# BUILD_EXCLUSIVE_CONFIG, then kmod/Kbuild), with DKMS trees in a temporary
# directory (and --no-prepare-kernel: DKMS 2.8 would otherwise run make
# mrproper on headers given by --kernelsourcedir). The unchanged copy builds
# with DKMS: the refusals come from the changes. Runs as root (DKMS installs
# only as root), on the host or in a lane's root (tests/run.sh).
#
# Usage: kernel_refusals.sh KERNEL_RELEASE [HEADERS]
#   HEADERS  its build tree, default the one unpacked in .cache/kernels/ (a
#            lane's copy of the tree has no .cache of its own)

set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
krel=${1:?usage: kernel_refusals.sh KERNEL_RELEASE}
headers=${2:-$repo/.cache/kernels/$krel/root/usr/src/linux-headers-$krel}
tmp=$(mktemp -d)
ret=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	rm -rf "$tmp"
}
trap cleanup EXIT

if [ ! -f "$headers/include/config/auto.conf" ]; then
	echo "FAIL: no headers at $headers (tests/vm/fetch-kernel.sh)"
	exit 1
fi

# copy_headers DIR: a copy of the headers whose scripts/ and tools/ links
# still reach the kernel's kbuild tree, and whose Makefile names the copy
# (7.x headers set KBUILD_OUTPUT to their own directory).
copy_headers()
{
	local link

	cp -a "$headers" "$1" || return
	sed -i "s#$headers#$1#g" "$1/Makefile" || return
	for link in scripts tools; do
		[ -L "$headers/$link" ] || continue
		ln -sfn "$(readlink -f "$headers/$link")" "$1/$link" || return
	done
}

# set_config DIR SYMBOL y|m|n: set CONFIG_SYMBOL in the three files.
set_config()
{
	local dir=$1 sym=CONFIG_$2 val=$3

	sed -i -e "/^$sym=/d" -e "/^# $sym is not set$/d" \
		"$dir/.config" "$dir/include/config/auto.conf"
	sed -i -e "/^#define ${sym}\(_MODULE\)\? 1$/d" \
		"$dir/include/generated/autoconf.h"
	case $val in
	y | m)
		echo "$sym=$val" >>"$dir/.config"
		echo "$sym=$val" >>"$dir/include/config/auto.conf"
		;;
	n)
		echo "# $sym is not set" >>"$dir/.config"
		;;
	esac
	case $val in
	y) echo "#define $sym 1" >>"$dir/include/generated/autoconf.h" ;;
	m) echo "#define ${sym}_MODULE 1" >>"$dir/include/generated/autoconf.h" ;;
	esac
}

# dkms_install NAME KDIR: "make dkms-install" for $krel with the headers in
# KDIR and DKMS trees of its own under $tmp/NAME; prints make's output.
dkms_install()
{
	local dir=$tmp/$1

	mkdir -p "$dir/dkms" "$dir/install/$krel" "$dir/src"
	make -C "$repo" --no-print-directory dkms-install KVER="$krel" \
		DKMS="dkms --installtree $dir/install --kernelsourcedir $2 --no-prepare-kernel" \
		DKMS_TREE="$dir/dkms" DKMS_SOURCE_TREE="$dir/src" 2>&1
}

# check_refused NAME SYMBOL VALUE REASON: with CONFIG_SYMBOL=VALUE, "make
# module" and "make dkms-install" fail, compile nothing and print REASON
# (a grep -E pattern) on one line; with DKMS_RC set, dkms exits with it.
check_refused()
{
	local name=$1 reason=$4 dir=$tmp/$1 out rc line

	if ! copy_headers "$dir-headers"; then
		echo "FAIL: $name: cannot copy $headers"
		ret=1
		return
	fi
	set_config "$dir-headers" "$2" "$3"

	out=$(make -C "$repo" --no-print-directory module \
		KDIR="$dir-headers" MODULE_DIR="$dir-module" 2>&1)
	rc=$?
	# make prints "[<dir>/]kmod/Kbuild:<line>: *** <reason>.  Stop." (7.x
	# without the directory).
	line=$(sed -n 's/^\([^ ]*\/\)\{0,1\}kmod\/Kbuild:[0-9]*: \*\*\* \(.*\)\.  Stop\.$/\2/p' \
		<<<"$out")
	if [ "$rc" -eq 0 ] || ! grep -qxE "$reason" <<<"$line"; then
		echo "FAIL: $name: make module, want a failure with \"$reason\", got exit $rc:"
		echo "$out"
		ret=1
	elif find "$dir-module" -name '*.o' | grep -q .; then
		echo "FAIL: $name: make module compiled before refusing"
		ret=1
	else
		echo "PASS: $name: make module refused: $line"
	fi

	out=$(dkms_install "$name" "$dir-headers")
	rc=$?
	if [ "$rc" -eq 0 ] || ! grep -qxE "$reason" <<<"$out"; then
		echo "FAIL: $name: make dkms-install, want a failure with \"$reason\", got exit $rc:"
		echo "$out"
		ret=1
	elif [ -n "${DKMS_RC:-}" ] && ! grep -q "Error $DKMS_RC$" <<<"$out"; then
		echo "FAIL: $name: make dkms-install, want dkms to exit with $DKMS_RC:"
		echo "$out"
		ret=1
	elif find "$tmp/$name/dkms" -name '*.ko' | grep -q .; then
		echo "FAIL: $name: make dkms-install built a module"
		ret=1
	else
		echo "PASS: $name: make dkms-install refused: $(grep -xE "$reason" <<<"$out")"
	fi
}

# The unchanged copy: DKMS accepts the kernel and builds the module.
if ! copy_headers "$tmp/debian-headers"; then
	echo "FAIL: cannot copy $headers"
	exit 1
fi
mkdir -p "$tmp/debian/dkms" "$tmp/debian/src"
if out=$(make -C "$repo" --no-print-directory dkms-source \
	DKMS_SOURCE_TREE="$tmp/debian/src" 2>&1) &&
	out+=$(dkms --dkmstree "$tmp/debian/dkms" --sourcetree "$tmp/debian/src" \
		--kernelsourcedir "$tmp/debian-headers" --no-prepare-kernel \
		build "xt_connmark/$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' \
		"$repo/dkms.conf")" -k "$krel" 2>&1); then
	echo "PASS: the unchanged headers of $krel build with DKMS"
else
	echo "FAIL: the unchanged headers of $krel do not build with DKMS:"
	echo "$out"
	ret=1
fi

# DKMS before 3.0 (Debian 11's 2.8) has no BUILD_EXCLUSIVE_CONFIG: there
# kmod/Kbuild refuses that kernel too, and dkms fails as for any build.
if grep -q BUILD_EXCLUSIVE_CONFIG "$(command -v dkms)"; then
	no_ct_mark_rc=77
else
	no_ct_mark_rc=""
	echo "# $(dkms --version) has no BUILD_EXCLUSIVE_CONFIG: kmod/Kbuild refuses a kernel without CONFIG_NF_CONNTRACK_MARK"
fi
DKMS_RC=$no_ct_mark_rc check_refused no-ct-mark NF_CONNTRACK_MARK n \
	"xt_connmark: (this kernel lacks CONFIG_NF_CONNTRACK_MARK=y.*|not built for [^:]*: .*CONFIG_NF_CONNTRACK_MARK.*)"
check_refused connmark-builtin NETFILTER_XT_CONNMARK y \
	"xt_connmark: this kernel has CONNMARK built in \(CONFIG_NETFILTER_XT_CONNMARK=y\).*"

exit "$ret"
