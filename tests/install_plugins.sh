#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# "make install" and "make uninstall" of the iptables plugins and the man
# page on a Debian system, with the plugins iptables loads by default (no
# XTABLES_LIBDIR):
#
#   0. make uninstall with nothing installed leaves iptables' files alone
#   1. make install: ours in the xtables directory (the bytes of libxt/), the
#      distribution's renamed to .distrib unchanged, a local diversion
#      listed for each, "man -w xt_connmark" finds the page
#   2. in a fresh namespace, iptables accepts and lists a CONNMARK and a
#      connmark rule
#   3. dpkg -i of the installed iptables version's package (what an upgrade
#      does): ours stay, .distrib holds the package's files
#   4. make uninstall with rules loaded (install_lib.sh's RULESET, every
#      kind of CONNMARK rule and connmark match, and one --set-dscpmark
#      rule, per backend and family, one namespace per backend): the
#      distribution's files are back byte for byte, no diversion, no
#      .distrib, no man page; make uninstall's stderr names each
#      --set-dscpmark rule (libxt/xtables-connmark-rules); the
#      distribution's iptables-save prints that rule as "[unsupported
#      revision]" (legacy) or as another rule (nft), every other rule as
#      ours did; after -D of that rule, its save restores, after a
#      reboot-equivalent (fresh namespaces, our module loaded anew), with
#      the distribution's iptables-restore to the same rules
#   5. make install DESTDIR=...: files in DESTDIR only, no diversion
#
# Runs in the VM only (tests/run.sh), where the root is a throw-away overlay.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"
unset XTABLES_LIBDIR

install_env_ok || exit "$ksft_skip"
checktool "make --version" "run test without make"
checktool "dpkg-divert --version" "run test without dpkg-divert"
checktool "iptables --version" "run test without iptables"
require_xt_tools "diff --version" "cmp --version"
checktool "man --version" "run test without man"
checktool "test -n '$XTLIBDIR'" "find the xtables directory (pkg-config xtables)"

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	if dpkg-divert --list "$XTLIBDIR/libxt_*" | grep -q 'local diversion'; then
		make -s -C "$REPO_DIR" uninstall >/dev/null 2>&1
	fi
	restore_man_db
	rm -rf "$destdir" "$log" "$err" "$RULES_DIR"
}
trap cleanup EXIT

ret=0
log=$(mktemp)
err=$(mktemp)
destdir=$(mktemp -d)
skip_man_db
before=$(sha256_of "${PLUGIN_FILES[@]}")

# check_files PHASE WANT_PLUGINS WANT_DISTRIB: sha256sum lines of the
# installed plugins and of the .distrib files (names included).
check_files()
{
	local got

	got=$(sha256_of "${PLUGIN_FILES[@]}" | awk '{ print $1 }')
	if [ "$got" != "$(awk '{ print $1 }' <<<"$2")" ]; then
		echo "FAIL: $1: installed plugins $got, want $2"
		ret=1
	fi
	got=$(sha256_of "${PLUGIN_FILES[@]/%/.distrib}")
	if [ "$got" != "$3" ]; then
		echo "FAIL: $1: .distrib files $got, want $3"
		ret=1
	fi
}

# Nothing of ours is installed yet: uninstall must leave iptables' own alone.
if ! make -C "$REPO_DIR" uninstall >"$log" 2>&1 ||
	[ "$(sha256_of "${PLUGIN_FILES[@]}")" != "$before" ]; then
	echo "FAIL: make uninstall before make install changed the plugins:"
	cat "$log"
	ret=1
else
	echo "PASS: make uninstall leaves the distribution's plugins alone"
fi

if ! make -C "$REPO_DIR" install >"$log" 2>&1; then
	echo "FAIL: make install"
	cat "$log"
	exit "$ksft_fail"
fi
ours=$(cd "$REPO_DIR/libxt" && sha256sum libxt_CONNMARK.so libxt_connmark.so)
distrib=$(awk '{ print $1 "  " $2 ".distrib" }' <<<"$before")
check_files "make install" "$ours" "$distrib"
for f in "${PLUGIN_FILES[@]}"; do
	if [ "$(dpkg-divert --listpackage "$f")" != LOCAL ]; then
		echo "FAIL: make install: $f is not diverted locally: $(dpkg-divert --list "$f")"
		ret=1
	fi
done
page=$(man -w xt_connmark 2>&1)
if [ "$(realpath "$page" 2>&1)" != "$(realpath /usr/local/share/man/man8/xt_connmark.8)" ]; then
	echo "FAIL: man -w xt_connmark: $page"
	ret=1
