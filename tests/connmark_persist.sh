#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The classic persistent-mark pattern on a router, with real TCP connections,
# both iptables backends and both address families.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   dead:1::99        dead:1::1    dead:2::1     dead:2::99
#
# The server echoes on TCP ports 80 and 21 (socat). The router's mangle table:
#
#   PREROUTING  1 -j CONNMARK --restore-mark
#               2 -m mark ! --mark 0 -j ACCEPT
#               3 -p tcp --dport 80 -j MARK --set-mark 2
#               4 -p tcp --dport 21 -j MARK --set-mark 1
#   FORWARD     1 -p tcp -m mark --mark 2
#               2 -p tcp -m mark --mark 1
#               3 -p tcp -m mark --mark 0
#   POSTROUTING 1 -j CONNMARK --save-mark
#
# and the client counts its own TCP packets per port in filter OUTPUT and
# INPUT. After three connections to port 80 and two to port 21, each a few
# packets in both directions: the classification rules ran once per
# connection (its first packet), the ACCEPT shortcut took every other packet
# in both directions, FORWARD saw every packet the client counted with the
# connection's mark and none unmarked, and conntrack -L -m 2 (-m 1) lists
# exactly the port 80 (port 21) connections, identified by their source
# ports.

# shellcheck disable=SC2317 # the checks run from for_each_backend_family
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_xt_tools "ss -V" "socat -V" "sysctl -V"

trap cleanup_all_ns EXIT

ret=0
N80=3
N21=2
run=0

dump_state()
{
	dump_xt_state "$nsrouter" "$IPT" mangle
	echo "# conntrack -L -f $CT_L3 ($nsrouter)"
	ip netns exec "$nsrouter" conntrack -L -f "$CT_L3" 2>&1
	echo "# $IPT -t filter -v -S ($nsclient)"
	ip netns exec "$nsclient" "$IPT" -t filter -v -S
}

# shellcheck disable=SC2317 # called by busywait
listening()
{
	local n

	n=$(ip netns exec "$nsserver" ss -ltnH | grep -cE ':(80|21) ')
	echo "$n"
	[ "$n" -eq 4 ]
}

start_servers()
{
	local port

	for port in 80 21; do
		ip netns exec "$nsserver" socat \
			TCP4-LISTEN:"$port",reuseaddr,fork PIPE &
		ip netns exec "$nsserver" socat \
			TCP6-LISTEN:"$port",reuseaddr,fork,ipv6only=1 PIPE &
	done
	busywait 5000 listening >/dev/null
}

load_rules()
{
	ip netns exec "$nsrouter" "$IPT-restore" <<-EOF &&
		*mangle
		-A PREROUTING -j CONNMARK --restore-mark
		-A PREROUTING -m mark ! --mark 0 -j ACCEPT
		-A PREROUTING -p tcp --dport 80 -j MARK --set-mark 2
		-A PREROUTING -p tcp --dport 21 -j MARK --set-mark 1
		-A FORWARD -p tcp -m mark --mark 2
		-A FORWARD -p tcp -m mark --mark 1
		-A FORWARD -p tcp -m mark --mark 0
		-A POSTROUTING -j CONNMARK --save-mark
		COMMIT
	EOF
	ip netns exec "$nsclient" "$IPT-restore" <<-EOF
		*filter
		-A OUTPUT -o veth0 -p tcp --dport 80
		-A OUTPUT -o veth0 -p tcp --dport 21
		-A INPUT -i veth0 -p tcp --sport 80
		-A INPUT -i veth0 -p tcp --sport 21
		COMMIT
	EOF
}

# read_counters: the router's and the client's counters, into $counters.
read_counters()
{
	counters=()
	fill_assoc counters \
		"$(chain_counters "$nsrouter" "$IPT" mangle | sed 's/^/r /')"
	fill_assoc counters \
		"$(chain_counters "$nsclient" "$IPT" filter | sed 's/^/c /')"
	c80=$((${counters["c OUTPUT 1"]:-0} + ${counters["c INPUT 1"]:-0}))
	c21=$((${counters["c OUTPUT 2"]:-0} + ${counters["c INPUT 2"]:-0}))
}

# shellcheck disable=SC2317 # called by busywait
# settled: succeed once FORWARD has seen every packet the client counted
# (the last ACK of a connection may still be on its way).
settled()
{
	local -A counters
	local c80 c21

	read_counters
	echo "$c80 $c21"
	[ "${counters["r FORWARD 1"]:-none}" = "$c80" ] &&
		[ "${counters["r FORWARD 2"]:-none}" = "$c21" ]
}

# ct_flows MARK: "SPORT DPORT" of the entries with ct mark MARK, sorted.
ct_flows()
{
	ip netns exec "$nsrouter" conntrack -L -f "$CT_L3" -p tcp -m "$1" \
		2>/dev/null |
		awk '{
			sport = ""; dport = ""
			for (i = 1; i <= NF; i++) {
				if (sport == "" && $i ~ /^sport=/)
					sport = substr($i, 7)
				if (dport == "" && $i ~ /^dport=/)
					dport = substr($i, 7)
			}
			print sport, dport
		}' | sort
}

