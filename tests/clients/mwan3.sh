#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# OpenWrt's mwan3 (multi-WAN, fw3 and fw4 alike): its rules replayed
# verbatim, as its start writes them for two WAN interfaces (mwan3 needs
# uci and ubus, so it cannot run here), with both iptables backends,
# against our module and the kernel's own (tests/clients/lib.sh). mwan3
# keeps the WAN of a connection in bits 0x3f00 of the mark (interface id N
# is N << 8; 0x3f00 "default", the main table): a hook chain on PREROUTING
# and OUTPUT restores those bits from the ct mark for a packet that has
# none, marks a new connection by its rule's policy, and saves them back:
#
#   -m mark --mark 0x0/0x3f00 -j CONNMARK --restore-mark --nfmask 0x3f00 --ctmask 0x3f00
#   ... -j MARK --set-xmark 0x200/0x3f00 (policy wanb_only) ...
#   -j CONNMARK --save-mark --nfmask 0x3f00 --ctmask 0x3f00
#
# and policy routing picks the WAN by those bits (ip rule fwmark
# 0x100/0x3f00 lookup 1). Only the connected-network rules differ from
# mwan3's: it matches an ipset (-m set mwan3_connected_ipv4), here the
# same networks by -d. Its stop, replayed too, removes everything.
#
#   nsclient -- veth0 nsrouter veth1 (wan, id 1) -- nsserver, 10.0.9.99
#                              veth2 (wanb, id 2) -- nsserver, dead:9::99
#
# Traffic to the server's 10.0.9.99 and dead:9::99 (on both WANs' far
# side), from the client (PREROUTING) and from the router (OUTPUT): TCP
# is the "wanb" rule's (out by veth2, ct mark 0x200), UDP and ICMP the
# default rule's (veth1, 0x100). Both modules must give the same ct
# marks, marks per hook, routes and counters, and those marks.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

client_env_ok
trap client_cleanup EXIT

# mwan3_rules FAMILY: what mwan3's iptables-restore -n gets for the mangle
# table of FAMILY (4, 6).
mwan3_rules()
{
	local connected="-d 10.0.1.0/24" dst=10.0.9.99/32 suffix=ipv4
	[ "$1" = 6 ] && connected="-d dead:1::/64" dst=dead:9::99/128 suffix=ipv6

	cat <<-EOF
		*mangle
		:mwan3_hook - [0:0]
		:mwan3_ifaces_in - [0:0]
		:mwan3_iface_in_wan - [0:0]
		:mwan3_iface_in_wanb - [0:0]
		:mwan3_connected_$suffix - [0:0]
		:mwan3_rules - [0:0]
		:mwan3_policy_wan_only - [0:0]
		:mwan3_policy_wanb_only - [0:0]
		:mwan3_rule_wanb_tcp - [0:0]
		-A mwan3_hook -m mark --mark 0x0/0x3f00 -j CONNMARK --restore-mark --nfmask 0x3f00 --ctmask 0x3f00
		-A mwan3_hook -m mark --mark 0x0/0x3f00 -j mwan3_ifaces_in
		-A mwan3_hook -m mark --mark 0x0/0x3f00 -j mwan3_connected_$suffix
		-A mwan3_hook -m mark --mark 0x0/0x3f00 -j mwan3_rules
		-A mwan3_hook -j CONNMARK --save-mark --nfmask 0x3f00 --ctmask 0x3f00
		-A mwan3_hook -m mark ! --mark 0x3f00/0x3f00 -j mwan3_connected_$suffix
		-A mwan3_ifaces_in -m mark --mark 0x0/0x3f00 -j mwan3_iface_in_wan
		-A mwan3_ifaces_in -m mark --mark 0x0/0x3f00 -j mwan3_iface_in_wanb
		-A mwan3_iface_in_wan -i veth1 -m mark --mark 0x0/0x3f00 -m comment --comment wan -j MARK --set-xmark 0x100/0x3f00
		-A mwan3_iface_in_wanb -i veth2 -m mark --mark 0x0/0x3f00 -m comment --comment wanb -j MARK --set-xmark 0x200/0x3f00
		-A mwan3_connected_$suffix $connected -j MARK --set-xmark 0x3f00/0x3f00
		-A mwan3_policy_wan_only -m mark --mark 0x0/0x3f00 -m comment --comment "wan 1 1" -j MARK --set-xmark 0x100/0x3f00
		-A mwan3_policy_wanb_only -m mark --mark 0x0/0x3f00 -m comment --comment "wanb 1 1" -j MARK --set-xmark 0x200/0x3f00
		-A mwan3_rule_wanb_tcp -j mwan3_policy_wanb_only
		-A mwan3_rules -d $dst -p tcp -m mark --mark 0x0/0x3f00 -m comment --comment wanb_tcp -j mwan3_rule_wanb_tcp
		-A mwan3_rules -m mark --mark 0x0/0x3f00 -m comment --comment default_rule -j mwan3_policy_wan_only
		-A PREROUTING -j mwan3_hook
		-A OUTPUT -j mwan3_hook
		COMMIT
	EOF
}

