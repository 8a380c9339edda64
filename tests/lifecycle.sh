#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Module lifecycle: load, use, tear down, unload, again and again.
#
#   nsclient -- nsrouter -- nsserver (setup_router_topology), every cycle
#
# Each cycle loads our xt_connmark, builds the namespaces with CONNMARK and
# connmark rules on the router (iptables-legacy for IPv4, iptables-nft for
# IPv6), sends traffic and checks the ct marks, checks that rmmod is refused
# while rules use the module, deletes the namespaces and unloads the module.
# After each cycle the module must be gone and nf_conntrack's reference count
# and its slab objects back where they were before the first cycle: nothing
# leaked a conntrack reference or entry.
#
# XTCM_LIFECYCLE_CYCLES sets the number of cycles (default 3; make lifecycle
# runs 100).

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

checktool "iptables-legacy --version" "run test without iptables-legacy"
checktool "ip6tables-nft --version" "run test without ip6tables-nft"
checktool "conntrack --version" "run test without the conntrack tool"
checktool "ping -V" "run test without ping"
checktool "rmmod -V" "run test without rmmod"
if [ -z "${XTCM_MODULE:-}" ]; then
	echo "SKIP: Could not find the module to load (XTCM_MODULE is not set)"
	exit "$ksft_skip"
fi

cycles=${XTCM_LIFECYCLE_CYCLES:-3}
ret=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	# Leave our module loaded for the tests that follow.
	[ -d /sys/module/xt_connmark ] || insmod "$XTCM_MODULE"
}
trap cleanup EXIT

fail()
{
	echo "FAIL: cycle $cycle: $*"
	ret=1
}

# conntrack_usage: nf_conntrack's module reference count and slab objects.
# Shrinking the cache first puts the per-CPU slabs back on the node lists,
# which slabinfo counts.
conntrack_usage()
{
	echo 1 >/sys/kernel/slab/nf_conntrack/shrink
	echo "refcnt $(cat /sys/module/nf_conntrack/refcnt)" \
	     "objects $(awk '$1 == "nf_conntrack" { print $2 }' /proc/slabinfo)"
}

# back_to_baseline: succeed once nothing holds more than before the cycles
# (namespaces are destroyed asynchronously, conntrack entries freed by RCU).
# shellcheck disable=SC2317 # called through busywait
back_to_baseline()
{
	local now

	now=$(conntrack_usage)
	echo "$now"
	[ "$now" = "$baseline" ]
}

router_rules()
{
	ip netns exec "$nsrouter" iptables-legacy-restore <<-EOF
	*mangle
	-A PREROUTING -j CONNMARK --restore-mark
	-A PREROUTING -m mark ! --mark 0 -j ACCEPT
	-A PREROUTING -p icmp -j MARK --set-mark 0x11
	-A PREROUTING -j CONNMARK --save-mark --mask 0xff
	-A FORWARD -m connmark --mark 0x11/0xff
	COMMIT
	EOF
	ip netns exec "$nsrouter" ip6tables-nft-restore <<-EOF
	*mangle
	-A PREROUTING -p ipv6-icmp -j CONNMARK --set-xmark 0x2200/0xff00
	-A FORWARD -m connmark --mark 0x2200/0xff00
	COMMIT
	EOF
}

if ! rmmod xt_connmark; then
	echo "FAIL: cannot unload xt_connmark before the first cycle"
	exit "$ksft_fail"
fi
# conntrack -L loads ctnetlink, which holds a reference on nf_conntrack.
modprobe -a nf_conntrack nf_conntrack_netlink
baseline=$(conntrack_usage)

for ((cycle = 1; cycle <= cycles; cycle++)); do
	if ! insmod "$XTCM_MODULE"; then
		fail "insmod failed"
		break
	fi
	if ! setup_router_topology; then
		fail "cannot build the namespaces"
		break
	fi
	if ! router_rules; then
		fail "cannot load the rules"
		break
	fi
	# The pings' entries must outlive a slow guest (KASAN) until read.
	ip netns exec "$nsrouter" sysctl -q -w \
		net.netfilter.nf_conntrack_icmp_timeout=3600 \
		net.netfilter.nf_conntrack_icmpv6_timeout=3600 ||
		fail "cannot raise the ICMP conntrack timeouts"
	ip netns exec "$nsclient" ping -q -c 2 -i 0.2 10.0.2.99 >/dev/null ||
		fail "IPv4 ping through the router failed"
	ip netns exec "$nsclient" ping -q -c 2 -i 0.2 dead:2::99 >/dev/null ||
		fail "IPv6 ping through the router failed"

	got=$(ct_marks "$nsrouter" -f ipv4 -p icmp | sort -u | tr '\n' ' ')
	[ "$got" = "17 " ] || fail "IPv4 ct mark: want 17, got '$got'"
	got=$(ct_marks "$nsrouter" -f ipv6 -p icmpv6 | sort -u | tr '\n' ' ')
	[ "$got" = "8704 " ] || fail "IPv6 ct mark: want 8704, got '$got'"
	got=$(rule_packets "$nsrouter" iptables-legacy mangle FORWARD 1)
	[ "$got" -ge 2 ] || fail "IPv4 connmark match counted $got, want >= 2"
	got=$(rule_packets "$nsrouter" ip6tables-nft mangle FORWARD 1)
	[ "$got" -ge 2 ] || fail "IPv6 connmark match counted $got, want >= 2"

	if rmmod xt_connmark 2>/dev/null; then
		fail "rmmod succeeded while rules use the module"
		break
	fi

	cleanup_all_ns
	if ! busywait 30000 rmmod xt_connmark 2>/dev/null; then
		fail "rmmod still refused after the namespaces were deleted"
		break
	fi
	if ! got=$(busywait 30000 back_to_baseline); then
		fail "nf_conntrack did not return to '$baseline': $got"
		break
	fi
done

[ "$ret" -eq 0 ] &&
	echo "PASS: $cycles cycles of load, rules and traffic, teardown, unload; nf_conntrack back to '$baseline' each time"
exit "$ret"
