#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# wg-quick (Debian 12's wireguard-tools) brings up a full-tunnel WireGuard
# client on the router, whose CONNMARK rules carry the tunnel's own UDP
# through the policy routing: its fwmark (51820, "wg set wg0 fwmark") keeps
# the encrypted packets out of the tunnel's table, POSTROUTING's
# "CONNMARK --save-mark" puts it on their conntrack entry and PREROUTING's
# "CONNMARK --restore-mark" on the replies, so that the reverse path filter
# (src_valid_mark) sees the replies with the mark the requests had.
# wg-quick writes those rules with iptables-restore only when no nft is in
# PATH, so it runs with a PATH where nft is hidden and iptables,
# iptables-save, iptables-restore and ip6tables' are the legacy, then the
# nft backend's. Each backend's tunnel carries the same traffic with our
# module and with the kernel's (client_case), and the WireGuard flow's
# entry must have the mark saved and its replies the mark restored.
#
#   nsrouter (wg0 10.0.77.2, dead:77::2) veth1 -- veth0 nsserver (wg0
#   10.0.2.1:5183, the WireGuard client         10.0.77.1, dead:77::1)
#   with AllowedIPs 0.0.0.0/0, ::/0             10.0.2.99:5182, its peer
#
# The traffic is the router's own, to the server's tunnel addresses (where
# observe.py serves). The ports are below 32768, which observe.py's ct
# keeps.

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

WG_TABLE=51820
WG_SERVER_PORT=5182
WG_ROUTER_PORT=5183
WG_CONF=$CLIENT_WORK/wg0.conf
WG_PATH=""

client_env_ok
install_client_debs
require_tools "wg --version" "modprobe wireguard"
trap client_cleanup EXIT

# wg_keys: the two ends' keys, the same for every run, and the router's
# wg-quick configuration.
wg_keys()
{
	local end

	for end in router server; do
		(umask 077 && wg genkey >"$CLIENT_WORK/$end.key") || return
		wg pubkey <"$CLIENT_WORK/$end.key" >"$CLIENT_WORK/$end.pub" ||
			return
	done
	cat >"$WG_CONF" <<-EOF
		[Interface]
		PrivateKey = $(cat "$CLIENT_WORK/router.key")
		ListenPort = $WG_ROUTER_PORT
		Address = 10.0.77.2/32, dead:77::2/128

		[Peer]
		PublicKey = $(cat "$CLIENT_WORK/server.pub")
		Endpoint = 10.0.2.99:$WG_SERVER_PORT
		AllowedIPs = 0.0.0.0/0, ::/0
	EOF
}

