#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# OpenWrt's userspace on our module: tests/openwrt/libxt_CONNMARK.so sends
# every CONNMARK rule as revision 3, as OpenWrt's iptables does (func 0 for
# --save-mark and --restore-mark, VALUE for the set operations, DSCP for
# --set-dscpmark). Per backend and family:
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#
#  1. The router loads the how-to's complete example (restore; accept what
#     is marked; classify by port with MARK; save) and a --set-dscpmark
#     rule on the LAN -> WAN path with that plugin; the kernel holds the
#     revision 3 blobs, func 0 included. The client opens TCP connections
#     to three ports, each with its own DSCP (a DSCP rule in its OUTPUT):
#     each connection's ct mark must be its class, the state bit and its
#     DSCP in bits 31-26; each was classified once (the MARK rules'
#     counters); the packets carried the class (mark counters in FORWARD).
#  2. Our plugin saves that ruleset; restored by our plugin, the kernel
#     holds revision 2 for all but the --set-dscpmark rule, and new
#     connections get the same marks.

# shellcheck disable=SC2317 # the checks run from for_each_backend_family
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_xt_tools "socat -V" "ss -V"
XT_HOSTILE=$TESTS_DIR/hostile/xt_hostile
OPENWRT=$TESTS_DIR/openwrt
checktool "test -x $XT_HOSTILE" "find $XT_HOSTILE (make -C tests tools)"
checktool "test -f $OPENWRT/libxt_CONNMARK.so" \
	"find the OpenWrt-style plugin (make -C tests tools)"
OURS=$XTABLES_LIBDIR
DISTRO=$(pkg-config --variable=xtlibdir xtables 2>/dev/null)

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	local pids

	mapfile -t pids < <(jobs -p)
	[ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null
	cleanup_all_ns
}
trap cleanup EXIT

ret=0
batch_failed=false
STATE=0x01000000
declare -A class=([8021]=1 [8080]=2 [8443]=0)
declare -A dscp=([8021]=10 [8080]=46 [8443]=18)

router_rules()
{
	cat <<-EOF
		*mangle
		-A PREROUTING -j CONNMARK --restore-mark
		-A PREROUTING -m mark ! --mark 0 -j ACCEPT
		-A PREROUTING -p tcp --dport 8021 -j MARK --set-mark 1
		-A PREROUTING -p tcp --dport 8080 -j MARK --set-mark 2
		-A PREROUTING -j CONNMARK --save-mark
		-A FORWARD -i veth0 -o veth1 -j CONNMARK --set-dscpmark 0xfc000000/0x01000000
		-A FORWARD -m mark --mark 0x1/0xff
		-A FORWARD -m mark --mark 0x2/0xff
		COMMIT
	EOF
}

# router LIBDIR ARGS...: iptables of BACKEND and FAM on the router with
# LIBDIR's CONNMARK plugin.
router()
{
	local libdir=$1
	shift

	XTABLES_LIBDIR=$libdir:$DISTRO ip netns exec "$nsrouter" "$@"
}

# connect: one TCP connection to each port, each echoing one line.
connect()
{
	local port got

	for port in "${!class[@]}"; do
		got=$(echo "hello $port" | ip netns exec "$nsclient" \
			socat -t 2 - "$SERVER_SOCAT:$port" 2>&1)
		[ "$got" = "hello $port" ] ||
			fail "$WHAT: port $port: echo '$got'"
	done
}

# check_marks PHASE: the ct mark of each port's connection, the MARK rules
# and the mark counters.
check_marks()
{
	local port want got rule

	for port in "${!class[@]}"; do
		want=$((class[$port] | STATE | dscp[$port] << 26))
		got=$(ct_marks "$nsrouter" -f "$CT_L3" -p tcp --dport "$port" |
			sort -u | tr '\n' ' ')
		[ "$got" = "$want " ] ||
			fail "$WHAT $1: port $port: ct mark, want $want (class ${class[$port]}, DSCP ${dscp[$port]}), got '$got'"
	done
	for rule in 3 4; do
		got=$(rule_packets "$nsrouter" "$IPT" mangle PREROUTING "$rule")
		[ "$got" = 1 ] ||
			fail "$WHAT $1: PREROUTING rule $rule (classify) saw $got packets, want 1 (the SYN)"
	done
	for rule in 2 3; do
		got=$(rule_packets "$nsrouter" "$IPT" mangle FORWARD "$rule")
		[ "$got" -ge 6 ] ||
			fail "$WHAT $1: FORWARD rule $rule (mark class $((rule - 1))) counted $got packets, want a TCP connection's both ways (at least 6)"
	done
}

