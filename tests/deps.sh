#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install the Debian packages that building and testing need on a bare
# Debian 12 (a debootstrap minbase), once: nothing is done when they are all
# present. Not root: through sudo.

set -u

packages=(
	# build: module, plugins, unit tests; build-essential is also what
	# dpkg-buildpackage (make deb) checks for
	build-essential make gcc libc6-dev pkg-config libxtables-dev dwarves
	sparse
	# kernels and the VM
	apt-utils dpkg kmod file cpio gzip xz-utils zstd busybox-static
	qemu-system-x86
	# the arm64 lane: its VM, its root's second stage, the cross builds
	# (tests/vm/lane.sh)
	qemu-system-arm qemu-user-static gcc-aarch64-linux-gnu
	# the other releases' lanes: their userland roots (tests/vm/mkroot.sh)
	debootstrap
	# tools the tests run inside the VM (the VM shares the host's root)
	iproute2 iptables nftables conntrack socat iputils-ping procps
	psmisc
	# DKMS signs the modules it builds with it (safe_boot.sh, the install
	# tests read modinfo's signer); dkms does not depend on it
	openssl
	# docs/cookbook.md's recipes (tests/cookbook.sh): FTP server and client
	python3-pyftpdlib curl
	# tests/differential.sh's program generator and traffic
	python3
	# recipe 14 (tests/ha_failover.sh): the firewall pair's daemons
	conntrackd keepalived
	# installing: DKMS (also in the VM) and the Debian packages (make deb)
	dkms dpkg-dev debhelper dh-dkms lintian man-db
	# make bench: its plots
	gnuplot-nox
	# static analysis
	shellcheck perl cppcheck clang-tidy
	# fuzzing the plugins (tests/fuzz): clang's libFuzzer, ASan and UBSan
	clang libclang-rt-14-dev
)

missing=()
for pkg in "${packages[@]}"; do
	dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null |
		grep -q 'install ok installed' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "deps: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
