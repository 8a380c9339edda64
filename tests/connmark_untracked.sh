#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# CONNMARK and connmark on packets without a connection: untracked ones
# ("-j CT --notrack") and ones that carry only a template ("-j CT --zone 1"
# in the raw table), both iptables backends, both address families.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   dead:1::99        dead:1::1    dead:2::1     dead:2::99
#
# Three UDP flows from the client, one datagram each (dropped and counted in
# the server's INPUT), in one pass after a "conntrack -F" in the router:
#
# port 22000, untracked: raw "-j CT --notrack", then in mangle PREROUTING
#   the chain below. No CONNMARK rule may act: the packet mark stays 0x5a,
#   no conntrack entry appears, no connmark match matches, not even
#   "! --mark". A conntrack --ctstate UNTRACKED rule proves the setup.
# port 22001, tracked: the same chain on an ordinary connection, the control
#   that shows every rule works: ct mark 5, packet mark 5.
#
#      1 -j MARK --set-xmark 0x5a      5 -m mark --mark 0x5     9 --mark 0/0
#      2 -j CONNMARK --set-mark 5      6 -m connmark --mark 5  10 ! --mark 0/0
#      3 -j CONNMARK --restore-mark    7 ! --mark 5            11 UNTRACKED
#      4 -m mark --mark 0x5a           8 ! --mark 7            12 --save-mark
#
# port 22002, template: raw "-j CT --zone 1" attaches a template conntrack,
#   then, still in raw, CONNMARK --set-mark 5, CONNMARK --restore-mark,
#   -m mark --mark 0, -m connmark --mark 5, -m connmark ! --mark 5. Our
#   module treats a template like no conntrack at all, a deliberate
#   difference from upstream: upstream writes 5 into the template (which is
#   never copied into the connection), restores it into the packet mark and
#   matches it. Here the packet mark stays 0, neither connmark rule matches,
#   and the real connection, in zone 1, has mark 0 (so does upstream's).

# shellcheck disable=SC2317 # the checks run from for_each_backend_family
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_xt_tools "sysctl -V"

trap cleanup_all_ns EXIT

ret=0
P_NOTRACK=22000
P_TRACKED=22001
P_TEMPLATE=22002

# The chain of the untracked and the tracked flow (see the top), and the
# counters each rule must show.
FLOW_RULES=(
	"-j MARK --set-xmark 0x5a"
	"-j CONNMARK --set-mark 5"
	"-j CONNMARK --restore-mark"
	"-m mark --mark 0x5a"
	"-m mark --mark 0x5"
	"-m connmark --mark 5"
	"-m connmark ! --mark 5"
	"-m connmark ! --mark 7"
	"-m connmark --mark 0/0"
	"-m connmark ! --mark 0/0"
	"-m conntrack --ctstate UNTRACKED"
	"-j CONNMARK --save-mark"
)
# shellcheck disable=SC2034 # read through check_chain's nameref
WANT_NOTRACK=(1 1 1 1 0 0 0 0 0 0 1 1)
# shellcheck disable=SC2034
WANT_TRACKED=(1 1 1 0 1 1 0 1 1 0 0 1)

# The template flow's raw chain after "-j CT --zone 1".
TMPL_RULES=(
	"-j CT --zone 1"
	"-j CONNMARK --set-mark 5"
	"-j CONNMARK --restore-mark"
	"-m mark --mark 0"
	"-m connmark --mark 5"
	"-m connmark ! --mark 5"
)
# shellcheck disable=SC2034 # read through check_chain's nameref
WANT_TMPL=(1 1 1 1 0 0)

fail()
{
	echo "FAIL: $1"
	ret=1
	batch_failed=true
	part_failed=true
}

dump_state()
{
	dump_xt_state "$nsrouter" "$IPT" raw mangle
	echo "# $IPT -t filter -v -S INPUT ($nsserver)"
	ip netns exec "$nsserver" "$IPT" -t filter -v -S INPUT
}

load_rules()
{
	local rule port raw mangle server="*filter"$'\n'

	raw="*raw
:tmpl - [0:0]
-A PREROUTING -i veth0 -p udp --dport $P_NOTRACK -j CT --notrack
-A PREROUTING -i veth0 -p udp --dport $P_TEMPLATE -j tmpl
"
	for rule in "${TMPL_RULES[@]}"; do
		raw+="-A tmpl $rule"$'\n'
	done
	mangle="*mangle
:notrack - [0:0]
:tracked - [0:0]
-A PREROUTING -i veth0 -p udp --dport $P_NOTRACK -j notrack
-A PREROUTING -i veth0 -p udp --dport $P_TRACKED -j tracked
"
	for rule in "${FLOW_RULES[@]}"; do
		mangle+="-A notrack $rule"$'\n'"-A tracked $rule"$'\n'
	done
	for port in "$P_NOTRACK" "$P_TRACKED" "$P_TEMPLATE"; do
		server+="-A INPUT -i veth0 -p udp --dport $port -j DROP"$'\n'
	done
	ip netns exec "$nsrouter" "$IPT-restore" <<<"${raw}COMMIT
${mangle}COMMIT" &&
		ip netns exec "$nsserver" "$IPT-restore" <<<"${server}COMMIT"
}

