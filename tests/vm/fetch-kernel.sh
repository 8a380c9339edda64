#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Download one of Debian's kernels with its headers and unpack it, without
# installing anything, into .cache/kernels/<release>/root. The newest build
# of a lane's series is found through its release's meta-packages, with the
# apt of the lane's root (tests/vm/lane.sh). Both of Debian's layouts:
# linux-image-<ver> with /boot/vmlinuz-<ver> and /lib/modules, and sid's
# split one (linux-image-<ver> a metapackage of linux-binary-<ver>, with
# /usr/lib/modules/<ver>/vmlinuz, and linux-modules-<ver>, .ko.xz); either
# way the unpacked tree has boot/vmlinuz-<ver> and lib/modules/<ver>.
# A kernel of another architecture (FLAVOUR arm64) comes through apt of
# that architecture (lane_foreign_apt); its tree also has that
# architecture's static busybox (bin/busybox, for the initramfs), and
# .cache/kernels/<release>/cross is the tree to cross-build modules in: the
# same headers with the host's linux-kbuild (fixdep, modpost) of the same
# version. Idempotent; one fetch at a time.
#
# Usage: fetch-kernel.sh LANE [FLAVOUR]
#   LANE     5.10, 6.1, 6.12, trixie, sid (tests/vm/lane.sh), or debug: the
#            KASAN/lockdep/kmemleak/UBSAN kernel, from the first of
#            XTCM_DEBUG_KERNEL_DIR, ../shared/debug-kernel and
#            .cache/debug-kernel (make debug-kernel) that has its
#            linux-image-*.deb and linux-headers-*.deb; or kcsan: the
#            KCSAN/lockdep/UBSAN kernel, from XTCM_KCSAN_KERNEL_DIR, else
#            .cache/kcsan-kernel (make kcsan-kernel)
#   FLAVOUR  amd64 (default), rt-amd64, cloud-amd64 or arm64
# Prints the kernel release, e.g. 6.1.0-56-amd64. Exits with 4 (a skip, its
# "SKIP:" line on stderr) when there is no debug (kcsan) kernel anywhere.

set -u
set -o pipefail

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lane.sh"

lane=${1:?usage: fetch-kernel.sh LANE [FLAVOUR]}
flavour=${2:-amd64}
repo=$LANE_REPO
cache=$repo/.cache

die()
{
	echo "fetch-kernel: $*" >&2
	exit 1
}

# kernel_apt CMD [ARG...]: apt-get or apt-cache (CMD) for the kernel's
# architecture: the lane's root's for the host's, else lane_foreign_apt
# (with foreign_apt_only's option).
kernel_apt()
{
	if [ -z "$cross" ]; then
		lane_run --user "$userland" "$@"
	else
		lane_foreign_apt $foreign_apt_only "$(lane_release "$lane")" \
			"$arch" "$@"
	fi
}

# kernel_download DIR PKG...: apt-get download of each PKG into DIR, for
# the kernel's architecture.
kernel_download()
{
	local dir=$1
	shift

	if [ -z "$cross" ]; then
		lane_download "$userland" "$dir" "$@"
	else
		(cd "$dir" && kernel_apt apt-get download "$@")
	fi
}

# depends_on PACKAGE PATTERN: the dependencies of PACKAGE matching PATTERN,
# one per line.
depends_on()
{
	kernel_apt apt-cache depends --no-recommends --no-suggests "$1" \
		2>/dev/null | sed -n "s/^ *|\?Depends: \($2\)$/\1/p"
}