# connect PORT SPORT: one echoed connection from the client.
connect()
{
	local out

	out=$(printf 'connmark %s\npersist %s\n' "$1" "$2" |
		ip netns exec "$nsclient" socat -t 3 - \
			"$SERVER_SOCAT:$1,sourceport=$2" 2>&1)
	[ "$out" = "$(printf 'connmark %s\npersist %s' "$1" "$2")" ] && return
	fail "$what: connection to port $1 from port $2, want its data echoed, got: $out"
}

run_batch()
{
	local -A counters
	local what="$BACKEND IPv$FAM" i sport c80 c21 n got want mark
	local want80="" want21=""

	batch_failed=false
	run=$((run + 1))
	if ! load_rules; then
		fail "$what: rules, want accepted, got rejected"
		return
	fi
	# An entry closed by a reset lives 10 s in CLOSE, less than an
	# emulated guest may take to get here from its connection.
	ip netns exec "$nsrouter" sysctl -q -w \
		net.netfilter.nf_conntrack_tcp_timeout_close=3600 \
		net.netfilter.nf_conntrack_tcp_timeout_close_wait=3600 \
		net.netfilter.nf_conntrack_tcp_timeout_fin_wait=3600 \
		net.netfilter.nf_conntrack_tcp_timeout_last_ack=3600 \
		net.netfilter.nf_conntrack_tcp_timeout_time_wait=3600 || {
		fail "$what: conntrack's TCP timeouts, want set, got refused"
		return
	}
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1

	for ((i = 0; i < N80 + N21; i++)); do
		sport=$((40000 + run * 10 + i))
		if [ "$i" -lt "$N80" ]; then
			connect 80 "$sport"
			want80+="$sport 80"$'\n'
		else
			connect 21 "$sport"
			want21+="$sport 21"$'\n'
		fi
	done
	busywait 3000 settled >/dev/null
	read_counters

	got="${counters["r PREROUTING 3"]:-none}/${counters["r PREROUTING 4"]:-none}"
	if [ "$got" = "$N80/$N21" ]; then
		echo "PASS: $what: classification ran once per connection ($N80 x port 80, $N21 x port 21)"
	else
		fail "$what: classification counters port 80/port 21, want $N80/$N21 (one per connection), got $got"
	fi

	want=$((c80 + c21 - N80 - N21))
	got=${counters["r PREROUTING 2"]:-none}
	if [ "$got" = "$want" ] && [ "$c80" -ge $((5 * N80)) ] &&
	   [ "$c21" -ge $((5 * N21)) ]; then
		echo "PASS: $what: the ACCEPT shortcut took all $want later packets of the connections ($c80 + $c21 counted by the client)"
	else
		fail "$what: ACCEPT shortcut counter, want $want (client counted $c80 + $c21 packets, at least 5 per connection, minus $((N80 + N21)) first packets), got $got"
	fi

	got="${counters["r FORWARD 1"]:-none}/${counters["r FORWARD 2"]:-none}/${counters["r FORWARD 3"]:-none}"
	if [ "$got" = "$c80/$c21/0" ]; then
		echo "PASS: $what: in FORWARD all $c80 port 80 packets carried mark 2, all $c21 port 21 packets mark 1, none mark 0, both directions"
	else
		fail "$what: FORWARD counters mark 2/mark 1/mark 0, want $c80/$c21/0 (the client's packet counts), got $got"
	fi

	n=0
	for mark in 2 1; do
		got=$(ct_flows "$mark")
		if [ "$mark" = 2 ]; then
			want=$(sort <<<"${want80%$'\n'}")
		else
			want=$(sort <<<"${want21%$'\n'}")
		fi
		if [ "$got" = "$want" ]; then
			n=$((n + 1))
		else
			fail "$what: conntrack -L -m $mark sport/dport, want ${want//$'\n'/, }, got ${got//$'\n'/, }"
		fi
	done
	[ "$n" = 2 ] && echo "PASS: $what: conntrack -L -m 2 lists exactly the $N80 port 80 connections, -m 1 the $N21 port 21 ones"

	$batch_failed && dump_state
	ip netns exec "$nsrouter" "$IPT-restore" <<<$'*mangle\nCOMMIT'
	ip netns exec "$nsclient" "$IPT-restore" <<<$'*filter\nCOMMIT'
}

if ! setup_router_topology; then
	echo "SKIP: Could not set up the client -- router -- server namespaces"
	exit "$ksft_skip"
fi
if ! start_servers; then
	echo "SKIP: Could not start the socat servers"
	exit "$ksft_skip"
fi

require_xt_backends "$nsrouter"
for_each_backend_family run_batch || ret=1

exit "$ret"
