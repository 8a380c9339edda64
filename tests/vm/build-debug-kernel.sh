#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the debug lane's kernel (make debug-kernel) from Debian 12's
# linux-source-6.1, as ../shared/debug-kernel's was made: x86_64_defconfig,
# kvm_guest.config, tests/vm/debug-kernel.config merged in (KASAN, lockdep,
# kmemleak, UBSAN and what the tests need), olddefconfig, make bindeb-pkg.
# Installs what the build needs first (once), builds under nice in
# .cache/debug-kernel-build/ and leaves
#   .cache/debug-kernel/linux-image-<release>_<release>-xtcm1_amd64.deb
#   .cache/debug-kernel/linux-headers-<release>_<release>-xtcm1_amd64.deb
# where tests/vm/fetch-kernel.sh finds them (after XTCM_DEBUG_KERNEL_DIR and
# ../shared/debug-kernel). The release comes from linux-source-6.1 (e.g.
# 6.1.192). Idempotent: nothing is built when the packages of this
# linux-source and this fragment are there. Took 18 minutes on 2 cores.
#
# Usage: build-debug-kernel.sh
# Environment: XTCM_DEBUG_BUILD_JOBS (make -j, default nproc),
# XTCM_DEBUG_NICE (default 19).

set -u
set -o pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
fragment=$repo/tests/vm/debug-kernel.config
out=$repo/.cache/debug-kernel
work=$repo/.cache/debug-kernel-build
tree=$work/linux-source-6.1
log=$work/build.log
tarball=/usr/src/linux-source-6.1.tar.xz
jobs=${XTCM_DEBUG_BUILD_JOBS:-$(nproc)}
niceness=${XTCM_DEBUG_NICE:-19}
# Ours, unlike ../shared/debug-kernel's "-ceo1".
pkg_suffix=xtcm1

packages=(
	linux-source-6.1 build-essential bc bison flex libssl-dev libelf-dev
	rsync kmod cpio xz-utils fakeroot dpkg-dev
)

die()
{
	echo "debug-kernel: $*" >&2
	exit 1
}

# install_deps: the packages the build needs, once.
install_deps()
{
	local pkg sudo=()
	local -a missing=()

	for pkg in "${packages[@]}"; do
		dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	echo "debug-kernel: installing ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install \
			-y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# kmake ARGS...: make in the tree, niced, into the log.
kmake()
{
	nice -n "$niceness" make -C "$tree" -j"$jobs" LOCALVERSION= "$@" \
		>>"$log" 2>&1
}

# The options the debug lane stands on: ours must be able to replace a
# modular CONNMARK, and the bug finders must be there.
essential=(
	CONFIG_NF_CONNTRACK_MARK=y CONFIG_NETFILTER_XT_CONNMARK=m
	CONFIG_KASAN=y CONFIG_KASAN_INLINE=y CONFIG_PROVE_LOCKING=y
	CONFIG_DEBUG_KMEMLEAK=y CONFIG_UBSAN=y CONFIG_UBSAN_SHIFT=y
	CONFIG_DEBUG_LIST=y CONFIG_9P_FS=y CONFIG_OVERLAY_FS=y
)

# check_config: say which lines of the fragment the final .config does not
# have (6.1 has no NFT_COUNTER, and NETFILTER_NETLINK is only selected:
# both stay as in ../shared/debug-kernel's debug.config); fail when one of
# them is essential.
check_config()
{
	local line name want ret=0
	local -a missed=()

	while IFS= read -r line; do
		[[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]] || continue
		name=${BASH_REMATCH[1]}
		want=${BASH_REMATCH[2]}
		if [ "$want" = n ]; then
			if grep -q "^$name=" "$tree/.config"; then
				missed+=("$name=n")
			fi
		elif ! grep -qxF "$name=$want" "$tree/.config"; then
			missed+=("$name=$want")
		fi
	done <"$fragment"
	[ ${#missed[@]} -eq 0 ] ||
		echo "debug-kernel: not in the final .config: ${missed[*]}"
	for line in "${essential[@]}"; do
		if ! grep -qxF "$line" "$tree/.config"; then
			echo "debug-kernel: the debug lane needs $line" >&2
			ret=1
		fi
	done
	return "$ret"
}

install_deps || die "cannot install ${packages[*]}"
[ -f "$tarball" ] || die "no $tarball (apt-get install linux-source-6.1)"

# What the packages are made of: the source package and the fragment.
stamp="linux-source-6.1 $(dpkg-query -W -f '${Version}' linux-source-6.1)"
stamp+=" $(sha256sum <"$fragment" | cut -d' ' -f1)"
if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ] &&
	ls "$out"/linux-image-*.deb "$out"/linux-headers-*.deb >/dev/null 2>&1; then
	echo "debug-kernel: up to date in $out ($stamp)"
	ls "$out"/linux-*.deb
	exit 0
fi

mkdir -p "$work" "$out"
: >"$log"
echo "debug-kernel: building in $work (log: $log)"
# A tree of another linux-source version is replaced; one of this version
# is reused, so an interrupted build continues.
source_version=$(dpkg-query -W -f '${Version}' linux-source-6.1)
if [ "$(cat "$work/.source" 2>/dev/null)" != "$source_version" ]; then
	rm -rf "$tree" "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes
	echo "debug-kernel: unpacking $tarball"
	nice -n "$niceness" tar -xJf "$tarball" -C "$work" ||
		die "cannot unpack $tarball"
	echo "$source_version" >"$work/.source"
fi

kmake x86_64_defconfig || die "make x86_64_defconfig failed (see $log)"
kmake kvm_guest.config || die "make kvm_guest.config failed (see $log)"
(cd "$tree" && scripts/kconfig/merge_config.sh -m .config "$fragment") \
	>>"$log" 2>&1 || die "merge_config.sh failed (see $log)"
kmake olddefconfig || die "make olddefconfig failed (see $log)"
check_config || die "the fragment does not apply to linux-source-6.1 $source_version"
release=$(make -s -C "$tree" LOCALVERSION= kernelrelease) ||
	die "cannot read the kernel release of $tree"
version=$release-$pkg_suffix
echo "debug-kernel: Linux $release (linux-source-6.1 $source_version), packages $version"

rm -f "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes
echo "debug-kernel: make bindeb-pkg -j$jobs under nice -n $niceness"
kmake bindeb-pkg KDEB_PKGVERSION="$version" ||
	die "make bindeb-pkg failed (see the end of $log)"

image=$work/linux-image-${release}_${version}_amd64.deb
headers=$work/linux-headers-${release}_${version}_amd64.deb
if [ ! -f "$image" ] || [ ! -f "$headers" ]; then
	die "bindeb-pkg made no $(basename "$image") and $(basename "$headers")"
fi
rm -f "$out"/linux-*.deb "$out/.stamp"
cp "$image" "$headers" "$out/" || die "cannot copy the packages to $out"
echo "$stamp" >"$out/.stamp"
echo "debug-kernel: built"
ls "$out"/linux-*.deb
