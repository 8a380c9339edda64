#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Shorewall (Debian's shorewall 5.2.8, installed in the guest): a two-ISP
# configuration compiled ("shorewall compile") and started in the router,
# with both iptables backends (IPTABLES=/usr/sbin/iptables-legacy or
# /usr/sbin/iptables-nft in shorewall.conf; Shorewall runs the matching
# -restore), against our module and the kernel's own (tests/clients/
# lib.sh). Debian's shorewall.conf, with only what a namespace and a
# throwaway configuration need changed. Both providers "track": the
# provider mark (bits 0xff) is restored from the ct mark for every packet,
# and a connection that comes in from a provider is marked for it (its
# iptables-restore input):
#
#   -A PREROUTING -j CONNMARK --restore-mark --mask 0xff
#   -A routemark -i veth2 -j MARK --set-mark 0x2/0xff
#   -A routemark -m mark ! --mark 0/0xff -j CONNMARK --save-mark --mask 0xff
#
# and its mangle file sends the client's TCP and UDP to the "Internet" by
# ISP2: TCP by MARK(2) and SAVE, UDP by CONNMARK(2/0xff) and a RESTORE
# under a ct mark test (:C). Policy routing picks the provider by that
# mark (ip rule fwmark 0x2/0xff lookup 2); everything else leaves by
# ISP1, the "balance" provider. "clear" removes it all, rules and routing.
#
#   nsclient -- veth0 nsrouter veth1 (ISP1, mark 1) -- nsserver, 10.0.9.99
#                              veth2 (ISP2, mark 2) -- nsserver
#
# Traffic to the server's 10.0.9.99 from the client (PREROUTING) and from
# the router (OUTPUT): the client's TCP and UDP leave by veth2 with ct mark
# 2; its ICMP and the router's traffic by veth1 and get ct mark 1 from the
# replies, which the server sends back by veth1. Both modules must give the
# same ct marks, marks per hook, routes and counters, and those marks.
# IPv4 only: IPv6 is shorewall6's, not installed.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

client_env_ok
# Before the trap, whose exit status ($ret) would replace theirs.
install_client_debs
if [ ! -x /sbin/shorewall ]; then
	echo "FAIL: /sbin/shorewall missing after installing the packages"
	exit "$ksft_fail"
fi
trap client_cleanup EXIT

SW_DIR=$CLIENT_WORK/shorewall
# A fresh namespace's IPv4 rules: what "clear" must leave.
SW_RULES=$(printf '%s\n' "0:	from all lookup local" \
	"32766:	from all lookup main" "32767:	from all lookup default")

# sw_config: the configuration for $BACKEND in $SW_DIR/etc.
sw_config()
{
	local etc=$SW_DIR/etc

	mkdir -p "$etc" || return
	# Debian's file; a namespace has no route filter to set for providers,
	# and the guest's logs and rt_tables are left alone.
	sed -e "s|^IPTABLES=.*|IPTABLES=/usr/sbin/iptables-$BACKEND|" \
		-e 's|^ROUTE_FILTER=.*|ROUTE_FILTER=No|' \
		-e 's|^LOG_MARTIANS=.*|LOG_MARTIANS=No|' \
		-e 's|^STARTUP_LOG=.*|STARTUP_LOG=|' \
		-e 's|^KEEP_RT_TABLES=.*|KEEP_RT_TABLES=Yes|' \
		/etc/shorewall/shorewall.conf >"$etc/shorewall.conf" || return
	printf '%s\n' "fw	firewall" "loc	ipv4" "net	ipv4" >"$etc/zones"
	printf '%s\n' "?FORMAT 2" "loc	veth0" "net	veth1" "net	veth2" \
		>"$etc/interfaces"
	echo "all	all	ACCEPT" >"$etc/policy"
	cat >"$etc/providers" <<-EOF
		#NAME	NUMBER	MARK	DUPLICATE	INTERFACE	GATEWAY	OPTIONS
		ISP1	1	1	-	veth1	10.0.2.99	track,balance
		ISP2	2	2	-	veth2	10.0.3.99	track
	EOF
	cat >"$etc/mangle" <<-EOF
		#ACTION	SOURCE	DEST	PROTO	DPORT	SPORT	USER	TEST
		MARK(2)	veth0	10.0.9.99	tcp	80
		SAVE(0xff)	veth0	10.0.9.99	tcp	80	-	-	!0/0xff
		CONNMARK(2/0xff)	veth0	10.0.9.99	udp	80
		RESTORE(0xff)	veth0	10.0.9.99	udp	80	-	-	2/0xff:C
	EOF
}

