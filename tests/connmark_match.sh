#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# connmark match: value, value/mask and "!" on forwarded traffic, with both
# iptables backends and both address families.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   dead:1::99        dead:1::1    dead:2::1     dead:2::99
#
# One UDP flow per ct mark value (one datagram to server port 21000 + N,
# dropped and counted in the server's INPUT), all flows of a backend and
# family in one pass after a "conntrack -F". In the router's mangle table:
#
#   PREROUTING -i veth0 -p udp --dport PORT -j CONNMARK --set-xmark CTMARK
#   FORWARD    -i veth0 -p udp --dport PORT -j flowN
#   flowN      one rule "-m connmark [!] --mark MARK[/MASK]" per match below
#
# Each rule's counter must be 1 exactly where
# ((CTMARK & MASK) == MARK) ^ invert, computed here, and 0 elsewhere; the ct
# mark itself is read back with conntrack -L.

# shellcheck disable=SC2317 # the checks run from for_each_backend_family
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_xt_tools "sysctl -V"

trap cleanup_all_ns EXIT

ret=0
M32=0xffffffff
PORT0=21000

# The ct marks of the flows.
CTMARKS=(0x0 0x1 0x2 0xff00 0xdeadbeef 0x80000000 0xffffffff)

match_mark=()
match_mask=()
match_inv=()
match_text=()

# add_match MARK [MASK] [!]: one connmark rule; without MASK the option has
# no "/mask" and the mask is all ones.
add_match()
{
	local n=${#match_text[@]} mark=$1 mask=${2:-} inv=0 text

	[ "${3:-}" = "!" ] && inv=1
	text="--mark $mark${mask:+/$mask}"
	[ "$inv" = 1 ] && text="! $text"
	match_mark[n]=$((mark))
	match_mask[n]=$((${mask:-$M32}))
	match_inv[n]=$inv
	match_text[n]=$text
}

add_match 0x0
add_match 0x0 "" "!"
add_match 0x1
add_match 0x2
add_match 0x2 "" "!"
add_match 0xdeadbeef
add_match 0xffffffff
add_match 0xffffffff "" "!"
add_match 0xff00 0xff00
add_match 0xff00 0xff00 "!"
add_match 0x0 0x1
add_match 0x1 0x1
add_match 0x1 0x1 "!"
add_match 0xbe00 0xff00
add_match 0x80000000 0x80000000
add_match 0xef 0xff "!"
add_match 0x0 0x0
add_match 0x0 0x0 "!"
# A mark with bits outside the mask never equals (ctmark & mask).
add_match 0x3 0x1
add_match 0x3 0x1 "!"

dump_state()
{
	dump_xt_state "$nsrouter" "$IPT" mangle
	echo "# $IPT -t filter -v -S INPUT ($nsserver)"
	ip netns exec "$nsserver" "$IPT" -t filter -v -S INPUT
}

# load_rules: the router's and the server's rules for every flow.
load_rules()
{
	local j k port rules="*mangle"$'\n' server="*filter"$'\n'

	for j in "${!CTMARKS[@]}"; do
		rules+=":flow$j - [0:0]"$'\n'
	done
	for j in "${!CTMARKS[@]}"; do
		port=$((PORT0 + j))
		rules+="-A PREROUTING -i veth0 -p udp --dport $port -j CONNMARK --set-xmark ${CTMARKS[j]}
-A FORWARD -i veth0 -p udp --dport $port -j flow$j
"
		for k in "${!match_text[@]}"; do
			rules+="-A flow$j -m connmark ${match_text[k]}"$'\n'
		done
		server+="-A INPUT -i veth0 -p udp --dport $port -j DROP"$'\n'
	done
	ip netns exec "$nsrouter" "$IPT-restore" <<<"${rules}COMMIT" &&
		ip netns exec "$nsserver" "$IPT-restore" <<<"${server}COMMIT"
}

# check_flow J: the ct mark and every match counter of flow J.
check_flow()
{
	local j=$1 port=$((PORT0 + $1)) k want got ok=true hits=0 ctmark
	local what="$BACKEND IPv$FAM ct mark ${CTMARKS[$1]}"

	ctmark=${CTMARKS[j]}
	got=${ct_marks[$port]:-}
	if [ "$got" != "$((ctmark))" ]; then
		fail "$what: conntrack -L mark, want $((ctmark)), got ${got:-no entry}"
		ok=false
	fi
	for k in "${!match_text[@]}"; do
		# The reference: ((ctmark & mask) == mark) ^ invert.
		want=$((((ctmark & match_mask[k]) == match_mark[k]) ^ match_inv[k]))
		got=${counters["flow$j $((k + 1))"]:-none}
		if [ "$got" != "$want" ]; then
			fail "$what: -m connmark ${match_text[k]} counter, want $want, got $got"
			ok=false
		fi
		hits=$((hits + want))
	done
	$ok && echo "PASS: $what: ${#match_text[@]} connmark rules, the $hits expected ones matched"
}

run_batch()
{
	local -A counters ct_marks
	local -a ports
	local j got

	batch_failed=false
	if ! load_rules; then
		fail "$BACKEND IPv$FAM: connmark rules, want accepted, got rejected"
		return
	fi
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
	for j in "${!CTMARKS[@]}"; do
		ports+=("$((PORT0 + j))")
	done
	udp_send "$nsclient" "$SERVER" "${ports[@]}" ||
		fail "$BACKEND IPv$FAM: sending datagrams from the client, want success, got failure"
	got=$(busywait 3000 chain_packets_at_least "$nsserver" "$IPT" filter \
		INPUT "${#ports[@]}")
	[ "$got" = "${#ports[@]}" ] ||
		fail "$BACKEND IPv$FAM: datagrams at the server, want ${#ports[@]}, got $got"

	fill_assoc counters "$(chain_counters "$nsrouter" "$IPT" mangle)"
	fill_assoc ct_marks "$(ct_dport_marks "$nsrouter" -f "$CT_L3" -p udp)"

	for j in "${!CTMARKS[@]}"; do
		check_flow "$j"
	done
	$batch_failed && dump_state
	ip netns exec "$nsrouter" "$IPT-restore" <<<$'*mangle\nCOMMIT'
	ip netns exec "$nsserver" "$IPT-restore" <<<$'*filter\nCOMMIT'
}

if ! setup_router_topology; then
	echo "SKIP: Could not set up the client -- router -- server namespaces"
	exit "$ksft_skip"
fi

require_xt_backends "$nsrouter"
for_each_backend_family run_batch || ret=1

exit "$ret"