# mwan3_routes ACTION: the routing tables and rules mwan3 keeps per
# interface (table N: the main table's routes, default via the WAN),
# "add" or "del".
mwan3_routes()
{
	local fam

	ip -net "$nsrouter" -batch - <<-EOF || return
		route $1 10.0.1.0/24 dev veth0 table 1
		route $1 10.0.2.0/24 dev veth1 table 1
		route $1 10.0.3.0/24 dev veth2 table 1
		route $1 default via 10.0.2.99 dev veth1 table 1
		route $1 10.0.1.0/24 dev veth0 table 2
		route $1 10.0.2.0/24 dev veth1 table 2
		route $1 10.0.3.0/24 dev veth2 table 2
		route $1 default via 10.0.3.99 dev veth2 table 2
		route $1 dead:1::/64 dev veth0 table 1
		route $1 dead:2::/64 dev veth1 table 1
		route $1 dead:3::/64 dev veth2 table 1
		route $1 default via dead:2::99 dev veth1 table 1
		route $1 dead:1::/64 dev veth0 table 2
		route $1 dead:2::/64 dev veth1 table 2
		route $1 dead:3::/64 dev veth2 table 2
		route $1 default via dead:3::99 dev veth2 table 2
	EOF
	for fam in -4 -6; do
		ip "$fam" -net "$nsrouter" -batch - <<-EOF || return
			rule $1 pref 1001 iif veth1 lookup 1
			rule $1 pref 1002 iif veth2 lookup 2
			rule $1 pref 2001 fwmark 0x100/0x3f00 lookup 1
			rule $1 pref 2002 fwmark 0x200/0x3f00 lookup 2
			rule $1 pref 2253 fwmark 0x3f00/0x3f00 lookup main
			rule $1 pref 2254 fwmark 0x3e00/0x3f00 blackhole
		EOF
	done
}

# shellcheck disable=SC2317 # called by client_run
client_start()
{
	setup_second_uplink || return
	mwan3_routes add || return
	mwan3_rules 4 | ip netns exec "$nsrouter" "iptables-$BACKEND-restore" -w -n &&
		mwan3_rules 6 | ip netns exec "$nsrouter" "ip6tables-$BACKEND-restore" -w -n
}

# shellcheck disable=SC2317 # called by client_run
client_traffic()
{
	client_send "$nsclient" 10.0.9.99 dead:9::99 &&
		client_send "$nsrouter" 10.0.9.99 dead:9::99
}

# client_stop: mwan3 stop's removal, per family: the hooks, then every
# mwan3_ chain flushed and deleted, then its rules and tables.
# shellcheck disable=SC2317 # called by client_run
client_stop()
{
	local ipt chain

	for ipt in "iptables-$BACKEND" "ip6tables-$BACKEND"; do
		ip netns exec "$nsrouter" "$ipt" -w -t mangle -D PREROUTING -j mwan3_hook &&
			ip netns exec "$nsrouter" "$ipt" -w -t mangle -D OUTPUT -j mwan3_hook ||
			return
		for chain in $(ip netns exec "$nsrouter" "$ipt" -w -t mangle -S |
			awk '$1 == "-N" && $2 ~ /^mwan3_/ { print $2 }'); do
			ip netns exec "$nsrouter" "$ipt" -w -t mangle -F "$chain" ||
				return
		done
		for chain in $(ip netns exec "$nsrouter" "$ipt" -w -t mangle -S |
			awk '$1 == "-N" && $2 ~ /^mwan3_/ { print $2 }'); do
			ip netns exec "$nsrouter" "$ipt" -w -t mangle -X "$chain" ||
				return
		done
	done
	mwan3_routes del
}

# expect_marks NAME PROTO DST MARK DEV: in the run with our module, both
# entries of PROTO to DST (from the client, from the router) have ct mark
# MARK, and PROTO's packets to DST left by DEV (the WAN of MARK) only.
expect_marks()
{
	local dir=$CLIENT_WORK/$1/ours proto=$2 dst=$3 mark=$4 dev=$5 n

	n=$(grep -c "^$proto src=[^ ]* dst=$dst .* mark=$mark\$" "$dir/ct")
	expect "$1: $proto to $dst: 2 entries with ct mark $mark" "$n" -eq 2
	left_by_only "$1" "$dst" "$proto" "$dev"
	expect "$1: $proto to $dst left by $dev only" $? -eq 0
}

for BACKEND in $(client_backends legacy nft); do
	client_case "mwan3-$BACKEND" || continue
	for dst in 10.0.9.99 dead:9::99; do
		expect_marks "mwan3-$BACKEND" tcp "$dst" $((0x200)) veth2
		expect_marks "mwan3-$BACKEND" udp "$dst" $((0x100)) veth1
	done
done
exit "$ret"
