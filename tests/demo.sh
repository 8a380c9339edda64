#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make demo: the how-to's basic example on a router, with real TCP
# connections, then the conntrack table with its marks and the packets each
# class carried.
#
#   nsclient 10.0.1.99 -- 10.0.1.1 nsrouter 10.0.2.1 -- 10.0.2.99 nsserver
#
# Router, mangle PREROUTING:
#   -j CONNMARK --restore-mark                  ct mark -> packet mark
#   -m mark ! --mark 0 -j ACCEPT                 classified already
#   -p tcp --dport 21 -j MARK --set-mark 1       "FTP"
#   -p tcp --dport 80 -j MARK --set-mark 2       "HTTP"
#   -j CONNMARK --save-mark                      packet mark -> ct mark
# and in FORWARD one counting rule per class.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

checktool "iptables --version" "run the demo without iptables"
checktool "conntrack --version" "run the demo without the conntrack tool"
checktool "socat -V" "run the demo without socat"

trap cleanup_all_ns EXIT

ret=0
# port: connections to make, class (ct mark) expected
declare -A connections=([21]=2 [80]=3 [443]=1)
declare -A class=([21]=1 [80]=2 [443]=0)

router()
{
	echo "router# $*"
	ip netns exec "$nsrouter" "$@"
}

if ! setup_router_topology; then
	echo "FAIL: cannot build the client/router/server namespaces"
	exit "$ksft_fail"
fi

echo "== the how-to's basic example, on the router"
router iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark
router iptables -t mangle -A PREROUTING -m mark ! --mark 0 -j ACCEPT
router iptables -t mangle -A PREROUTING -p tcp --dport 21 -j MARK --set-mark 1
router iptables -t mangle -A PREROUTING -p tcp --dport 80 -j MARK --set-mark 2
router iptables -t mangle -A PREROUTING -j CONNMARK --save-mark
for mark in 0 1 2; do
	router iptables -A FORWARD -p tcp -m mark --mark "$mark"
done

for port in "${!connections[@]}"; do
	ip netns exec "$nsserver" socat -T 5 "TCP-LISTEN:$port,fork,reuseaddr" \
		PIPE </dev/null >/dev/null 2>&1 &
done
for port in "${!connections[@]}"; do
	busywait 5000 ip netns exec "$nsserver" ss -Htln "sport = :$port" |
		grep -q LISTEN || echo "server on port $port did not start"
done

echo
echo "== TCP connections from the client"
for port in "${!connections[@]}"; do
	for ((i = 1; i <= connections[$port]; i++)); do
		reply=$(printf 'hello %s/%s\n' "$port" "$i" |
			ip netns exec "$nsclient" socat -t 2 - "TCP:10.0.2.99:$port")
		echo "port $port connection $i: server echoed '$reply'"
	done
done

echo
echo "== conntrack -L on the router: the mark of each connection"
ip netns exec "$nsrouter" conntrack -L -p tcp 2>/dev/null
for port in "${!connections[@]}"; do
	got=$(ct_marks "$nsrouter" -p tcp --dport "$port" | sort | uniq -c |
		awk '{ printf "%s%s x mark %s", sep, $1, $2; sep = ", " }')
	want="${connections[$port]} x mark ${class[$port]}"
	if [ "$got" = "$want" ]; then
		echo "PASS: port $port: $got"
	else
		echo "FAIL: port $port: want $want, got $got"
		ret=1
	fi
done

echo
echo "== packets per class (FORWARD counters: both directions)"
router iptables -L FORWARD -v -n -x
echo
echo "== rule counters: each connection was classified once"
router iptables -t mangle -L PREROUTING -v -n -x
for rule in 3 4; do
	port=$([ "$rule" = 3 ] && echo 21 || echo 80)
	got=$(rule_packets "$nsrouter" iptables mangle PREROUTING "$rule")
	if [ "$got" = "${connections[$port]}" ]; then
		echo "PASS: the port $port classification rule saw $got packets, one per connection"
	else
		echo "FAIL: the port $port classification rule saw $got packets, want ${connections[$port]}"
		ret=1
	fi
done
exit "$ret"
