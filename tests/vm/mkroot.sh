#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Make the userland root of a test lane (tests/vm/lane.sh) with debootstrap:
# .cache/roots/<release>, with that release's iptables, nftables, conntrack,
# iproute2, DKMS, compiler and everything the tests run, as a router of that
# release has them. The guest boots on it; the module and the plugins are
# built inside it. Idempotent: made again only when the package list or the
# apt sources below change (their digest is kept in the root). The machine's
# own apt sources are never touched.
#
# Usage: mkroot.sh RELEASE   (bullseye, trixie or sid)
# Environment: XTCM_MIRROR, XTCM_SECURITY_MIRROR (Debian's archive and its
# security archive, default deb.debian.org's)
# Prints the root's path.

set -u
set -o pipefail

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lane.sh"

release=${1:?usage: mkroot.sh RELEASE}
root=$LANE_REPO/.cache/roots/$release
mirror=${XTCM_MIRROR:-http://deb.debian.org/debian}
security=${XTCM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
stamp_file=$root/.xtcm-root

die()
{
	echo "mkroot: $*" >&2
	exit 1
}

packages=(
	# the module (built here, and by DKMS in the guest) and the plugins
	build-essential make pkg-config libxtables-dev sparse dwarves kmod
	dkms
	# what the tests run
	iptables nftables conntrack iproute2 socat iputils-ping procps psmisc
	python3 curl python3-pyftpdlib conntrackd keepalived util-linux
	xz-utils zstd file man-db
	# the Debian packages (make deb)
	dpkg-dev debhelper fakeroot
)

case $release in
bullseye)
	sources="deb $mirror bullseye main
deb $mirror bullseye-updates main
deb $security bullseye-security main"
	;;
trixie)
	sources="deb $mirror trixie main
deb $mirror trixie-updates main
deb $security trixie-security main"
	packages+=(dh-dkms)
	;;
sid)
	sources="deb $mirror sid main"
	packages+=(dh-dkms)
	;;
*) die "no root for release $release (want bullseye, trixie or sid)" ;;
esac

stamp=$(printf '%s\n' "$sources" "${packages[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
	echo "$root"
	exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
command -v debootstrap >/dev/null ||
	die "no debootstrap (tests/deps.sh installs it)"
"${sudo[@]}" rm -rf "$root"
mkdir -p "$(dirname "$root")"
echo "mkroot: debootstrap $release into $root" >&2
"${sudo[@]}" debootstrap --variant=minbase "$release" "$root" "$mirror" \
	>"$root.log" 2>&1 || die "debootstrap failed, see $root.log"
printf '%s\n' "$sources" | "${sudo[@]}" tee "$root/etc/apt/sources.list" >/dev/null
# The archive may serve a Release file past its Valid-Until (sid's is
# refreshed daily upstream, not always on the mirror).
echo 'Acquire::Check-Valid-Until "false";' |
	"${sudo[@]}" tee "$root/etc/apt/apt.conf.d/90xtcm-valid-until" >/dev/null
# No daemon starts while packages install (conntrackd, keepalived).
printf '#!/bin/sh\nexit 101\n' |
	"${sudo[@]}" tee "$root/usr/sbin/policy-rc.d" >/dev/null
"${sudo[@]}" chmod 755 "$root/usr/sbin/policy-rc.d"
if ! lane_run "$root" sh -c 'apt-get update -qq &&
	apt-get dist-upgrade -y -qq &&
	apt-get install -y -qq --no-install-recommends "$@" &&
	apt-get clean' install "${packages[@]}" >>"$root.log" 2>&1; then
	die "installing the packages failed, see $root.log"
fi
echo "$stamp" | "${sudo[@]}" tee "$stamp_file" >/dev/null
echo "$root"
