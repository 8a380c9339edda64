#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The Debian packages "make deb" built on the host (tests/run.sh, in
# XTCM_DEB_DIR), installed with dpkg as on a router, with the plugins
# iptables loads by default (no XTABLES_LIBDIR):
#
#   1. rmmod the runner's module; dpkg -i xtables-connmark-plugins
#      xt-connmark-dkms: DKMS builds and installs the module for the running
#      kernel (dkms status "installed"); both plugins are diverted by
#      xtables-connmark-plugins (dpkg-divert --list), the distribution's kept
#      unchanged as .distrib, ours are the package's
#   2. fresh namespace, plain iptables: "-j CONNMARK --set-mark 0x2a" and a
#      "-m connmark --mark 0x2a" counter in mangle OUTPUT autoload our module
#      (version, updates/), iptables -S lists them, and a ping gets its
#      connection marked 42 (conntrack -L) and counted by the match
#   3. with rules loaded (install_lib.sh's RULESET, every kind of CONNMARK
#      rule and connmark match, and one --set-dscpmark rule, per backend
#      and family, one namespace per backend), dpkg --purge of both: no
#      DKMS state or module in updates/, no diversion, the distribution's
#      plugins back byte for byte (sha256); the prerm named each
#      --set-dscpmark rule on stderr (xtables-connmark-rules); the
#      distribution's iptables-save prints that rule as "[unsupported
#      revision]" (legacy) or as another rule (nft), every other rule as
#      ours did, and saves the rest after -D of that rule
#   4. namespaces gone, rmmod; a plain CONNMARK rule autoloads the kernel's
#      own module; a reboot-equivalent without the packages: in fresh
#      namespaces, with that module, each of those saves restores with the
#      distribution's iptables-restore to the same rules
#   5. the runner's module is insmod'ed again
#
# That an iptables upgrade keeps our plugins is install_plugins.sh's: dpkg
# treats a package's diversion and a local one alike, and every dpkg run
# costs about a minute here (it reads the file lists of ~1000 packages).
#
# Runs in the VM only (tests/run.sh), where the root is a throw-away overlay.
# Most module directories are hidden meanwhile, to keep DKMS's depmod runs
# short (install_lib.sh, hide_modules).

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"
unset XTABLES_LIBDIR
# No debconf dialog attempts in the maintainer scripts.
export DEBIAN_FRONTEND=noninteractive

PLUGINS_PKG=xtables-connmark-plugins
DKMS_PKG=xt-connmark-dkms

install_env_ok || exit "$ksft_skip"
checktool "dpkg --version" "run test without dpkg"
checktool "dkms --version" "run test without dkms"
checktool "iptables --version" "run test without iptables"
require_xt_tools "diff --version" "cmp --version"
checktool "conntrack --version" "run test without conntrack"
checktool "ping -V" "run test without ping"
checktool "test -n '$XTLIBDIR'" "find the xtables directory (pkg-config xtables)"

arch=$(dpkg --print-architecture)
plugins_deb=${XTCM_DEB_DIR:-}/${PLUGINS_PKG}_${XTCM_VERSION}_$arch.deb
dkms_deb=${XTCM_DEB_DIR:-}/${DKMS_PKG}_${XTCM_VERSION}_all.deb
for deb in "$plugins_deb" "$dkms_deb"; do
	if [ ! -f "$deb" ]; then
		echo "FAIL: no $deb: \"make deb\" failed on the host? (tests/run.sh)"
		exit "$ksft_fail"
	fi
done

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	if dpkg-query -W -f '${Status}\n' "$PLUGINS_PKG" "$DKMS_PKG" 2>/dev/null |
		grep -q 'ok installed'; then
		dpkg --purge "$PLUGINS_PKG" "$DKMS_PKG" >/dev/null 2>&1
	fi
	restore_man_db
	restore_module || exit "$ksft_fail"
	rm -rf "$log" "$err" "$RULES_DIR"
}
trap cleanup EXIT

ret=0
log=$(mktemp)
err=$(mktemp)
skip_man_db
link_headers || exit "$ksft_fail"
hide_modules || exit "$ksft_fail"
before=$(sha256_of "${PLUGIN_FILES[@]}")
# The plugins as the package ships them.
packaged=$(for f in "${PLUGIN_FILES[@]}"; do
	dpkg-deb --fsys-tarfile "$plugins_deb" | tar -xOf - ".$f" | sha256sum |
		awk '{ print $1 }'
done)
unload_connmark || exit "$ksft_fail"

timed_step "dpkg -i of both packages (DKMS build)" \
	dpkg -i "$plugins_deb" "$dkms_deb" || exit "$ksft_fail"
if ! dkms_installed; then
	cat "$log"
	ret=1
else
	echo "PASS: dpkg -i: DKMS built and installed the module: $status"
fi
check_signed_install "dpkg -i" || ret=1