# fetch_debian LANE FLAVOUR: find the newest build through the meta-package
# and download the image (with sid's binary, modules and base packages),
# the headers and what they include into $debs; fails when the download
# does. Sets krel and deb_files.
fetch_debian()
{
	local meta image deb fetched
	local -a pkgs

	meta=$(lane_kernel_meta "$1" "$2")
	image=$(depends_on "$meta" 'linux-image-[0-9].*' | head -n 1)
	if [ -z "$cross" ] && { [ -z "$image" ] || [ "$userland" != / ]; }; then
		# A fresh machine has no package lists yet; a lane's root
		# learns of the release's newest kernel.
		lane_run "$userland" apt-get update -qq >&2
		image=$(depends_on "$meta" 'linux-image-[0-9].*' | head -n 1)
	fi
	[ -n "$image" ] || die "cannot resolve $meta in $userland"
	krel=${image#linux-image-}
	krel=${krel%-unsigned}
	unpacked && return

	mapfile -t pkgs < <(depends_on "$image" "linux-\(binary\|modules\|base\)-$krel"
		depends_on "linux-headers-$krel" \
			'linux-headers-.*-common.*\|linux-kbuild-.*')
	pkgs=("$image" "linux-headers-$krel" "${pkgs[@]}")
	[ ${#pkgs[@]} -ge 4 ] ||
		die "cannot resolve the dependencies of $image and linux-headers-$krel"
	[ -n "$cross" ] && pkgs+=(busybox-static)
	# Into a directory of their own: exactly these files are unpacked,
	# whatever other releases' versions .cache/debs holds.
	fetched=$(mktemp -d "$debs/.fetch.XXXXXX") || die "cannot write to $debs"
	if ! kernel_download "$fetched" "${pkgs[@]}" >&2; then
		rm -rf "$fetched"
		return 1
	fi
	deb_files=()
	for deb in "$fetched"/*.deb; do
		mv "$deb" "$debs/" || die "cannot move $deb to $debs"
		deb_files+=("$debs/${deb##*/}")
	done
	rmdir "$fetched"
	[ ${#deb_files[@]} -eq "$(printf '%s\n' "${pkgs[@]}" | sort -u | wc -l)" ] ||
		die "apt-get download gave ${#deb_files[@]} packages for ${pkgs[*]}"
}

# fetch_host_kbuild: the host architecture's linux-kbuild of the version
# of the kernel's own (from deb_files), for the cross tree. Sets kbuild_deb.
fetch_host_kbuild()
{
	local deb pkg version

	for deb in "${deb_files[@]}"; do
		[[ ${deb##*/} == linux-kbuild-* ]] && break
	done
	[[ ${deb##*/} == linux-kbuild-* ]] || die "no linux-kbuild package for $krel"
	pkg=$(dpkg-deb -f "$deb" Package) || die "bad $deb"
	version=$(dpkg-deb -f "$deb" Version) || die "bad $deb"
	kbuild_deb="$debs/${pkg}_${version//:/%3a}_$(dpkg --print-architecture).deb"
	[ -f "$kbuild_deb" ] && return
	lane_download "$userland" "$debs" "$pkg=$version" >&2
	[ -f "$kbuild_deb" ] ||
		die "cannot download $pkg=$version for $(dpkg --print-architecture)"
}

# newest_deb DIR PACKAGE_PREFIX: the .deb of DIR whose name starts with
# PACKAGE_PREFIX (e.g. linux-image-) and has the highest version; debug
# symbol packages (-dbg) do not count.
newest_deb()
{
	local f

	for f in "$1/$2"*.deb; do
		[ -f "$f" ] && [[ $f != *-dbg_* ]] && echo "$f"
	done | sort -V | tail -n 1
}

# fetch_built LANE: a kernel built from Debian 12's linux-source-6.1 by
# tests/vm/build-debug-kernel.sh. debug, the KASAN/lockdep/kmemleak/UBSAN
# build: from XTCM_DEBUG_KERNEL_DIR when set (then it must have one), else
# the first of ../shared/debug-kernel and make debug-kernel's; kcsan, the
# KCSAN/lockdep/UBSAN build: from XTCM_KCSAN_KERNEL_DIR when set, else make
# kcsan-kernel's. Sets krel, deb_files and stamp (the packages' names,
# sizes and times: the same release can come from either place).
fetch_built()
{
	local dir image="" headers override how
	local -a dirs

	if [ "$1" = debug ]; then
		override=${XTCM_DEBUG_KERNEL_DIR:-}
		dirs=("$repo/../shared/debug-kernel" "$cache/debug-kernel")
		how="\"make debug-kernel\" builds one into .cache/debug-kernel (about 20 minutes), or set XTCM_DEBUG_KERNEL_DIR"
	else
		override=${XTCM_KCSAN_KERNEL_DIR:-}
		dirs=("$cache/kcsan-kernel")
		how="\"make kcsan-kernel\" builds one into .cache/kcsan-kernel (about an hour), or set XTCM_KCSAN_KERNEL_DIR"
	fi
	[ -n "$override" ] && dirs=("$override")
	for dir in "${dirs[@]}"; do
		image=$(newest_deb "$dir" linux-image-)
		[ -n "$image" ] && break
	done
	if [ -z "$image" ]; then
		[ -n "$override" ] &&
			die "no linux-image-*.deb in $dir"
		echo "SKIP: no $1 kernel: $how to a folder with its" \
			"linux-image-*.deb and linux-headers-*.deb" >&2
		exit 4
	fi
	krel=$(dpkg-deb -f "$image" Package) || die "bad $image"
	krel=${krel#linux-image-}
	headers=$(newest_deb "$dir" "linux-headers-${krel}_")
	[ -n "$headers" ] || die "no linux-headers-${krel}_*.deb in $dir"
	deb_files=("$image" "$headers")
	stamp=$(stat -L -c '%n %s %Y' "${deb_files[@]}") ||
		die "cannot read $image and $headers"
	echo "fetch-kernel: $1 kernel $krel from $dir" >&2
}

# prepare_headers TREE: the unpacked headers of krel in TREE made to build
# there. Debian's flavour Makefile includes the common headers by absolute
# path (from 7.x it also sets KBUILD_OUTPUT to its own); a plain kernel.org
# build tree has no such line. From 6.16 C=1 asks scripts/checker-valid.sh
# whether sparse works, and Debian's headers lack it (7.2.13): without it
# C=1 is silently off. Ours answers as that script does: 1 when the
# checker runs.
prepare_headers()
{
	local makefile=$1/usr/src/linux-headers-$krel/Makefile common

	sed -i "s#^\(include \|KBUILD_OUTPUT=\)/usr/src/#\1$1/usr/src/#" \
		"$makefile" || die "no $makefile"
	common=$(sed -n "s#^include \(/.*\)/Makefile\$#\1#p" "$makefile")
	if [ -n "$common" ] && grep -q checker-valid.sh "$common/Makefile" &&
		[ ! -e "$common/scripts/checker-valid.sh" ]; then
		printf '%s\n' '#!/bin/sh' \
			'# tests/vm/fetch-kernel.sh: Debian'"'"'s headers lack it' \
			'echo "int x;" | "$@" - >/dev/null 2>&1 && echo 1' \
			>"$common/scripts/checker-valid.sh"
		chmod 755 "$common/scripts/checker-valid.sh"
	fi
}

# unpacked: the kernel of krel is unpacked (with its cross tree when
# cross), from the packages of stamp, at this path: prepare_headers wrote
# the tree's absolute path into its Makefiles, so a moved cache is stale.
unpacked()
{
	local complete=$cache/kernels/$krel/.complete

	[ -e "$complete" ] && [ "$(cat "$complete")" = "$cache: $stamp" ]
}

debs=$cache/debs
# Debian's packages are known by their names ("" in .complete).
stamp=""
mkdir -p "$debs"
# One at a time: lanes and roots of several releases fetch the same kernel.
exec 9>"$cache/.fetch-kernel.lock"
flock 9
userland=$(lane_build_root "$lane") ||
	die "unknown lane $lane (want 5.10, 6.1, 6.12, trixie, sid, arm64, debug or kcsan)"
arch=${flavour##*-}
cross=""
[ "$arch" = "$(dpkg --print-architecture)" ] || cross=yes
foreign_apt_only=""
case $lane in
debug | kcsan) fetch_built "$lane" ;;
*)
	# An archive may list a foreign architecture's security updates and
	# not serve them (here: bullseye-security's arm64 pool): then the
	# release's newest build in its main archive.
	if ! fetch_debian "$lane" "$flavour"; then
		[ -n "$cross" ] || die "apt-get download failed"
		echo "fetch-kernel: retrying with $(lane_release "$lane")'s main archive alone" >&2
		foreign_apt_only=--main-only
		fetch_debian "$lane" "$flavour" || die "apt-get download failed"
	fi
	;;
esac
root=$cache/kernels/$krel/root

if ! unpacked; then
	# The initramfs too: run-vm.sh makes it again from the new modules.
	rm -rf "${cache:?}/kernels/$krel"
	mkdir -p "$root"
	for deb in "${deb_files[@]}"; do
		dpkg -x "$deb" "$root" || die "cannot unpack $deb"
	done
	# sid's layout: the image and the modules under /usr/lib/modules.
	if [ ! -e "$root/lib" ] && [ -d "$root/usr/lib/modules" ]; then
		ln -s usr/lib "$root/lib"
	fi
	if [ ! -e "$root/boot/vmlinuz-$krel" ] &&
		[ -f "$root/lib/modules/$krel/vmlinuz" ]; then
		mkdir -p "$root/boot"
		ln -s "../lib/modules/$krel/vmlinuz" "$root/boot/vmlinuz-$krel"
	fi

	if [ -n "$cross" ]; then
		fetch_host_kbuild
		if ! mkdir -p "$cache/kernels/$krel/cross/usr" ||
			! cp -al "$root/usr/src" "$cache/kernels/$krel/cross/usr/" ||
			! dpkg -x "$kbuild_deb" "$cache/kernels/$krel/cross"; then
			die "cannot make the cross tree of $krel"
		fi
		prepare_headers "$cache/kernels/$krel/cross"
	fi
	prepare_headers "$root"
	[ -d "$root/lib/modules/$krel" ] || die "no modules for $krel"
	depmod -b "$root" "$krel" || die "depmod failed"
	printf '%s: %s' "$cache" "$stamp" >"$cache/kernels/$krel/.complete"
fi
echo "$krel"
