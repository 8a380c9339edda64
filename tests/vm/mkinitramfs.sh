#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the small initramfs that mounts the host's root over virtio-9p with a
# tmpfs overlay on top, for a kernel unpacked by fetch-kernel.sh. Debian's
# kernels build 9p, virtio and overlayfs as modules, so the initramfs carries
# them, decompressed, with a static busybox: the kernel tree's own
# ([usr/]bin/busybox, fetch-kernel.sh puts it there for another
# architecture), else the host's.
#
# Usage: mkinitramfs.sh KERNEL_ROOT KERNEL_RELEASE OUTPUT

set -u
set -o pipefail

root=${1:?usage: mkinitramfs.sh KERNEL_ROOT KERNEL_RELEASE OUTPUT}
krel=${2:?}
output=${3:?}
here=$(cd "$(dirname "$0")" && pwd)
busybox=/bin/busybox
for own in "$root/bin/busybox" "$root/usr/bin/busybox"; do
	[ -f "$own" ] && busybox=$own
done

die()
{
	echo "mkinitramfs: $*" >&2
	exit 1
}

file "$busybox" | grep -q 'statically linked' ||
	die "$busybox is not static (apt-get install busybox-static)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys,lower,upper,newroot,modules}
cp "$busybox" "$work/bin/busybox"
cp "$here/initramfs-init" "$work/init"
chmod 755 "$work/init"

# Modules in dependency order; "builtin" lines need nothing.
n=0
for mod in virtio_pci 9pnet_virtio 9p overlay; do
	modprobe -d "$root" -S "$krel" --show-depends "$mod" ||
		die "$mod not found for $krel"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' |
while read -r ko; do
	n=$((n + 1))
	dest=$(printf '%s/modules/%02d-%s' "$work" "$n" "$(basename "${ko%.xz}")")
	case $ko in
	*.xz) xz -dc "$ko" >"$dest" ;;
	*.zst) zstd -qdc "$ko" >"$dest" ;;
	*) cp "$ko" "$dest" ;;
	esac
done

(cd "$work" && find . | cpio -o -H newc --quiet) | gzip -1 >"$output.tmp" &&
	mv "$output.tmp" "$output"
