#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Differential test: random CONNMARK rule programs with traffic, run once
# with the kernel's own xt_connmark (Debian's, kernel/net/netfilter/) and
# once with ours, on the same booted kernel; every observation must agree.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   dead:1::99        dead:1::1    dead:2::1     dead:2::99
#   + 10.64.0.N/32, dead:40::N: one client address per program
#
# tests/differential/difftest.py generates XTCM_DIFF_PROGRAMS programs
# from XTCM_DIFF_SEED (random unless given; printed): each is 3 to 12 mangle
# rules in PREROUTING, INPUT, FORWARD, OUTPUT and POSTROUTING (CONNMARK
# --set-xmark, --set-mark, --and/--or/--xor-mark, --save-mark and
# --restore-mark with random values, masks, --nfmask/--ctmask, revision 2
# shifts 0..31; connmark and mark matches with "!" and masks; conntrack
# state and direction matches; MARK rules), one address family, one
# backend (iptables-legacy or iptables-nft), our plugins or Debian's, and 3
# to 6 flows (TCP, UDP, ICMP echo, UDP and TCP to a closed port) from the
# client to the server or the router and back the other way. Up to
# XTCM_DIFF_BATCH programs run at once in the router, each in its own user
# chains reached through its own client address (see difftest.py), with one
# iptables-restore per backend, family and plugin set and one process per
# namespace for all the traffic.
#
# Compared per program: every rule's packet counter, the final ct mark of
# every flow (conntrack -L), and the packet mark and ct mark that each flow's
# packets carried out of each hook's mangle chain, with packet counts (an
# nftables table at priority mangle + 10 records them in dynamic sets with
# counters). The traffic is deterministic; a program whose traffic was
# disturbed (a TCP retransmission, a timeout) is skipped, and more than 10%
# of those fail the test. A program whose traffic does not leave the
# expected conntrack entries fails it too.
#
# The module is swapped with rmmod/modprobe/insmod once the rules are gone
# (both phases use the same namespaces); our module is loaded again at the
# end and checked by version and srcversion.
#
# Deliberate differences, never generated (README.md, "Differences from
# upstream"):
# - shift validation: revision 2 shifts of 32 or more, or another shift
#   direction, are refused by ours only; programs shift by 0 to 31;
# - template conntracks: no -j CT rule in the raw table, so CONNMARK never
#   meets a template.
# Every rule of a program goes to both modules as revision 2, with our
# plugins as with Debian's (ours sends revision 3 only for --set-dscpmark,
# which the programs do not use).
#
# A mismatch prints the seed and program, then shrinks the first mismatching
# program (dropping rules and flows while the difference persists, up to
# XTCM_DIFF_SHRINK_ROUNDS rounds, each run against both modules) and prints
# its rules as iptables-restore input, its traffic and the differences.
#
# Environment (tests/run.sh hands XTCM_* to the VM): XTCM_DIFF_PROGRAMS
# (default 100; make differential: 1000), XTCM_DIFF_SEED, XTCM_DIFF_FIRST
# (first program number, default 0: XTCM_DIFF_SEED=S XTCM_DIFF_FIRST=P
# XTCM_DIFF_PROGRAMS=1 reruns program P of seed S alone), XTCM_DIFF_BATCH
# (programs at once, default 250), XTCM_DIFF_SHRINK_ROUNDS (default 25),
# XTCM_DIFF_REFERENCE ("in-tree", or "ours" to compare ours with itself: a
# check of the test's own determinism, or "translation": see
# tests/translate_exec.sh).

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"

# Few checks: every process is slow in the VM. iptables-legacy and
# iptables-nft are checked by require_xt_backends; modprobe, modinfo, insmod
# and rmmod are kmod.
require_tools "ip -Version" "conntrack --version" "nft --version" \
	"python3 --version" "modinfo -V"
if [ -z "${XTCM_MODULE:-}" ]; then
	echo "SKIP: Could not find the module to load (XTCM_MODULE is not set)"
	exit "$ksft_skip"
fi
reference=${XTCM_DIFF_REFERENCE:-in-tree}
intree=$(modinfo -n xt_connmark 2>/dev/null)
if [ "$reference" = in-tree ] &&
	[[ "$intree" != */kernel/net/netfilter/xt_connmark.ko* ]]; then
	echo "SKIP: Could not find the kernel's own xt_connmark (modinfo: '$intree')"
	exit "$ksft_skip"
