#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Download one of Debian's kernels with its headers and unpack it, without
# installing anything, into .cache/kernels/<release>/root. The newest build
# of a series is found through Debian's meta-packages. Idempotent.
#
# Usage: fetch-kernel.sh SERIES [FLAVOUR]
#   SERIES   6.1, 6.12, or debug (shared/debug-kernel's packages)
#   FLAVOUR  amd64 (default), rt-amd64 or cloud-amd64
# Prints the kernel release, e.g. 6.1.0-56-amd64.

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
	[ -e "$cache/kernels/$krel/root/.complete" ] && return

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

# fetch_debug: the KASAN/lockdep/kmemleak/UBSAN build of 6.1 that the
# project keeps in shared/debug-kernel. Sets krel and deb_files.
fetch_debug()
{
	local dir=${XTCM_DEBUG_KERNEL_DIR:-$repo/../shared/debug-kernel}

	deb_files=("$dir"/linux-image-*.deb "$dir"/linux-headers-*.deb)
	if [ ! -f "${deb_files[0]}" ] || [ ! -f "${deb_files[1]}" ]; then
		die "no debug kernel packages in $dir"
	fi
	krel=$(dpkg-deb -f "${deb_files[0]}" Package) || die "bad ${deb_files[0]}"
	krel=${krel#linux-image-}
}

debs=$cache/debs
mkdir -p "$debs"
case $series in
6.1 | 6.12) fetch_debian "$series" "$flavour" ;;
debug) fetch_debug ;;
*) die "unknown series $series (want 6.1, 6.12 or debug)" ;;
esac
root=$cache/kernels/$krel/root

if [ ! -e "$root/.complete" ]; then
	rm -rf "$root"
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
	touch "$root/.complete"
fi
echo "$krel"