# wg_path BACKEND: WG_PATH, a PATH of /usr/bin and of every command of
# /usr/sbin but nft, with iptables, ip6tables and their -save and -restore
# BACKEND's (Debian's alternatives choose them otherwise).
wg_path()
{
	local dir=$CLIENT_WORK/path-$1 ipt suffix

	mkdir -p "$dir" && ln -sf /usr/sbin/* "$dir/" && rm "$dir/nft" || return
	for ipt in iptables ip6tables; do
		for suffix in "" -save -restore; do
			ln -sf "/usr/sbin/$ipt-$1$suffix" "$dir/$ipt$suffix" ||
				return
		done
	done
	WG_PATH=$dir:/usr/bin
}

# wg_quick up|down: the router's wg-quick, with WG_PATH.
wg_quick()
{
	ip netns exec "$nsrouter" env PATH="$WG_PATH" wg-quick "$1" "$WG_CONF"
}

# client_start: the server's end of the tunnel (its peer's endpoint is
# learnt from the handshake), then wg-quick up on the router.
client_start()
{
	ip -net "$nsserver" link add wg0 type wireguard || return
	ip netns exec "$nsserver" wg set wg0 listen-port "$WG_SERVER_PORT" \
		private-key "$CLIENT_WORK/server.key" \
		peer "$(cat "$CLIENT_WORK/router.pub")" \
		allowed-ips 10.0.77.2/32,dead:77::2/128 || return
	ip -net "$nsserver" -batch - <<-EOF || return
		addr add 10.0.77.1/32 dev wg0
		addr add dead:77::1/128 dev wg0
		link set wg0 up
		route add 10.0.77.2/32 dev wg0
		route add dead:77::2/128 dev wg0
	EOF
	wg_quick up
}

# client_traffic: the router's own traffic through the tunnel. WireGuard
# answers the last data it received with a keepalive 10 s later unless it
# sent something since: the first keepalive of persistent-keepalive now
# (the next one 18 h later) makes the observations independent of how
# long they take.
client_traffic()
{
	client_send "$nsrouter" 10.0.77.1 dead:77::1 || return
	ip netns exec "$nsrouter" wg set wg0 \
		peer "$(cat "$CLIENT_WORK/server.pub")" persistent-keepalive 65535
}

# client_stop: wg-quick down; its policy routing must be gone too.
client_stop()
{
	wg_quick down || return
	if ip -net "$nsrouter" -4 rule show | grep -q "lookup $WG_TABLE" ||
		ip -net "$nsrouter" -6 rule show | grep -q "lookup $WG_TABLE"; then
		echo "wg-quick down left a rule for table $WG_TABLE"
		return 1
	fi
}

# wg_marked NAME BACKEND: NAME's rules are BACKEND's (two CONNMARK rules in
# each family), and in both runs the entry of the WireGuard flow has the
# fwmark saved and its replies had it restored before the observer's
# prerouting hook.
wg_marked()
{
	local dir=$CLIENT_WORK/$1 module rules mark

	rules=$(grep -c "^ip6\?tables-$2: .*-j CONNMARK --\(save\|restore\)-mark" "$dir/ours/rules")
	expect "$1: the tool's rules are iptables-$2's (4 CONNMARK rules)" \
		"$rules" = 4 -a "$(wc -l <"$dir/ours/rules")" = 4
	mark=$(printf '0x%x' "$WG_TABLE")
	for module in ours in-tree; do
		if grep -q "^udp src=10.0.2.1 dst=10.0.2.99 sport=$WG_ROUTER_PORT dport=$WG_SERVER_PORT .* mark=$WG_TABLE$" \
			"$dir/$module/ct"; then
			pass "$1, $module: the WireGuard flow's ct mark is the saved fwmark $WG_TABLE"
		else
			fail "$1, $module: no WireGuard flow with ct mark $WG_TABLE"
		fi
		if grep -q "^prerouting: 10.0.2.99 > 10.0.2.1 [^ ]* mark $mark ct mark $mark: [1-9]" \
			"$dir/$module/marks"; then
			pass "$1, $module: the WireGuard replies' mark is restored ($mark)"
		else
			fail "$1, $module: no WireGuard reply with mark $mark at prerouting"
		fi
	done
}

# wg_native_nft: what Debian's default PATH gets instead: with nft in it,
# wg-quick writes its own nftables table and no CONNMARK rule at all.
wg_native_nft()
{
	local rules

	WG_PATH=$PATH
	if ! client_topology || ! client_start >"$CLIENT_WORK/nft-native.log" 2>&1; then
		cat "$CLIENT_WORK/nft-native.log"
		fail "wg-quick with nft in PATH: the topology or the tool's start"
		return
	fi
	rules=$(connmark_rules)
	echo "# wg-quick with nft in PATH: table ip wg-quick-wg0, $(ip netns exec "$nsrouter" nft list table ip wg-quick-wg0 | grep -c 'ct mark set') 'ct mark set' rule, no CONNMARK"
	expect "wg-quick with nft in PATH: no CONNMARK rule" -z "$rules"
	client_stop >>"$CLIENT_WORK/nft-native.log" 2>&1 ||
		fail "wg-quick with nft in PATH: the tool's stop"
	cleanup_all_ns
}

wg_keys || { fail "the WireGuard keys"; exit; }
for backend in $(client_backends legacy nft); do
	wg_path "$backend" || { fail "the PATH of iptables-$backend"; continue; }
	client_case "wg-quick-$backend" &&
		wg_marked "wg-quick-$backend" "$backend"
done
wg_native_nft