fi

difftest=$TESTS_DIR/differential/difftest.py
programs=${XTCM_DIFF_PROGRAMS:-100}
seed=${XTCM_DIFF_SEED:-$((RANDOM * 32768 + RANDOM))}
first=${XTCM_DIFF_FIRST:-0}
batch=${XTCM_DIFF_BATCH:-250}
shrink_rounds=${XTCM_DIFF_SHRINK_ROUNDS:-25}
distro_libdir=$(pkg-config --variable=xtlibdir xtables 2>/dev/null ||
	echo /usr/lib/x86_64-linux-gnu/xtables)
work=$(mktemp -d)
ret=0

# restore_ours: our module loaded, whatever happened: the tests that follow
# need it. The namespaces (and so the rules) must be gone.
restore_ours()
{
	loaded_is ours >/dev/null && return 0
	unload_connmark && insmod "$XTCM_MODULE"
}

global_icmp_budget=""	# "PER_SEC BURST" to put back, where it is global
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	local per_sec burst

	cleanup_all_ns
	restore_ours
	if [ -n "$global_icmp_budget" ]; then
		read -r per_sec burst <<<"$global_icmp_budget"
		sysctl -q -w net.ipv4.icmp_msgs_per_sec="$per_sec" \
			net.ipv4.icmp_msgs_burst="$burst"
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# run_programs MODULE PLAN OUT [ARGS...]: the programs of PLAN with MODULE,
# results into OUT; ARGS go to difftest.py run.
run_programs()
{
	local start=$SECONDS

	use_module "$1" || return 1
	echo "# $SECONDS s: $1 module loaded in $((SECONDS - start)) s"
	python3 "$difftest" run --plan "$2" --out "$3" --client "$nsclient" \
		--router "$nsrouter" --server "$nsserver" --backends "$backends" \
		--distro-libdir "$distro_libdir" --batch "$batch" --tag "$1" \
		"${@:4}"
}

# translation_test: every program as iptables rules, then as their nft
# translation, both with our module; the translations must behave exactly
# as the rules (tests/translate_exec.sh).
translation_test()
{
	local -a reg2reg=()

	# nftables 1.1.2 with Linux 6.13 combine two runtime marks; elsewhere
	# such a translation must be rejected, loudly.
	if ip netns exec "$nsrouter" nft -c -f - >/dev/null 2>&1 <<-EOF
		table ip xtcm_probe {
			chain probe { meta mark set meta mark xor ct mark; }
		}
	EOF
	then
		reg2reg=(--reg2reg)
		echo "# nft $(nft --version | cut -d' ' -f2) on $(uname -r) has register-to-register bitwise"
	else
		echo "# nft $(nft --version | cut -d' ' -f2) on $(uname -r) lacks register-to-register bitwise: such translations must be rejected"
	fi
	if ! run_programs ours "$work/plan.json" "$work/ra.json" --tag iptables ||
		! run_programs ours "$work/plan.json" "$work/rb.json" --tag nft \
			--translate; then
		echo "FAIL: the programs did not run to the end"
		return 1
	fi
	if python3 "$difftest" compare-translation --plan "$work/plan.json" \
		"${reg2reg[@]}" "$work/ra.json" "$work/rb.json"; then
		echo "PASS: the nft translations of the connmark.txlate cases and of $programs programs of seed $seed behave as the iptables rules (counters, ct marks, packet marks)"
	else
		return 1
	fi
}

# shrink: reduce the first mismatching program, round by round: every
# candidate (without one rule, without one chain's rules, one half of the
# rules, without one flow, one flow alone) runs with both modules at once;
# the smallest that still differs is the next program. Then print it.
shrink()
{
	local round

	for ((round = 1; round <= shrink_rounds; round++)); do
		python3 "$difftest" shrink-cands "$work/cur.json" \
			>"$work/cands.json" || break
		if ! run_programs "$reference" "$work/cands.json" \
			"$work/ca.json" ||
			! run_programs ours "$work/cands.json" "$work/cb.json"; then
			echo "FAIL: the shrink's round $round did not run to the end"
			break
		fi
		python3 "$difftest" shrink-pick --names "$reference" ours \
			"$work/cur.json" "$work/cands.json" "$work/ca.json" \
			"$work/cb.json" >"$work/next.json" || break
		mv "$work/next.json" "$work/cur.json"
	done
	python3 "$difftest" repro "$work/cur.json"
}