# check_diverted: both plugins diverted by our package, the distribution's
# files unchanged as .distrib, ours as the package ships them.
check_diverted()
{
	local f want got rc=0

	for f in "${PLUGIN_FILES[@]}"; do
		want="diversion of $f to $f.distrib by $PLUGINS_PKG"
		got=$(dpkg-divert --list "$f")
		if [ "$got" != "$want" ]; then
			echo "FAIL: $1: dpkg-divert --list $f: '$got', want '$want'"
			rc=1
		fi
	done
	got=$(sha256_of "${PLUGIN_FILES[@]/%/.distrib}")
	want=$(awk '{ print $1 "  " $2 ".distrib" }' <<<"$before")
	if [ "$got" != "$want" ]; then
		echo "FAIL: $1: the distribution's plugins are now $got, want $want"
		rc=1
	fi
	got=$(sha256_of "${PLUGIN_FILES[@]}" | awk '{ print $1 }')
	if [ "$got" != "$packaged" ]; then
		echo "FAIL: $1: installed plugins $got, want the package's $packaged"
		rc=1
	fi
	[ "$rc" -eq 0 ] && echo "PASS: $1: plugins diverted by $PLUGINS_PKG, ours installed"
	return "$rc"
}
check_diverted "dpkg -i" || ret=1

# The rules a user would write, autoloading the module, and a ping that
# they mark and count.
setup_ns nsrouter || exit "$ksft_fail"
if ! ip netns exec "$nsrouter" iptables -t mangle -A OUTPUT -p icmp \
	-j CONNMARK --set-mark 0x2a ||
	! ip netns exec "$nsrouter" iptables -t mangle -A OUTPUT \
		-m connmark --mark 0x2a; then
	echo "FAIL: iptables refused the CONNMARK or connmark rule"
	ret=1
fi
check_loaded ours || ret=1
rules=$(ip netns exec "$nsrouter" iptables -t mangle -S OUTPUT)
want='-P OUTPUT ACCEPT
-A OUTPUT -p icmp -j CONNMARK --set-xmark 0x2a/0xffffffff
-A OUTPUT -m connmark --mark 0x2a'
if [ "$rules" != "$want" ]; then
	echo "FAIL: iptables -t mangle -S OUTPUT: $rules, want $want"
	ret=1
fi
ip netns exec "$nsrouter" ping -q -c 1 -W 1 127.0.0.1 >/dev/null
marks=$(ct_marks "$nsrouter" -p icmp)
count=$(rule_packets "$nsrouter" iptables mangle OUTPUT 2)
if [ "$marks" != 42 ] || [ "${count:-0}" -lt 1 ]; then
	echo "FAIL: ping: conntrack marks '$marks', want 42; connmark match counted '$count', want >= 1"
	dump_xt_state "$nsrouter" iptables
	ret=1
else
	echo "PASS: the installed plugins and module mark and match a ping's connection"
fi
cleanup_all_ns

# The rules loaded at the removal, read by our plugins.
rules_namespaces || exit "$ksft_fail"
rules_load dscp ours "dpkg -i"

# purge: dpkg --purge of both packages, its stderr into $err.
# shellcheck disable=SC2317 # called through timed_step
purge()
{
	dpkg --purge "$PLUGINS_PKG" "$DKMS_PKG" 2>"$err"
}
if ! timed_step "dpkg --purge of both packages (DKMS removal)" purge; then
	cat "$err"
	ret=1
fi
after=$(sha256_of "${PLUGIN_FILES[@]}" "${PLUGIN_FILES[@]/%/.distrib}")
want=$(printf '%s\n' "$before"; printf 'missing %s\n' "${PLUGIN_FILES[@]/%/.distrib}")
diversions=$(dpkg-divert --list "$XTLIBDIR/libxt_*")
if [ "$after" != "$want" ] || [ -n "$diversions" ]; then
	echo "FAIL: dpkg --purge: plugins $after, want $want; diversions '$diversions'"
	ret=1
elif ! dkms_gone "dpkg --purge"; then
	ret=1
else
	echo "PASS: dpkg --purge: the distribution's plugins are back byte for byte, no DKMS module"
fi

# The rules it left, read by the distribution's plugins.
rc=$ret
rules_after_removal "$err" "dpkg --purge"
[ "$ret" -eq "$rc" ] && echo "PASS: dpkg --purge names each --set-dscpmark rule; the distribution's iptables-save reads every other rule as ours did"
cleanup_all_ns
in_tree_autoloads || ret=1

# A reboot-equivalent without the packages: no rules, the kernel's own
# module (in_tree_autoloads loaded it).
cleanup_all_ns
rules_namespaces || exit "$ksft_fail"
rc=$ret
rules_restored "dpkg --purge"
loaded_is in-tree || ret=1
[ "$ret" -eq "$rc" ] && echo "PASS: after a reboot-equivalent, the kernel's own module and the distribution's iptables-restore restore each save to the same rules"
cleanup_all_ns

[ "$ret" -eq 0 ] && echo "PASS: the Debian packages install and purge cleanly on $KREL"
exit "$ret"
