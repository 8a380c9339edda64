#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Our plugins without our module: DKMS could not build it for a new kernel,
# or the kernel is one it was never installed for, and the kernel's own
# xt_connmark (revisions 1 and 2, no revision 3) serves the rules. Per
# backend (legacy, nft) and family, with our plugins (XTABLES_LIBDIR as
# lib.sh sets it):
#
#  1. with our module: iptables-restore of install_lib.sh's RULESET (every
#     kind of CONNMARK rule and connmark match) with and without
#     DSCP_RULE (--set-dscpmark, revision 3), each one's iptables-save into
#     a file; a ping's connection gets a mark from the rules
#  2. no rules, xt_connmark unloaded, "modprobe xt_connmark" loads the
#     kernel's own module
#  3. in fresh namespaces: the save without --set-dscpmark restores with our
#     plugins and saves back byte for byte (comment lines aside); the save
#     with it does not restore: iptables-restore exits non-zero, naming the
#     rule (our plugin's message, with its --set-dscpmark argument) and its
#     line number, and the table is unchanged; a ping's connection gets
#     the same mark from the kernel's module as from ours
#  4. our module is loaded again
#
# Topology: one namespace per backend (a ping goes through one backend's
# rules only), its loopback the only link: a ping from the namespace to
# itself goes through PREROUTING's chain cm twice, request and reply.

# shellcheck disable=SC2317 # the checks run from for_each_backend_family
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"

install_env_ok || exit "$ksft_skip"
require_xt_tools "diff --version" "cmp --version" "modprobe --version"
checktool "modinfo -n xt_connmark" "find the kernel's own xt_connmark"

REVISION3_MISSING="needs CONNMARK revision 3, which the kernel lacks: load the xt_connmark module of xt-connmark-dkms"
module_back=false

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	$module_back || restore_module || exit "$ksft_fail"
	rm -rf "$RULES_DIR"
}
trap cleanup EXIT

ret=0

# ping_marks NAME: a ping to itself per family in each backend's namespace;
# "FAMILY MARK" of the conntrack entries there (conntrack's "icmp" and
# "icmpv6") into "rules_file NAME" of each backend (FAM 46).
ping_marks()
{
	local out

	for BACKEND in $XT_BACKENDS; do
		FAM=46
		xt_in_ns ping -q -c 1 -W 1 127.0.0.1 >/dev/null 2>&1
		xt_in_ns ping -q -c 1 -W 1 ::1 >/dev/null 2>&1
		out=$(xt_in_ns conntrack -L 2>/dev/null)
		awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^mark=/)
			print $1, substr($i, 6) }' <<<"$out" | sort >"$(rules_file "$1")"
	done
}

if ! loaded_is ours; then
	exit "$ksft_fail"
fi

# 1. Our module: the saves, and what a ping's connection gets.
rules_namespaces || exit "$ksft_fail"
rules_load dscp with-dscp "our module"
rules_load "" plain "our module"
ping_marks ours-marks
for BACKEND in $XT_BACKENDS; do
	FAM=46
	got=$(cat "$(rules_file ours-marks)")
	if [ "$(cut -d ' ' -f 1 <<<"$got" | tr '\n' ' ')" != "icmp icmpv6 " ]; then
		fail "our module, $BACKEND: a ping's conntrack entries, want one icmp and one icmpv6 with a mark, got '$got'"
	fi
done
[ "$ret" -eq 0 ] && echo "PASS: our module: the rules with and without --set-dscpmark saved, a ping marked"

# 2. The kernel's own module.
cleanup_all_ns
unload_connmark || exit "$ksft_fail"
if ! modprobe xt_connmark || ! loaded_is in-tree; then
	echo "FAIL: modprobe xt_connmark did not load the kernel's own module"
	exit "$ksft_fail"
fi
echo "PASS: the kernel's own xt_connmark loaded: $(modinfo -n xt_connmark)"

# 3. Our saves, restored by our plugins with the kernel's module.
rules_namespaces || exit "$ksft_fail"

restore_in_tree()
{
	local out line rc=0 masks

	if ! out=$(xt_in_ns "$IPT-restore" <"$(rules_file plain)" 2>&1); then
		fail "kernel's module: $IPT-restore of the save without --set-dscpmark failed: $out"
		return
	fi
	xt_in_ns "$IPT-save" -t mangle >"$(rules_file in-tree)"
	same_rules "kernel's module: $IPT-save after $IPT-restore" \
		"$(rules_file in-tree)" "$(rules_file plain)" || return

	# The save with it: refused by name, at its line, nothing changed.
	line=$(grep -nxF -- "$DSCP_SAVED" "$(rules_file with-dscp)" | cut -d : -f 1)
	masks=${DSCP_SAVED##* }
	out=$(xt_in_ns "$IPT-restore" <"$(rules_file with-dscp)" 2>&1) || rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "kernel's module: $IPT-restore of the save with --set-dscpmark succeeded"
	elif ! grep -qF -- "CONNMARK target: --set-dscpmark $masks $REVISION3_MISSING" <<<"$out" ||
		! grep -qxF -- "Error occurred at line: $line" <<<"$out"; then
		fail "kernel's module: $IPT-restore of the save with --set-dscpmark exited with $rc, want the message 'CONNMARK target: --set-dscpmark $masks $REVISION3_MISSING' and 'Error occurred at line: $line', got: $out"
	fi
	xt_in_ns "$IPT-save" -t mangle >"$(rules_file refused)"
	same_rules "kernel's module: $IPT-save after the refused $IPT-restore" \
		"$(rules_file refused)" "$(rules_file plain)"
}
rc=$ret
for_each_backend_family restore_in_tree || ret=1
[ "$ret" -eq "$rc" ] && echo "PASS: kernel's module: the save without --set-dscpmark restores and saves back the same; the one with it is refused at its line, by name, the rules unchanged"

rc=$ret
ping_marks in-tree-marks
for BACKEND in $XT_BACKENDS; do
	FAM=46
	got=$(cat "$(rules_file in-tree-marks)")
	want=$(cat "$(rules_file ours-marks)")
	if [ "$got" != "$want" ]; then
		fail "kernel's module, $BACKEND: a ping's conntrack marks '$got', want '$want' (our module's)"
		dump_xt_state "${RULES_NS[$BACKEND]}" "iptables-$BACKEND"
	fi
done
[ "$ret" -eq "$rc" ] && echo "PASS: kernel's module: a ping's connection gets the marks it got from ours: $(tr '\n' ' ' <"$(rules_file in-tree-marks)")"
if ! loaded_is in-tree; then
	ret=1
fi

# 4. Ours again.
restore_module || ret=1
module_back=true

[ "$ret" -eq 0 ] && echo "PASS: our plugins without our module: every rule but --set-dscpmark restores and works, --set-dscpmark is refused by name"
exit "$ret"
