#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A kernel upgrade that DKMS cannot build our module for, as apt-get
# installs it: what this release's DKMS (Debian 11: 2.8, 12: 3.0, 13 and
# sid: 3.2) does, what apt-get and dpkg report, and what the new kernel
# would load. make check-matrix runs it on every lane (MATRIX_PROGS).
#
#   1. our module registered with DKMS for autoinstall (make dkms-source,
#      dkms add), as after make dkms-install or the package
#   2. two packages made here, the way Debian's kernel packages call the
#      hooks: linux-headers-K (a build tree whose Makefile stops with an
#      error; its postinst runs /etc/kernel/header_postinst.d) and
#      linux-image-K (its preinst and postinst run /etc/kernel/preinst.d
#      and postinst.d, "run-parts --report --exit-on-error"), K a release
#      that dkms.conf's BUILD_EXCLUSIVE_* accept, with this kernel's .config
#   3. apt-get install of both: one MEASURE line with apt-get's exit
#      status, dpkg's state of each package, dkms status for K, whether K
#      has our module in updates/, and DKMS's own lines
#   4. asserted: DKMS tried our build for K and did not install a module;
#      the administrator was told (apt-get failed, or a line names
#      xt_connmark's failed build); modprobe for K then finds the kernel's
#      own module (a copy of this kernel's, where K's package has it): the
#      next boot of K is safe_boot.sh's "absent" case
#
# Runs in the VM only (tests/run.sh), where the root is a throw-away overlay.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"

install_env_ok || exit "$ksft_skip"
require_tools "dkms --version" "apt-get --version" "dpkg-deb --version" \
	"make --version" "modinfo --version"

broken=99.0.0-xtcm-broken
work=$(mktemp -d)
ret=0
log=$work/apt.log

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	dpkg --purge --force-all "linux-image-$broken" "linux-headers-$broken" \
		>/dev/null 2>&1
	dkms remove "xt_connmark/$XTCM_VERSION" --all >/dev/null 2>&1
	rm -rf "$DKMS_SRC" "/lib/modules/$broken" "/usr/src/linux-headers-$broken" \
		"$work"
	restore_man_db
}
trap cleanup EXIT

# fake_package NAME DIR MAINTSCRIPT...: a package of DIR's files, each
# MAINTSCRIPT "preinst|postinst:HOOK_DIR" running the hooks as Debian's
# kernel packages do.
fake_package()
{
	local name=$1 dir=$2 script hook
	shift 2

	mkdir -p "$dir/DEBIAN"
	printf '%s\n' "Package: $name" "Version: 1" "Architecture: all" \
		"Maintainer: xt_connmark tests <tests@invalid>" "Section: kernel" \
		"Priority: optional" "Description: stand-in for a kernel upgrade" \
		>"$dir/DEBIAN/control"
	for script; do
		hook=${script#*:}
		script=${script%%:*}
		printf '%s\n' '#!/bin/sh' 'set -e' \
			"[ \"\$1\" = configure ] || [ \"\$1\" = install ] || [ \"\$1\" = upgrade ] || exit 0" \
			"[ -d $hook ] || exit 0" \
			"exec run-parts --report --exit-on-error --arg=$broken --arg=/boot/vmlinuz-$broken $hook" \
			>"$dir/DEBIAN/$script"
		chmod 0755 "$dir/DEBIAN/$script"
	done
	dpkg-deb --root-owner-group -b "$dir" "$work/$name.deb" >/dev/null
}

# 1. Registered for autoinstall.
make -s -C "$REPO_DIR" dkms-source DESTDIR= >/dev/null &&
	dkms add "xt_connmark/$XTCM_VERSION" >/dev/null || exit "$ksft_fail"

# 2. The packages.
headers=$work/headers/usr/src/linux-headers-$broken
mkdir -p "$headers/include/generated" "$work/headers/lib/modules/$broken"
cp "$XTCM_KROOT/usr/src/linux-headers-$KREL/.config" "$headers/.config" ||
	exit "$ksft_fail"
printf '#define UTS_RELEASE "%s"\n' "$broken" >"$headers/include/generated/utsrelease.h"
# shellcheck disable=SC2016 # make's syntax
printf '%s\n' '$(error xtcm: this build tree cannot build modules)' >"$headers/Makefile"
ln -s "/usr/src/linux-headers-$broken" "$work/headers/lib/modules/$broken/build"
fake_package "linux-headers-$broken" "$work/headers" \
	postinst:/etc/kernel/header_postinst.d
# The kernel's own module, where a Debian kernel package has it.
own=$(find "/lib/modules/$KREL/kernel/net/netfilter" -name 'xt_connmark.ko*' | head -n 1)
mkdir -p "$work/image/boot" "$work/image/lib/modules/$broken/kernel/net/netfilter"
cp "$own" "$work/image/lib/modules/$broken/kernel/net/netfilter/" || exit "$ksft_fail"
echo "stand-in" >"$work/image/boot/vmlinuz-$broken"
fake_package "linux-image-$broken" "$work/image" \
	preinst:/etc/kernel/preinst.d postinst:/etc/kernel/postinst.d

# 3. The upgrade.
skip_man_db
DEBIAN_FRONTEND=noninteractive apt-get install -y \
	"$work/linux-image-$broken.deb" "$work/linux-headers-$broken.deb" \
	>"$log" 2>&1
rc=$?
states=""
for pkg in "linux-image-$broken" "linux-headers-$broken"; do
	# shellcheck disable=SC2016 # a dpkg-query format
	states+=" ${pkg%%-"$broken"}=$(dpkg-query -W -f '${db:Status-Abbrev}' "$pkg" 2>/dev/null | tr -d ' ')"
done
status=$(dkms status xt_connmark 2>&1 | grep -F "$broken" | tr '\n' ' ')
ours=$(find "/lib/modules/$broken/updates" -name 'xt_connmark.ko*' 2>/dev/null)
dkms_version=$(dpkg-query -W -f '${Version}' dkms)
echo "MEASURE DKMS $dkms_version: apt-get exit $rc;$states; dkms status for $broken: '${status:-none}'; ours in updates/: ${ours:-no}"
grep -iE 'dkms|xt_connmark|error|fail|warning' "$log" | sed 's/^/#   apt-get: /'

# 4. Asserted.
if ! grep -qE "xt_connmark|Building module" "$log"; then
	echo "FAIL: DKMS did not try to build xt_connmark for $broken"
	ret=1
fi
if [ -n "$ours" ]; then
	echo "FAIL: a module of ours for $broken from a tree that cannot build: $ours"
	ret=1
fi
if [ "$rc" -eq 0 ] && ! grep -qiE "xt_connmark.*(fail|error)|(fail|error).*xt_connmark|Bad return status" "$log"; then
	echo "FAIL: apt-get succeeded and no line names xt_connmark's failed build: the administrator is not told"
	ret=1
fi
depmod -a "$broken"
path=$(modinfo -k "$broken" -n xt_connmark 2>/dev/null)
if [[ $path != "/lib/modules/$broken/kernel/net/netfilter/xt_connmark.ko"* ]]; then
	echo "FAIL: modprobe for $broken would load '$path', want the kernel's own"
	ret=1
fi
[ "$ret" -eq 0 ] && echo "PASS: DKMS $dkms_version and a kernel it cannot build for: apt-get exit $rc,$states; no module of ours for $broken, so its boot loads the kernel's own xt_connmark (safe_boot.sh's absent case)"
exit "$ret"
