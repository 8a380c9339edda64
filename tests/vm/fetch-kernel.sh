#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Download one of Debian's kernels with its headers and unpack it, without
# installing anything, into .cache/kernels/<release>/root. The newest build
# of a series is found through Debian's meta-packages. Idempotent.
#
# Usage: fetch-kernel.sh SERIES [FLAVOUR]
#   SERIES   6.1, 6.12, or debug: the KASAN/lockdep/kmemleak/UBSAN kernel,
#            from the first of XTCM_DEBUG_KERNEL_DIR, ../shared/debug-kernel
#            and .cache/debug-kernel (make debug-kernel) that has its
#            linux-image-*.deb and linux-headers-*.deb
#   FLAVOUR  amd64 (default), rt-amd64 or cloud-amd64
# Prints the kernel release, e.g. 6.1.0-56-amd64. Exits with 4 (a skip, its
# "SKIP:" line on stderr) when there is no debug kernel anywhere.

set -u
set -o pipefail

series=${1:?usage: fetch-kernel.sh SERIES [FLAVOUR]}
flavour=${2:-amd64}
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=$repo/.cache

die()
{
	echo "fetch-kernel: $*" >&2
	exit 1
}

# depends_on PACKAGE PATTERN: the first dependency of PACKAGE matching PATTERN.
depends_on()
{
	apt-cache depends --no-recommends --no-suggests "$1" 2>/dev/null |
		sed -n "s/^ *|\?Depends: \($2\)$/\1/p" | head -n 1
}

# fetch_debian SERIES FLAVOUR: find the newest build through the meta-package
# and download the image, the headers and what they include into $debs.
# Sets krel and deb_files.
fetch_debian()
{
	local meta image headers common kbuild pkg

	case $1 in
	6.1) meta=linux-image-$2 ;;
	6.12) meta=linux-image-6.12-$2 ;;
	esac
	image=$(depends_on "$meta" 'linux-image-[0-9].*')
	if [ -z "$image" ]; then
		# A fresh machine has no package lists yet.
		apt-get update -qq >&2
		image=$(depends_on "$meta" 'linux-image-[0-9].*')
	fi
	[ -n "$image" ] || die "cannot resolve $meta"
	krel=${image#linux-image-}
	krel=${krel%-unsigned}
	unpacked && return

	headers=linux-headers-$krel
	common=$(depends_on "$headers" 'linux-headers-.*-common.*')
	kbuild=$(depends_on "$headers" 'linux-kbuild-.*')
	if [ -z "$common" ] || [ -z "$kbuild" ]; then
		die "cannot resolve the dependencies of $headers"
	fi
	(cd "$debs" && apt-get download "$image" "$headers" "$common" \
		"$kbuild" >&2) || die "apt-get download failed"
	deb_files=()
	for pkg in "$image" "$headers" "$common" "$kbuild"; do
		deb_files+=("$debs/${pkg}_"*.deb)
	done
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

# fetch_debug: the KASAN/lockdep/kmemleak/UBSAN build of 6.1: from
# XTCM_DEBUG_KERNEL_DIR when set (then it must have one), else the first of
# ../shared/debug-kernel and the project's own build (make debug-kernel).
# Sets krel, deb_files and stamp (the packages' names, sizes and times: the
# same release can come from either place).
fetch_debug()
{
	local dir image="" headers
	local -a dirs=("$repo/../shared/debug-kernel" "$cache/debug-kernel")

	[ -n "${XTCM_DEBUG_KERNEL_DIR:-}" ] && dirs=("$XTCM_DEBUG_KERNEL_DIR")
	for dir in "${dirs[@]}"; do
		image=$(newest_deb "$dir" linux-image-)
		[ -n "$image" ] && break
	done
	if [ -z "$image" ]; then
		[ -n "${XTCM_DEBUG_KERNEL_DIR:-}" ] &&
			die "no linux-image-*.deb in XTCM_DEBUG_KERNEL_DIR=$dir"
		echo "SKIP: no debug kernel: \"make debug-kernel\" builds one" \
			"into .cache/debug-kernel (hours), or set" \
			"XTCM_DEBUG_KERNEL_DIR to a folder with its" \
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
	echo "fetch-kernel: debug kernel $krel from $dir" >&2
}

# unpacked: the kernel of krel is unpacked, from the packages of stamp.
unpacked()
{
	local complete=$cache/kernels/$krel/root/.complete

	[ -e "$complete" ] && [ "$(cat "$complete")" = "$stamp" ]
}

debs=$cache/debs
# Debian's packages are known by their names ("" in .complete).
stamp=""
mkdir -p "$debs"
case $series in
6.1 | 6.12) fetch_debian "$series" "$flavour" ;;
debug) fetch_debug ;;
*) die "unknown series $series (want 6.1, 6.12 or debug)" ;;
esac
root=$cache/kernels/$krel/root

if ! unpacked; then
	# The initramfs too: run-vm.sh makes it again from the new modules.
	rm -rf "${cache:?}/kernels/$krel"
	mkdir -p "$root"
	for deb in "${deb_files[@]}"; do
		dpkg -x "$deb" "$root" || die "cannot unpack $deb"
	done

	# Debian's flavour Makefile includes the common headers by absolute
	# path; a plain kernel.org build tree has no such line.
	sed -i "s#^include /usr/src/#include $root/usr/src/#" \
		"$root/usr/src/linux-headers-$krel/Makefile"
	[ -d "$root/lib/modules/$krel" ] || die "no modules for $krel"
	depmod -b "$root" "$krel" || die "depmod failed"
	printf '%s' "$stamp" >"$root/.complete"
fi
echo "$krel"
