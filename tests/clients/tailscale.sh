#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Tailscale (1.96 and later, not in Debian): the rules its iptables mode
# writes replayed verbatim, as "tailscale up" on a subnet router leaves
# them, with both iptables backends, against our module and the kernel's
# own (tests/clients/lib.sh). tailscaled marks its own sockets 0x80000 in
# bits 0xff0000 (policy routing sends them by the main table, not through
# the tunnel); two CONNMARK rules at position 1 of mangle keep that mark
# on a connection's replies:
#
#   OUTPUT:     -m conntrack --ctstate NEW -j CONNMARK --save-mark --nfmask 0xff0000 --ctmask 0xff0000
#   PREROUTING: -m conntrack --ctstate ESTABLISHED,RELATED -m connmark ! --mark 0x0/0xff0000
#               -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000
#
# with its ts-forward chain marking what comes in by the tunnel 0x40000
# (for its MASQUERADE) and its routing rules: fwmark 0x80000/0xff0000 by
# the main table, else table 52, the tunnel's. Its "tailscale down",
# replayed too, removes them.
#
#   nsclient -- veth0 nsrouter veth1 (main: default) -- nsserver
#                              veth2 ("tailscale0", table 52) -- nsserver
#
# Traffic to the server's 10.0.9.99 and dead:9::99: from the router with
# tailscaled's mark (out by veth1, ct mark 0x80000, restored on the
# replies), and from the client through the router, unmarked (by the
# tunnel, veth2, ct mark 0). Both modules must give the
# same ct marks, marks per hook, routes and counters, and those marks.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

client_env_ok
trap client_cleanup EXIT

# tailscale_routes ACTION: its table 52 and rules, "add" or "del".
tailscale_routes()
{
	local fam

	ip -net "$nsrouter" -batch - <<-EOF || return
		route $1 10.0.9.0/24 dev veth2 via 10.0.3.99 table 52
		route $1 dead:9::/64 dev veth2 via dead:3::99 table 52
	EOF
	for fam in -4 -6; do
		ip "$fam" -net "$nsrouter" -batch - <<-EOF || return
			rule $1 pref 5210 fwmark 0x80000/0xff0000 lookup main
			rule $1 pref 5230 fwmark 0x80000/0xff0000 lookup default
			rule $1 pref 5250 fwmark 0x80000/0xff0000 unreachable
			rule $1 pref 5270 lookup 52
		EOF
	done
}

# tailscale_ipt IPTABLES ACTION: its rules (the same in both families), each
# as it runs iptables, added (-N, -I, -A) or deleted (-D, -F, -X).
tailscale_ipt()
{
	local ipt=$1 add=$2

	if [ "$add" = add ]; then
		ip netns exec "$nsrouter" "$ipt" -w -t filter -N ts-forward &&
			ip netns exec "$nsrouter" "$ipt" -w -t filter -I FORWARD 1 -j ts-forward &&
			ip netns exec "$nsrouter" "$ipt" -w -t filter -A ts-forward -i veth2 -j MARK --set-xmark 0x40000/0xff0000 &&
			ip netns exec "$nsrouter" "$ipt" -w -t filter -A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT &&
			ip netns exec "$nsrouter" "$ipt" -w -t filter -A ts-forward -o veth2 -j ACCEPT &&
			ip netns exec "$nsrouter" "$ipt" -w -t mangle -I PREROUTING 1 -m conntrack --ctstate ESTABLISHED,RELATED -m connmark ! --mark 0x0/0xff0000 -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000 &&
			ip netns exec "$nsrouter" "$ipt" -w -t mangle -I OUTPUT 1 -m conntrack --ctstate NEW -j CONNMARK --save-mark --nfmask 0xff0000 --ctmask 0xff0000
	else
		ip netns exec "$nsrouter" "$ipt" -w -t mangle -D PREROUTING -m conntrack --ctstate ESTABLISHED,RELATED -m connmark ! --mark 0x0/0xff0000 -j CONNMARK --restore-mark --nfmask 0xff0000 --ctmask 0xff0000 &&
			ip netns exec "$nsrouter" "$ipt" -w -t mangle -D OUTPUT -m conntrack --ctstate NEW -j CONNMARK --save-mark --nfmask 0xff0000 --ctmask 0xff0000 &&
			ip netns exec "$nsrouter" "$ipt" -w -t filter -D FORWARD -j ts-forward &&
			ip netns exec "$nsrouter" "$ipt" -w -t filter -F ts-forward &&
			ip netns exec "$nsrouter" "$ipt" -w -t filter -X ts-forward
	fi
}

# shellcheck disable=SC2317 # called by client_run
client_start()
{
	setup_second_uplink || return
	tailscale_routes add || return
	tailscale_ipt "iptables-$BACKEND" add &&
		tailscale_ipt "ip6tables-$BACKEND" add
}

# shellcheck disable=SC2317 # called by client_run
client_traffic()
{
	client_send "$nsrouter" --mark 0x80000 10.0.9.99 dead:9::99 &&
		client_send "$nsclient" 10.0.9.99 dead:9::99
}

# shellcheck disable=SC2317 # called by client_run
client_stop()
{
	tailscale_ipt "iptables-$BACKEND" del &&
		tailscale_ipt "ip6tables-$BACKEND" del &&
		tailscale_routes del
}

# expect_marks NAME SRC DST MARK DEV: in the run with our module, the TCP,
# UDP and ICMP entries from SRC to DST (one at least) have ct mark MARK, their packets
# to DST (with MARK) left by DEV only, and those of the replies had MARK
# (if not 0) restored at prerouting.
expect_marks()
{
	local dir=$CLIENT_WORK/$1/ours src=$2 dst=$3 mark=$4 dev=$5 proto n all hex
	local -a protos=(tcp udp icmp)

	hex=$(printf 0x%x "$mark")
	[[ $dst == *:* ]] && protos=(tcp udp icmpv6)
	for proto in "${protos[@]}"; do
		# The client's pings of setup_second_uplink add ICMP entries.
		all=$(grep -c "^$proto src=$src dst=$dst " "$dir/ct")
		n=$(grep -c "^$proto src=$src dst=$dst .*mark=$mark\$" "$dir/ct")
		expect "$1: $proto $src to $dst: $all entries, all with ct mark $mark" \
			"$n" -ge 1 -a "$n" -eq "$all"
		left_by_only "$1" "$dst" "$proto" "$dev" "$hex"
		expect "$1: $proto $src to $dst left by $dev only" $? -eq 0
		[ "$mark" = 0 ] && continue
		grep -q "^prerouting: $dst > $src $proto mark $hex " "$dir/marks"
		expect "$1: $proto $dst to $src: the mark restored at prerouting" $? -eq 0
	done
}

for BACKEND in $(client_backends legacy nft); do
	client_case "tailscale-$BACKEND" || continue
	expect_marks "tailscale-$BACKEND" 10.0.2.1 10.0.9.99 $((0x80000)) veth1
	expect_marks "tailscale-$BACKEND" 10.0.1.99 10.0.9.99 0 veth2
	expect_marks "tailscale-$BACKEND" dead:2::1 dead:9::99 $((0x80000)) veth1
	expect_marks "tailscale-$BACKEND" dead:1::99 dead:9::99 0 veth2
done
exit "$ret"
