#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Our plugins beside Debian's stock ones, which a container, a tool that
# bundles its own iptables, or the distribution's iptables after "make
# uninstall" uses (here: XTABLES_LIBDIR at the distribution's plugin
# directory). Per backend (legacy, nft) and family, in one namespace, with
# our module loaded (it has revision 3):
#
#  1. ours adds every kind of CONNMARK rule and connmark match, as a user
#     types them. The kernel holds every CONNMARK target as revision 2
#     (xt_hostile dump: IPT_SO_GET_ENTRIES, NFT_MSG_GETRULE), and the
#     blobs are byte for byte those that Debian's plugin makes of the same
#     lines (step 2).
#  2. Debian's plugin lists them: its iptables-save is byte-identical to
#     ours, without "[unsupported revision]"; its -C and -D find every rule
#     by the spec it was added with. Then the other way round: Debian's
#     plugin adds them, ours saves the same text, ours' -C and -D find them.
#  3. Each one's save restores with the other's iptables-restore to the
#     same blobs, and -D with the saved spec finds every rule.
#  4. --set-dscpmark, which only revision 3 expresses, is the one rule the
#     kernel holds as revision 3 (its exact blob).
#  5. iptables -v prints a revision 2 rule as it adds it, and returns.
#
# Topology: one namespace, no traffic: what is checked is what the kernel
# holds and what each iptables prints of it.

# shellcheck disable=SC2317 # the checks run from for_each_backend_family
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_xt_tools "nft --version"
XT_HOSTILE=$TESTS_DIR/hostile/xt_hostile
checktool "test -x $XT_HOSTILE" "find $XT_HOSTILE (make -C tests tools)"
OURS=$XTABLES_LIBDIR
DISTRO=$(pkg-config --variable=xtlibdir xtables 2>/dev/null)
checktool "test -f $DISTRO/libxt_CONNMARK.so" \
	"find Debian's plugins in the xtables directory '$DISTRO'"

trap cleanup_all_ns EXIT

ret=0
batch_failed=false

# Every kind of rule, as a user types it (the part after "-A cm").
typed=(
	"-j CONNMARK --set-mark 0x5"
	"-j CONNMARK --set-mark 0x5/0xff"
	"-j CONNMARK --set-xmark 0x23/0x63"
	"-j CONNMARK --and-mark 0xf"
	"-j CONNMARK --or-mark 0x10"
	"-j CONNMARK --xor-mark 0x3"
	"-j CONNMARK --save-mark"
	"-j CONNMARK --save-mark --mask 0xff"
	"-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff00"
	"-j CONNMARK --restore-mark"
	"-j CONNMARK --restore-mark --ctmask 0xf --nfmask 0xf0 --left-shift-mark 4"
	"-j CONNMARK --save-mark --mask 0xff00 --right-shift-mark 8"
	"-j CONNMARK --set-xmark 0x23/0x63 --right-shift-mark 5"
	"-p tcp -m connmark --mark 0x1 -j CONNMARK --set-mark 0x2"
	"-m connmark ! --mark 0x2/0xf -j CONNMARK --restore-mark --mask 0xff"
	"-m connmark --mark 0x4/0x4 -j ACCEPT"
)
n_targets=15
n_matches=3
DSCP_RULE="-j CONNMARK --set-dscpmark 0xfc000000/0x01000000"

# xt LIBDIR ARGS...: iptables (of BACKEND and FAM) in the namespace with
# LIBDIR's CONNMARK and connmark plugins.
xt()
{
	local libdir=$1
	shift

	XTABLES_LIBDIR=$libdir:$DISTRO ip netns exec "$nsrouter" "$IPT" "$@"
}

# xt_restore LIBDIR: iptables-restore of stdin.
xt_restore()
{
	XTABLES_LIBDIR=$1:$DISTRO ip netns exec "$nsrouter" \
		"$IPT-restore"
}

# xt_save LIBDIR: iptables-save of the mangle table, without the comment
# lines (which hold a date).
xt_save()
{
	XTABLES_LIBDIR=$1:$DISTRO ip netns exec "$nsrouter" \
		"$IPT-save" -t mangle | sed '/^#/d'
}

# load LIBDIR SPEC...: the mangle table holds chain cm with the SPECs.
load()
{
	local libdir=$1 spec
	shift

	{
		echo "*mangle"
		echo ":cm - [0:0]"
		for spec in "$@"; do
			echo "-A cm $spec"
		done
		echo COMMIT
	} | xt_restore "$libdir" ||
		fail "$WHAT: iptables-restore with $libdir's plugins refused the rules"
}

# kernel: the CONNMARK targets and connmark matches the kernel holds in
# mangle, "NAME rev R HEX" each (tests/hostile/xt_hostile.c).
kernel()
{
	ip netns exec "$nsrouter" "$XT_HOSTILE" dump "$BACKEND$FAM" mangle
}

# saved_specs SAVE: the specs of chain cm's rules in an iptables-save text.
saved_specs()
{
	sed -n 's/^-A cm //p' <<<"$1"
}

# find_each LIBDIR WHO SPEC...: -C, then -D, of each SPEC with LIBDIR's
# plugins; the chain is empty at the end.
find_each()
{
	local libdir=$1 who=$2 spec out args
	shift 2

	for spec in "$@"; do
		read -r -a args <<<"$spec"
		out=$(xt "$libdir" -t mangle -C cm "${args[@]}" 2>&1) ||
			fail "$WHAT: $who: -C cm $spec: not found: $out"
		out=$(xt "$libdir" -t mangle -D cm "${args[@]}" 2>&1) ||
			fail "$WHAT: $who: -D cm $spec: not found: $out"
	done
	out=$(xt "$libdir" -t mangle -S cm)
	[ "$out" = "-N cm" ] ||
		fail "$WHAT: $who: rules left after -D of each: $out"
}