fi
[ "$ret" -eq 0 ] && echo "PASS: make install: plugins in $XTLIBDIR, the distribution's diverted, $page"

setup_ns nsrouter || exit "$ksft_fail"
if ip netns exec "$nsrouter" iptables -t mangle -A PREROUTING \
	-m connmark --mark 1/3 -j CONNMARK --restore-mark --mask 0xff &&
	ip netns exec "$nsrouter" iptables -t mangle -S PREROUTING | grep -qx -- \
		'-A PREROUTING -m connmark --mark 0x1/0x3 -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff'; then
	echo "PASS: iptables loads the installed plugins"
else
	echo "FAIL: iptables with the installed plugins:"
	ip netns exec "$nsrouter" iptables -t mangle -S PREROUTING
	ret=1
fi
cleanup_all_ns

if [ ! -f "${XTCM_IPTABLES_DEB:-}" ]; then
	echo "FAIL: no iptables package to reinstall (XTCM_IPTABLES_DEB '${XTCM_IPTABLES_DEB:-}', tests/run.sh)"
	ret=1
elif ! dpkg -i "$XTCM_IPTABLES_DEB" >"$log" 2>&1; then
	echo "FAIL: dpkg -i $XTCM_IPTABLES_DEB"
	cat "$log"
	ret=1
else
	rc=$ret
	check_files "dpkg -i iptables" "$ours" "$distrib"
	[ "$ret" -eq "$rc" ] && echo "PASS: reinstalling iptables keeps our plugins"
fi

# The rules loaded at the uninstall, read by our plugins.
rules_namespaces || exit "$ksft_fail"
rules_load dscp ours "make install"

if ! make -C "$REPO_DIR" uninstall >"$log" 2>"$err"; then
	echo "FAIL: make uninstall"
	cat "$log" "$err"
	ret=1
fi
rc=$ret
check_files "make uninstall" "$before" \
	"$(printf 'missing %s\n' "${PLUGIN_FILES[@]/%/.distrib}")"
if dpkg-divert --list "$XTLIBDIR/libxt_*" | grep -q .; then
	echo "FAIL: make uninstall left diversions: $(dpkg-divert --list "$XTLIBDIR/libxt_*")"
	ret=1
fi
if [ -e /usr/local/share/man/man8/xt_connmark.8 ]; then
	echo "FAIL: make uninstall left the man page"
	ret=1
fi
[ "$ret" -eq "$rc" ] && echo "PASS: make uninstall: the distribution's plugins are back byte for byte"

# The rules it left, read by the distribution's plugins.
rc=$ret
rules_after_removal "$err" "make uninstall"
[ "$ret" -eq "$rc" ] && echo "PASS: make uninstall names each --set-dscpmark rule; the distribution's iptables-save reads every other rule as ours did"
# A reboot-equivalent: no rules, our module loaded anew (make uninstall
# leaves the module alone).
restore_module || ret=1
rules_namespaces || exit "$ksft_fail"
rc=$ret
rules_restored "make uninstall"
[ "$ret" -eq "$rc" ] && echo "PASS: after a reboot-equivalent, the distribution's iptables-restore restores each of its saves to the same rules"
cleanup_all_ns

if ! make -C "$REPO_DIR" install DESTDIR="$destdir" PREFIX=/usr >"$log" 2>&1; then
	echo "FAIL: make install DESTDIR=$destdir"
	cat "$log"
	ret=1
elif [ -n "$(dpkg-divert --list "$XTLIBDIR/libxt_*")" ] ||
	[ "$(sha256_of "${PLUGIN_FILES[@]}")" != "$before" ] ||
	[ "$(cd "$destdir" && find . -type f | sort)" != "$(printf '%s\n' \
		".$XTLIBDIR/libxt_CONNMARK.so" ".$XTLIBDIR/libxt_connmark.so" \
		./usr/share/man/man8/xt_connmark.8 \
		./usr/share/xtables-connmark-plugins/xtables-connmark-restore | sort)" ] ||
	[ "$(readlink "$destdir/usr/share/netfilter-persistent/plugins.d/14-xt-connmark")" != \
		../../xtables-connmark-plugins/xtables-connmark-restore ]; then
	echo "FAIL: make install DESTDIR: diversions '$(dpkg-divert --list "$XTLIBDIR/libxt_*")', files:"
	(cd "$destdir" && find . -type f)
	ret=1
else
	echo "PASS: make install DESTDIR=... installs there only, no diversion"
fi

[ "$ret" -eq 0 ] && echo "PASS: make install and uninstall of the plugins"
exit "$ret"
