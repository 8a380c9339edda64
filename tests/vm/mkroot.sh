#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Make the userland root of a test lane (tests/vm/lane.sh) with debootstrap:
# .cache/roots/<release>[-<arch>], with that release's iptables, nftables,
# conntrack, iproute2, DKMS, compiler and everything the tests run, as a
# router of that release has them. The guest boots on it; on the host's
# architecture the module and the plugins are built inside it, with the
# cross compiler for arm64 too. An arm64 root is made without running arm64
# code natively: debootstrap's first stage, then its second stage with
# qemu-user-static (binfmt_misc); its packages are the release's as
# debootstrap takes them, from the main archive alone.
# Idempotent: made again only when the package list or the apt sources
# change (their digest is kept in the root). The machine's own apt sources
# are never touched.
#
# Usage: mkroot.sh RELEASE [ARCH]   (bullseye, trixie or sid; bookworm for
#                                    another ARCH than the host's)
# Environment: XTCM_MIRROR, XTCM_SECURITY_MIRROR (Debian's archive and its
# security archive, default deb.debian.org's)
# Prints the root's path.

set -u
set -o pipefail

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lane.sh"

release=${1:?usage: mkroot.sh RELEASE [ARCH]}
arch=${2:-$(dpkg --print-architecture)}
root=$(release_root "$release" "$arch")
stamp_file=$root/.xtcm-root

die()
{
	echo "mkroot: $*" >&2
	exit 1
}

packages=(
	# the module (built here, and by DKMS in the guest) and the plugins
	build-essential make pkg-config libxtables-dev sparse dwarves kmod
	# dkms, and openssl (a Recommends of dkms) with which it signs what it
	# builds
	dkms openssl
	# what the tests run
	iptables nftables conntrack iproute2 socat iputils-ping procps psmisc
	python3 curl python3-pyftpdlib conntrackd keepalived util-linux
	xz-utils zstd file man-db
	# the Debian packages (make deb)
	dpkg-dev debhelper fakeroot
)
case $release in
bullseye | bookworm) ;;
*) packages+=(dh-dkms) ;;
esac
foreign=""
if [ "$arch" = "$(dpkg --print-architecture)" ]; then
	# the arm64 cross builds of the module (lane_tree, tests/run.sh)
	packages+=(gcc-aarch64-linux-gnu)
else
	foreign=yes
fi
if [ "$root" = / ] || ! sources=$(lane_sources "$release"); then
	die "no root for release $release on $arch (want bullseye, trixie or sid; bookworm on arm64)"
fi

stamp=$(printf '%s\n' "$arch" "$sources" "${packages[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
	echo "$root"
	exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
command -v debootstrap >/dev/null ||
	die "no debootstrap (tests/deps.sh installs it)"

# configure: what every root has before its packages are configured.
configure()
{
	printf '%s\n' "$sources" |
		"${sudo[@]}" tee "$root/etc/apt/sources.list" >/dev/null
	# The archive may serve a Release file past its Valid-Until (sid's is
	# refreshed daily upstream, not always on the mirror).
	echo 'Acquire::Check-Valid-Until "false";' |
		"${sudo[@]}" tee "$root/etc/apt/apt.conf.d/90xtcm-valid-until" >/dev/null
	# No daemon starts while packages install (conntrackd, keepalived).
	printf '#!/bin/sh\nexit 101\n' |
		"${sudo[@]}" tee "$root/usr/sbin/policy-rc.d" >/dev/null
	"${sudo[@]}" chmod 755 "$root/usr/sbin/policy-rc.d"
	# dpkg's fsync of every file costs time (most under qemu-user-static),
	# and a root is made again, never repaired, after a crash.
	echo force-unsafe-io |
		"${sudo[@]}" tee "$root/etc/dpkg/dpkg.cfg.d/90xtcm-unsafe-io" >/dev/null
}

# second_stage: debootstrap's second stage in the root, its arm64 programs
# run by qemu-user-static through binfmt_misc. The handler is registered
# only for this (with F: qemu is opened now, not looked up in the root) and
# removed again if it was not there before.
second_stage()
{
	local binfmt=/proc/sys/fs/binfmt_misc name rc=0 registered=""

	name=qemu-$(dpkg-architecture -a"$arch" -qDEB_HOST_GNU_CPU 2>/dev/null)
	if [ ! -e "$binfmt/$name" ]; then
		[ -f "/usr/lib/binfmt.d/$name.conf" ] ||
			die "no /usr/lib/binfmt.d/$name.conf (tests/deps.sh installs qemu-user-static)"
		if ! mountpoint -q "$binfmt"; then
			"${sudo[@]}" mount -t binfmt_misc binfmt_misc "$binfmt" ||
				die "cannot mount binfmt_misc on $binfmt"
		fi
		sed 's/:[A-Z]*$/:OPF/' "/usr/lib/binfmt.d/$name.conf" |
			"${sudo[@]}" tee "$binfmt/register" >/dev/null ||
			die "cannot register $name with binfmt_misc"
		registered=yes
	fi
	echo "mkroot: debootstrap's second stage under $name" >&2
	"${sudo[@]}" chroot "$root" /debootstrap/debootstrap --second-stage \
		>>"$root.log" 2>&1 || rc=$?
	[ -n "$registered" ] && echo -1 | "${sudo[@]}" tee "$binfmt/$name" >/dev/null
	return "$rc"
}

"${sudo[@]}" rm -rf "$root"
mkdir -p "$(dirname "$root")"
echo "mkroot: debootstrap $release $arch into $root" >&2
if [ -n "$foreign" ]; then
	"${sudo[@]}" debootstrap --variant=minbase --foreign --arch="$arch" \
		--include="$(IFS=,; echo "${packages[*]}")" "$release" "$root" \
		"${XTCM_MIRROR:-http://deb.debian.org/debian}" >"$root.log" 2>&1 ||
		die "debootstrap failed, see $root.log"
	configure
	second_stage || die "debootstrap's second stage failed"
else
	"${sudo[@]}" debootstrap --variant=minbase "$release" "$root" \
		"${XTCM_MIRROR:-http://deb.debian.org/debian}" >"$root.log" 2>&1 ||
		die "debootstrap failed, see $root.log"
	configure
	if ! lane_run "$root" sh -c 'apt-get update -qq &&
		apt-get dist-upgrade -y -qq &&
		apt-get install -y -qq --no-install-recommends "$@" &&
		apt-get clean' install "${packages[@]}" >>"$root.log" 2>&1; then
		die "installing the packages failed, see $root.log"
	fi
fi
echo "$stamp" | "${sudo[@]}" tee "$stamp_file" >/dev/null
echo "$root"