# expect_same WHAT WANT GOT: a FAIL line showing both when they differ.
expect_same()
{
	[ "$2" = "$3" ] && return 0
	fail "$WHAT: $1 differ:"
	diff <(echo "$2") <(echo "$3") | sed 's/^/#   /'
	return 1
}

check_backend_family()
{
	local k_ours k_theirs ours_save theirs_save got out rc args specs=()

	WHAT="$BACKEND ipv$FAM"
	batch_failed=false

	# 1. Ours adds them: revision 2 for every target.
	load "$OURS" "${typed[@]}"
	k_ours=$(kernel)
	got="$(grep -c '^CONNMARK rev 2 ' <<<"$k_ours")"
	got+=" $(grep -c '^connmark rev 1 ' <<<"$k_ours") $(wc -l <<<"$k_ours")"
	[ "$got" = "$n_targets $n_matches $((n_targets + n_matches))" ] ||
		fail "$WHAT: want $n_targets CONNMARK rev 2 and $n_matches connmark rev 1 in the kernel, got:" \
		     "$(tr '\n' ';' <<<"$k_ours")"
	got=$(head -n 1 <<<"$k_ours")
	[ "$got" = "CONNMARK rev 2 $(tginfo 5 0xffffffff 0xffffffff 0 0 0 0)" ] ||
		fail "$WHAT: --set-mark 0x5: kernel holds '$got'"

	# 2. Debian's plugin lists them as ours does, and finds each.
	ours_save=$(xt_save "$OURS")
	theirs_save=$(xt_save "$DISTRO")
	expect_same "ours' and Debian's iptables-save of ours' rules" \
		"$ours_save" "$theirs_save"
	[[ $theirs_save == *"unsupported revision"* ]] &&
		fail "$WHAT: Debian's plugin: [unsupported revision]"
	find_each "$DISTRO" "Debian's plugin on ours' rules" "${typed[@]}"

	# ... and the other way round.
	load "$DISTRO" "${typed[@]}"
	k_theirs=$(kernel)
	expect_same "kernel blobs of ours' and of Debian's rules" \
		"$k_ours" "$k_theirs"
	expect_same "ours' save of Debian's rules" "$ours_save" \
		"$(xt_save "$OURS")"
	find_each "$OURS" "ours on Debian's rules" "${typed[@]}"

	# 3. Each one's save restores with the other, -D by the saved spec.
	mapfile -t specs < <(saved_specs "$ours_save")
	xt_restore "$DISTRO" <<<"$ours_save" ||
		fail "$WHAT: Debian's iptables-restore of ours' save failed"
	expect_same "kernel blobs after Debian's restore of ours' save" \
		"$k_ours" "$(kernel)"
	find_each "$OURS" "ours, saved specs" "${specs[@]}"
	xt_restore "$OURS" <<<"$theirs_save" ||
		fail "$WHAT: ours' iptables-restore of Debian's save failed"
	expect_same "kernel blobs after ours' restore of Debian's save" \
		"$k_ours" "$(kernel)"
	find_each "$DISTRO" "Debian's plugin, saved specs" "${specs[@]}"

	# 4. --set-dscpmark alone needs revision 3. iptables-nft -v prints it
	# as it adds it; iptables-legacy -v would loop for ever in libxtables
	# (README.md, "Living with other iptables").
	load "$OURS" "${typed[@]}"
	read -r -a args <<<"$DSCP_RULE"
	if [ "$BACKEND" = nft ]; then
		out=$(xt "$OURS" -v -t mangle -A cm "${args[@]}" 2>&1)
		[[ $out == *"CONNMARK DSCP 0xfc000000/0x1000000"* ]] ||
			fail "$WHAT: iptables -v -A cm $DSCP_RULE: want it printed, got '$out'"
	else
		load "$OURS" "${typed[@]}" "$DSCP_RULE"
	fi
	got=$(kernel)
	expect_same "kernel after ours added --set-dscpmark last" \
		"$k_ours"$'\n'"CONNMARK rev 3 $(tginfo 0xfc000000 0x01000000 0xffffffff 0 26 0 2)" \
		"$got"

	# 5. iptables -v prints each rule it adds, and iptables-legacy looks
	# for the plugin of the rule's revision to do so: for revision 2 that
	# search must end (our plugin's order of registration, README.md). The
	# rule must be the one Debian's plugin makes of it.
	load "$DISTRO" "-j CONNMARK --set-mark 0x1"
	k_theirs=$(kernel)
	load "$OURS"
	out=$(XTABLES_LIBDIR=$OURS:$DISTRO timeout 60 ip netns exec "$nsrouter" \
		"$IPT" -v -t mangle -A cm -j CONNMARK --set-mark 0x1 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] || [[ $out != *"CONNMARK set 0x1"* ]]; then
		fail "$WHAT: iptables -v -A cm -j CONNMARK --set-mark 0x1: want it printed, got exit $rc, '$out'"
	fi
	expect_same "kernel after iptables -v added --set-mark 0x1, and Debian's plugin's" \
		"$k_theirs" "$(kernel)"

	if $batch_failed; then
		echo "# $WHAT: kernel (ours' rules):"
		echo "${k_ours//$'\n'/$'\n'#   }"
		dump_xt_state "$nsrouter" "$IPT"
	else
		echo "PASS: $WHAT: ours sends revision 2 ($n_targets targets), Debian's plugin lists, saves, restores, checks and deletes them byte for byte, and the other way round; --set-dscpmark alone is revision 3"
	fi
	load "$OURS"
}

setup_ns nsrouter || exit "$ksft_fail"
require_xt_backends "$nsrouter"
for_each_backend_family check_backend_family || ret=1
exit "$ret"
