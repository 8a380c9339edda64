#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build a debug lane's kernel from Debian 12's linux-source-6.1:
#   kasan (make debug-kernel): as ../shared/debug-kernel's was made:
#         x86_64_defconfig, kvm_guest.config, tests/vm/debug-kernel.config
#         merged in (KASAN, lockdep, kmemleak, UBSAN and what the tests
#         need), olddefconfig, make bindeb-pkg;
#   kcsan (make kcsan-kernel): the same with tests/vm/kcsan-kernel.config
#         merged after it (KCSAN in place of KASAN and kmemleak), release
#         <version>-kcsan.
# Installs what the build needs first (once), builds under nice in
# .cache/<flavour>-kernel-build/ and leaves
#   .cache/<flavour>-kernel/linux-image-<release>_<release>-xtcm1_amd64.deb
#   .cache/<flavour>-kernel/linux-headers-<release>_<release>-xtcm1_amd64.deb
# (flavour kasan: .cache/debug-kernel) where tests/vm/fetch-kernel.sh finds
# them. The version comes from linux-source-6.1 (e.g. 6.1.192).
# Idempotent: nothing is built when the packages of this linux-source and
# these fragments are there. Took 18 minutes on 2 cores.
#
# Usage: build-debug-kernel.sh [kasan | kcsan]   (default kasan)
# Environment: XTCM_DEBUG_BUILD_JOBS (make -j, default nproc),
# XTCM_DEBUG_NICE (default 19).

set -u
set -o pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
flavour=${1:-kasan}
fragments=("$repo/tests/vm/debug-kernel.config")
case $flavour in
kasan)
	name=debug
	localversion=""
	# The options the lane stands on: ours must be able to replace a
	# modular CONNMARK, and the bug finders must be there.
	essential=(
		CONFIG_KASAN=y CONFIG_KASAN_INLINE=y CONFIG_DEBUG_KMEMLEAK=y
	)
	;;
kcsan)
	name=kcsan
	localversion=-kcsan
	fragments+=("$repo/tests/vm/kcsan-kernel.config")
	essential=(CONFIG_KCSAN=y CONFIG_KCSAN_STRICT=y)
	;;
*)
	echo "usage: build-debug-kernel.sh [kasan | kcsan]" >&2
	exit 2
	;;
esac
essential+=(
	CONFIG_NF_CONNTRACK_MARK=y CONFIG_NETFILTER_XT_CONNMARK=m
	CONFIG_PROVE_LOCKING=y CONFIG_UBSAN=y CONFIG_UBSAN_SHIFT=y
	CONFIG_DEBUG_LIST=y CONFIG_9P_FS=y CONFIG_OVERLAY_FS=y
)
out=$repo/.cache/$name-kernel
work=$repo/.cache/$name-kernel-build
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
	echo "$name-kernel: $*" >&2
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
	echo "$name-kernel: installing ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install \
			-y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# kmake ARGS...: make in the tree, niced, into the log.
kmake()
{
	nice -n "$niceness" make -C "$tree" -j"$jobs" \
		LOCALVERSION="$localversion" "$@" \
		>>"$log" 2>&1
}

# check_config: say which settings of the fragments (the last one of a
# name wins) the final .config does not have (6.1 has no NFT_COUNTER, and
# NETFILTER_NETLINK is only selected: both stay as in
# ../shared/debug-kernel's debug.config); fail when one of them is
# essential.
check_config()
{
	local line opt ret=0
	local -A want=()
	local -a missed=()

	while IFS= read -r line; do
		[[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]] || continue
		want[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
	done < <(cat "${fragments[@]}")
	for opt in "${!want[@]}"; do
		if [ "${want[$opt]}" = n ]; then
			if grep -q "^$opt=" "$tree/.config"; then
				missed+=("$opt=n")
			fi
		elif ! grep -qxF "$opt=${want[$opt]}" "$tree/.config"; then
			missed+=("$opt=${want[$opt]}")
		fi
	done
	[ ${#missed[@]} -eq 0 ] ||
		echo "$name-kernel: not in the final .config: ${missed[*]}"
	for line in "${essential[@]}"; do
		if ! grep -qxF "$line" "$tree/.config"; then
			echo "$name-kernel: the $flavour lane needs $line" >&2
			ret=1
		fi
	done
	return "$ret"
}

install_deps || die "cannot install ${packages[*]}"
[ -f "$tarball" ] || die "no $tarball (apt-get install linux-source-6.1)"

# What the packages are made of: the source package and the fragments.
stamp="linux-source-6.1 $(dpkg-query -W -f '${Version}' linux-source-6.1)"
stamp+=" $(cat "${fragments[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ] &&
	ls "$out"/linux-image-*.deb "$out"/linux-headers-*.deb >/dev/null 2>&1; then
	echo "$name-kernel: up to date in $out ($stamp)"
	ls "$out"/linux-*.deb
	exit 0
fi

mkdir -p "$work" "$out"
: >"$log"
echo "$name-kernel: building in $work (log: $log)"
# A tree of another linux-source version is replaced; one of this version
# is reused, so an interrupted build continues.
source_version=$(dpkg-query -W -f '${Version}' linux-source-6.1)
if [ "$(cat "$work/.source" 2>/dev/null)" != "$source_version" ]; then
	rm -rf "$tree" "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes
	echo "$name-kernel: unpacking $tarball"
	nice -n "$niceness" tar -xJf "$tarball" -C "$work" ||
		die "cannot unpack $tarball"
	echo "$source_version" >"$work/.source"
fi

kmake x86_64_defconfig || die "make x86_64_defconfig failed (see $log)"
kmake kvm_guest.config || die "make kvm_guest.config failed (see $log)"
(cd "$tree" && scripts/kconfig/merge_config.sh -m .config "${fragments[@]}") \
	>>"$log" 2>&1 || die "merge_config.sh failed (see $log)"
kmake olddefconfig || die "make olddefconfig failed (see $log)"
check_config || die "the fragments do not apply to linux-source-6.1 $source_version"
release=$(make -s -C "$tree" LOCALVERSION="$localversion" kernelrelease) ||
	die "cannot read the kernel release of $tree"
version=$release-$pkg_suffix
echo "$name-kernel: Linux $release (linux-source-6.1 $source_version), packages $version"

rm -f "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes
echo "$name-kernel: make bindeb-pkg -j$jobs under nice -n $niceness"
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
echo "$name-kernel: built"
ls "$out"/linux-*.deb
