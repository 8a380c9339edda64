#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Download one of Debian's kernels with its headers and unpack it, without
# installing anything, into .cache/kernels/<release>/root. The newest build
# of a series is found through Debian's meta-packages. Idempotent.
#
# Usage: fetch-kernel.sh SERIES [FLAVOUR]
#   SERIES   6.1 or 6.12
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

case $series in
6.1) meta=linux-image-$flavour ;;
6.12) meta=linux-image-6.12-$flavour ;;
*) die "unknown series $series (want 6.1 or 6.12)" ;;
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
root=$cache/kernels/$krel/root

if [ ! -e "$root/.complete" ]; then
	headers=linux-headers-$krel
	common=$(depends_on "$headers" 'linux-headers-.*-common.*')
	kbuild=$(depends_on "$headers" 'linux-kbuild-.*')
	if [ -z "$common" ] || [ -z "$kbuild" ]; then
		die "cannot resolve the dependencies of $headers"
	fi

	debs=$cache/debs
	mkdir -p "$debs"
	(cd "$debs" && apt-get download "$image" "$headers" "$common" \
		"$kbuild" >&2) || die "apt-get download failed"

	rm -rf "$root"
	mkdir -p "$root"
	for pkg in "$image" "$headers" "$common" "$kbuild"; do
		dpkg -x "$debs/${pkg}_"*.deb "$root" || die "cannot unpack $pkg"
	done

	# The flavour's Makefile includes the common headers by absolute path.
	sed -i "s#^include /usr/src/#include $root/usr/src/#" \
		"$root/usr/src/linux-headers-$krel/Makefile"
	[ -d "$root/lib/modules/$krel" ] || die "no modules in $image"
	depmod -b "$root" "$krel" || die "depmod failed"
	touch "$root/.complete"
fi
echo "$krel"