echo "# XTCM_DIFF_SEED=$seed XTCM_DIFF_FIRST=$first XTCM_DIFF_PROGRAMS=$programs (reference: $reference)"
if ! setup_router_topology; then
	echo "FAIL: cannot build the namespaces"
	exit "$ksft_fail"
fi
require_xt_backends "$nsrouter"
backends=$XT_BACKENDS
echo "# $SECONDS s: namespaces ready, backends: $backends"
# Enough client addresses for a batch and for the shrink's candidates.
slots=$((programs < batch ? programs : batch))
slots=$((slots < 64 ? 64 : slots))
gen_args=()
if [ "$reference" = translation ]; then
	gen_args=(--txlate "$TESTS_DIR/plugin/connmark.txlate")
	slots=$batch
fi
python3 "$difftest" gen --seed "$seed" --first "$first" --count "$programs" \
	--backends "$backends" --addrs "$slots" --addrs-out "$work/addrs" \
	"${gen_args[@]}" >"$work/plan.json" || exit "$ksft_fail"
echo "# $SECONDS s: programs generated"
ip -n "$nsclient" -batch "$work/addrs" || exit "$ksft_fail"
ip -n "$nsrouter" -batch - <<-EOF || exit "$ksft_fail"
	route add 10.64.0.0/10 via 10.0.1.99
	route add dead:40::/64 via dead:1::99
EOF
# Every ICMP error must go out (no rate limit), and no flow's conntrack entry
# may expire before it is read. The ICMP budget (icmp_msgs_*) is per
# namespace on 6.1 and later; on Debian 11's 5.10 it is global, and cleanup
# puts it back.
icmp_budget=(net.ipv4.icmp_msgs_per_sec=1000000 net.ipv4.icmp_msgs_burst=1000000)
for ns in "$nsclient" "$nsrouter" "$nsserver"; do
	ip netns exec "$ns" sysctl -q -w net.ipv4.icmp_ratelimit=0 \
		net.ipv6.icmp.ratelimit=0 || exit "$ksft_fail"
	if ip netns exec "$ns" test -e /proc/sys/net/ipv4/icmp_msgs_per_sec; then
		ip netns exec "$ns" sysctl -q -w "${icmp_budget[@]}" ||
			exit "$ksft_fail"
	fi
done
if ! ip netns exec "$nsrouter" test -e /proc/sys/net/ipv4/icmp_msgs_per_sec; then
	echo "# the ICMP budget is global on $(uname -r): raised until the end"
	global_icmp_budget=$(sysctl -n net.ipv4.icmp_msgs_per_sec net.ipv4.icmp_msgs_burst |
		paste -sd' ')
	sysctl -q -w "${icmp_budget[@]}" || exit "$ksft_fail"
fi
ip netns exec "$nsrouter" sysctl -q -w \
	net.netfilter.nf_conntrack_tcp_timeout_close=3600 \
	net.netfilter.nf_conntrack_udp_timeout=3600 \
	net.netfilter.nf_conntrack_udp_timeout_stream=3600 \
	net.netfilter.nf_conntrack_icmp_timeout=3600 \
	net.netfilter.nf_conntrack_icmpv6_timeout=3600 || exit "$ksft_fail"

echo "# $SECONDS s: namespaces and programs ready"
if [ "$reference" = translation ]; then
	translation_test || ret=1
elif run_programs "$reference" "$work/plan.json" "$work/ra.json" &&
	run_programs ours "$work/plan.json" "$work/rb.json"; then
	if python3 "$difftest" compare --plan "$work/plan.json" \
		--names "$reference" ours --first-mismatch "$work/cur.json" \
		"$work/ra.json" "$work/rb.json"; then
		echo "# $SECONDS s: compared"
		echo "PASS: $programs programs of seed $seed: $reference and ours agree on every counter, ct mark and packet mark"
	else
		ret=1
		if [ -s "$work/cur.json" ]; then
			echo "# shrinking the first mismatching program"
			shrink
		fi
	fi
else
	echo "FAIL: the programs did not run to the end"
	ret=1
fi

cleanup_all_ns
if restore_ours; then
	echo "PASS: our xt_connmark $(cat /sys/module/xt_connmark/version) is loaded again"
else
	echo "FAIL: our xt_connmark is not loaded again"
	ret=1
fi
exit "$ret"