# check_chain WHAT CHAIN RULES-ARRAY WANT-ARRAY: one counter per rule.
check_chain()
{
	local what=$1 chain=$2 i got
	local -n rules=$3 want=$4

	for i in "${!rules[@]}"; do
		got=${counters["$chain $((i + 1))"]:-none}
		[ "$got" = "${want[i]}" ] && continue
		fail "$what: rule $((i + 1)) \"${rules[i]}\" counter, want ${want[i]}, got $got"
	done
}

# check_ct WHAT PORT WANT_MARKS GOT_MARKS SOURCE: the marks of the entries
# of PORT ("" for none) as read from SOURCE.
check_ct()
{
	local want="mark $3" got="mark $4"

	[ "$4" = "$3" ] && return
	[ -n "$3" ] || want="no entry"
	[ -n "$4" ] || got="no entry"
	fail "$1: $5 for port $2, want $want, got $got"
}

run_batch()
{
	local -A counters ct_all ct_zone1 ct_proc
	local got part_failed

	batch_failed=false
	if ! load_rules; then
		fail "$BACKEND IPv$FAM: rules, want accepted, got rejected"
		return
	fi
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
	udp_send "$nsclient" "$SERVER" "$P_NOTRACK" "$P_TRACKED" "$P_TEMPLATE" ||
		fail "$BACKEND IPv$FAM: sending datagrams from the client, want success, got failure"
	got=$(busywait 3000 chain_packets_at_least "$nsserver" "$IPT" filter \
		INPUT 3)
	[ "$got" = 3 ] ||
		fail "$BACKEND IPv$FAM: datagrams at the server, want 3, got $got"

	fill_assoc counters "$(chain_counters "$nsrouter" "$IPT" raw)"
	fill_assoc counters "$(chain_counters "$nsrouter" "$IPT" mangle)"
	fill_assoc ct_all "$(ct_dport_marks "$nsrouter" -f "$CT_L3" -p udp)"
	fill_assoc ct_zone1 \
		"$(ct_dport_marks "$nsrouter" -f "$CT_L3" -p udp -w 1)"
	fill_assoc ct_proc "$(ct_proc_dport_marks "$nsrouter" "$CT_L3" udp)"

	part_failed=false
	check_chain "$BACKEND IPv$FAM untracked" notrack FLOW_RULES WANT_NOTRACK
	check_ct "$BACKEND IPv$FAM untracked" "$P_NOTRACK" "" \
		"${ct_all[$P_NOTRACK]:-}" "conntrack -L"
	check_ct "$BACKEND IPv$FAM untracked" "$P_NOTRACK" "" \
		"${ct_proc[$P_NOTRACK]:-}" /proc/net/nf_conntrack
	$part_failed || echo "PASS: $BACKEND IPv$FAM untracked: CONNMARK set/restore/save had no effect (packet mark 0x5a, no conntrack entry), no connmark rule matched, not even \"! --mark\""

	part_failed=false
	check_chain "$BACKEND IPv$FAM tracked" tracked FLOW_RULES WANT_TRACKED
	check_ct "$BACKEND IPv$FAM tracked" "$P_TRACKED" 5 \
		"${ct_all[$P_TRACKED]:-}" "conntrack -L"
	check_ct "$BACKEND IPv$FAM tracked" "$P_TRACKED" 5 \
		"${ct_proc[$P_TRACKED]:-}" /proc/net/nf_conntrack
	$part_failed || echo "PASS: $BACKEND IPv$FAM tracked control: ct mark 5, packet mark 5, connmark rules matched as expected"

	part_failed=false
	check_chain "$BACKEND IPv$FAM template" tmpl TMPL_RULES WANT_TMPL
	check_ct "$BACKEND IPv$FAM template" "$P_TEMPLATE" 0 \
		"${ct_zone1[$P_TEMPLATE]:-}" "conntrack -L -w 1 (zone 1)"
	check_ct "$BACKEND IPv$FAM template" "$P_TEMPLATE" 0 \
		"${ct_proc[$P_TEMPLATE]:-}" /proc/net/nf_conntrack
	$part_failed || echo "PASS: $BACKEND IPv$FAM template: CONNMARK/connmark in raw after CT --zone 1 skipped the template (packet mark 0, no match), the zone 1 connection has mark 0"

	$batch_failed && dump_state
	ip netns exec "$nsrouter" "$IPT-restore" <<<$'*raw\nCOMMIT\n*mangle\nCOMMIT'
	ip netns exec "$nsserver" "$IPT-restore" <<<$'*filter\nCOMMIT'
}

if ! setup_router_topology; then
	echo "SKIP: Could not set up the client -- router -- server namespaces"
	exit "$ksft_skip"
fi

require_xt_backends "$nsrouter"
for_each_backend_family run_batch || ret=1

exit "$ret"