# kernel_revisions: "rev R HEX" of each CONNMARK target the router holds in
# mangle, in rule order.
kernel_revisions()
{
	ip netns exec "$nsrouter" "$XT_HOSTILE" dump "$BACKEND$FAM" mangle |
		sed -n 's/^CONNMARK //p'
}

# check_phase PHASE REV: the kernel holds the restore and save rules as
# revision REV (func 0) and the --set-dscpmark rule as revision 3; new
# connections get their marks.
check_phase()
{
	local want got

	want="rev $2 $(tginfo 0 0xffffffff 0xffffffff 0 0 2 0)
rev $2 $(tginfo 0 0xffffffff 0xffffffff 0 0 1 0)
rev 3 $(tginfo 0xfc000000 0x01000000 0xffffffff 0 26 0 2)"
	got=$(kernel_revisions)
	[ "$got" = "$want" ] ||
		fail "$WHAT $1: CONNMARK in the kernel, want '${want//$'\n'/; }', got '${got//$'\n'/; }'"
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
	connect
	check_marks "$1"
}

check_backend_family()
{
	local saved want got

	WHAT="$BACKEND ipv$FAM"
	batch_failed=false
	ip netns exec "$nsclient" "$IPT-restore" <<-EOF ||
		*mangle
		-A OUTPUT -p tcp --dport 8021 -j DSCP --set-dscp ${dscp[8021]}
		-A OUTPUT -p tcp --dport 8080 -j DSCP --set-dscp ${dscp[8080]}
		-A OUTPUT -p tcp --dport 8443 -j DSCP --set-dscp ${dscp[8443]}
		COMMIT
	EOF
		fail "$WHAT: the client's DSCP rules"

	# 1. OpenWrt's userspace.
	router_rules | router "$OPENWRT" "$IPT-restore" ||
		fail "$WHAT: the OpenWrt-style plugin's rules did not load"
	check_phase "OpenWrt's rules" 3

	# 2. Our plugin saves and restores them.
	saved=$(router "$OURS" "$IPT-save" -t mangle)
	want="-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A PREROUTING -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A FORWARD -i veth0 -o veth1 -j CONNMARK --set-dscpmark 0xfc000000/0x1000000"
	got=$(grep -- '-j CONNMARK' <<<"$saved")
	[ "$got" = "$want" ] ||
		fail "$WHAT: our save of OpenWrt's rules, want '${want//$'\n'/; }', got '${got//$'\n'/; }'"
	router "$OURS" "$IPT-restore" <<<"$saved" ||
		fail "$WHAT: our iptables-restore of our save failed"
	check_phase "restored by our plugin" 2

	if $batch_failed; then
		dump_xt_state "$nsrouter" "$IPT"
	else
		echo "PASS: $WHAT: OpenWrt's revision 3 rules (func 0 save/restore, --set-dscpmark) mark connections; our plugin saves them and restores them as revision 2 (+ one revision 3), same marks"
	fi
	router "$OURS" "$IPT" -t mangle -F
	ip netns exec "$nsclient" "$IPT" -t mangle -F
}

if ! setup_router_topology; then
	echo "SKIP: Could not set up the client -- router -- server namespaces"
	exit "$ksft_skip"
fi
require_xt_backends "$nsrouter"
for port in "${!class[@]}"; do
	ip netns exec "$nsserver" socat TCP4-LISTEN:"$port",reuseaddr,fork PIPE &
	ip netns exec "$nsserver" socat \
		TCP6-LISTEN:"$port",reuseaddr,fork,ipv6only=1 PIPE &
done
busywait 5000 sh -c "[ \$(ip netns exec $nsserver ss -ltnH | wc -l) -ge 6 ]" ||
	echo "# the servers did not all start"
for_each_backend_family check_backend_family || ret=1
exit "$ret"