# sw_routing_left: the IPv4 rules if not a fresh namespace's, and what is
# left in the providers' tables (1, 2).
sw_routing_left()
{
	local rules

	rules=$(ip -4 -net "$nsrouter" rule show)
	[ "$rules" = "$SW_RULES" ] || echo "$rules"
	ip -4 -net "$nsrouter" route show table all | grep -E ' table (1|2) '
}

# shellcheck disable=SC2317 # called by client_run
client_start()
{
	setup_second_uplink || return
	# USE_DEFAULT_RT=Yes puts the main table first (pref 999): the
	# "Internet" must be reached by the providers' routes only.
	ip -net "$nsrouter" route del 10.0.9.0/24 || return
	rm -rf "$SW_DIR" && sw_config || return
	# The compiler probes the kernel's and iptables' capabilities: in
	# the router, where the script runs.
	ip netns exec "$nsrouter" shorewall compile "$SW_DIR/etc" \
		"$SW_DIR/firewall" || return
	VARDIR=$SW_DIR/var ip netns exec "$nsrouter" "$SW_DIR/firewall" start
}

# shellcheck disable=SC2317 # called by client_run
client_traffic()
{
	client_send "$nsclient" 10.0.9.99 && client_send "$nsrouter" 10.0.9.99
}

# client_stop: "clear" (stop would leave its "stopped" rules), then none of
# Shorewall's routing rules and routes may be left.
# shellcheck disable=SC2317 # called by client_run
client_stop()
{
	local left

	VARDIR=$SW_DIR/var ip netns exec "$nsrouter" "$SW_DIR/firewall" clear ||
		return
	left=$(sw_routing_left)
	if [ -n "$left" ]; then
		echo "$left"
		echo "the routing of Shorewall's providers is left after clear"
		return 1
	fi
	SW_CLEARED=$((SW_CLEARED + 1))
}

# expect_ct NAME PROTO SRC MARK: in the run with our module, the entry of
# PROTO from SRC to 10.0.9.99 has ct mark MARK.
expect_ct()
{
	local n

	n=$(grep -c "^$2 src=$3 dst=10.0.9.99 .* mark=$4\$" "$CLIENT_WORK/$1/ours/ct")
	expect "$1: $2 from $3: 1 entry with ct mark $4" "$n" -eq 1
}

# expect_isp2 NAME PROTO: in the run with our module, every PROTO packet
# the router forwarded from the client to 10.0.9.99 left by veth2 (ISP2),
# with the packet mark cleared in FORWARD as Shorewall does.
expect_isp2()
{
	local marks=$CLIENT_WORK/$1/ours/marks fwd out

	fwd=$(awk -v p="$2" '$1 == "forward:" && $2 == "10.0.1.99" &&
		$4 == "10.0.9.99" && $5 == p { n += $(NF - 1) } END { print n + 0 }' \
		"$marks")
	out=$(awk -v p="$2" '$1 == "route:" && $3 == "veth2" &&
		$5 == "10.0.9.99" && $6 == p && $8 == "0x0:" { n += $(NF - 1) }
		END { print n + 0 }' "$marks")
	expect "$1: $2 from the client: all $fwd forwarded packets left by veth2" \
		"$fwd" -gt 0 -a "$fwd" -eq "$out"
}

for BACKEND in $(client_backends legacy nft); do
	SW_CLEARED=0
	client_case "shorewall-$BACKEND" || continue
	# client_case runs it twice, more when a run was disturbed.
	expect "shorewall-$BACKEND: clear removed the providers' rules and routes (every run)" \
		"$SW_CLEARED" -ge 2
	expect_ct "shorewall-$BACKEND" tcp 10.0.1.99 2
	expect_ct "shorewall-$BACKEND" udp 10.0.1.99 2
	expect_ct "shorewall-$BACKEND" icmp 10.0.1.99 1
	expect_ct "shorewall-$BACKEND" tcp 10.0.2.1 1
	expect_isp2 "shorewall-$BACKEND" tcp
	expect_isp2 "shorewall-$BACKEND" udp
done
exit "$ret"
