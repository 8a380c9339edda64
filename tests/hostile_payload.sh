#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Hostile input: malformed CONNMARK / connmark payloads handed straight to
# the kernel must each get a clean error, log nothing but our rate-limited
# message, and leave the ruleset that carries traffic working.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   dead:1::99        dead:1::1    dead:2::1     dead:2::99
#
# 1. The router gets an ordinary ruleset, both iptables backends, both
#    families: iptables-nft's mangle PREROUTING sets bits 8-15 of the ct mark
#    of the client's pings, legacy filter FORWARD bits 0-7, and a connmark
#    match per backend counts the echo replies carrying the whole mark. The
#    client pings the server (one flow per family).
# 2. In the router's namespace, hostile/xt_hostile installs rules through
#    IPT_SO_SET_REPLACE / IP6T_SO_SET_REPLACE (mangle) and through
#    nft_compat (NFT_MSG_NEWRULE with a "target" or "match" expression,
#    table xthostile): a few valid payloads of every revision, OpenWrt's
#    revision 3 --save-mark / --restore-mark (func 0) among them, which must
#    be accepted and read back from the kernel, then classes of malformed
#    ones (shift_bits 32..255, shift_dir 2..255, mode 3..255, func 0 with
#    SET and func 3..255, func 0 with a bad mode or shift, rev 3's
#    dscpmask/statemask/shift_bits, --set-dscpmark in a mode other than SET,
#    match invert 2..255, info too short and too long, unknown revisions, a
#    valid extension next to a bad one). Per
#    class: every payload got the class's errno, and what the kernel logged
#    meanwhile is only our module's messages (plus x_tables' "invalid size"
#    for the size classes; the emulator's clocksource/hrtimer complaints
#    are ignored). XTCM_HOSTILE_STEP=N: of each class of malformed payloads,
#    the first 16 and then every N-th only (default 1, 8 on the
#    KASAN/kmemleak debug kernel).
# 3. The tool's last valid rules are visible to the tools: iptables-legacy-
#    save and ip6tables-legacy-save show the rule, nft lists every valid
#    rule it added.
# 4. The ruleset still works: a second ping per family gets the same ct
#    mark, the first flow kept its mark, every counter counted both flows,
#    the rules are unchanged.
# 5. The kernel log of the whole run has no WARNING/BUG/Oops/KASAN/UBSAN;
#    our messages are rate-limited.
# 6. Once every rule is gone, new traffic creates no conntrack entry: no
#    failed payload left a conntrack reference (nf_ct_netns_get) behind.
#
# The tool is built on the host: make -C tests tools.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

HOSTILE=$TESTS_DIR/hostile/xt_hostile

checktool "ip -Version" "run test without ip tool"
checktool "iptables-legacy --version" "run test without iptables-legacy"
checktool "iptables-nft --version" "run test without iptables-nft"
checktool "nft --version" "run test without nft"
checktool "conntrack --version" "run test without conntrack tool"
checktool "ping -V" "run test without ping"
checktool "dmesg -V" "run test without dmesg"
if [ ! -x "$HOSTILE" ]; then
	echo "SKIP: Could not find $HOSTILE (make -C tests tools)"
	exit "$ksft_skip"
fi

trap cleanup_all_ns EXIT

ret=0

if ! setup_router_topology; then
	echo "SKIP: Could not set up the client -- router -- server namespaces"
	exit "$ksft_skip"
fi

# 1. The ruleset that carries traffic. Flows live long: the hostile run
# takes minutes in an emulated guest, the first flow must outlive it.
ip netns exec "$nsrouter" sysctl -q -w \
	net.netfilter.nf_conntrack_icmp_timeout=3600 \
	net.netfilter.nf_conntrack_icmpv6_timeout=3600 >/dev/null 2>&1
if ! ip netns exec "$nsrouter" iptables-legacy-restore <<-EOF ||
	*filter
	-A FORWARD -i veth0 -p icmp --icmp-type echo-request -j CONNMARK --set-mark 0x11/0xff
	-A FORWARD -i veth1 -p icmp --icmp-type echo-reply -m connmark --mark 0x1111
	COMMIT
	EOF
   ! ip netns exec "$nsrouter" ip6tables-legacy-restore <<-EOF ||
	*filter
	-A FORWARD -i veth0 -p ipv6-icmp --icmpv6-type echo-request -j CONNMARK --set-mark 0x22/0xff
	-A FORWARD -i veth1 -p ipv6-icmp --icmpv6-type echo-reply -m connmark --mark 0x2222
	COMMIT
	EOF
   ! ip netns exec "$nsrouter" iptables-nft-restore <<-EOF ||
	*mangle
	-A PREROUTING -i veth0 -p icmp --icmp-type echo-request -j CONNMARK --set-mark 0x1100/0xff00
	-A POSTROUTING -o veth0 -p icmp --icmp-type echo-reply -m connmark --mark 0x1111
	COMMIT
	EOF
   ! ip netns exec "$nsrouter" ip6tables-nft-restore <<-EOF
	*mangle
	-A PREROUTING -i veth0 -p ipv6-icmp --icmpv6-type echo-request -j CONNMARK --set-mark 0x2200/0xff00
	-A POSTROUTING -o veth0 -p ipv6-icmp --icmpv6-type echo-reply -m connmark --mark 0x2222
	COMMIT
	EOF
then
	echo "FAIL: cannot install the router's ruleset"
	exit "$ksft_fail"
fi
ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1

# ruleset: the router's rules without counters, to compare before and after.
ruleset()
{
	local ipt

	{
		for ipt in iptables-legacy ip6tables-legacy; do
			ip netns exec "$nsrouter" "$ipt-save" -t filter
		done
		for ipt in iptables-nft ip6tables-nft; do
			ip netns exec "$nsrouter" "$ipt-save" -t mangle
		done
	} 2>/dev/null | grep -v -e '^#' -e '^:'
}

# pings: one flow per family from the client, two echo requests each.
pings()
{
	ip netns exec "$nsclient" ping -q -c 2 -i 0.2 -W 2 10.0.2.99 >/dev/null ||
		fail "ping 10.0.2.99 through the router: no reply"
	ip netns exec "$nsclient" ping -q -c 2 -i 0.2 -W 2 dead:2::99 >/dev/null ||
		fail "ping dead:2::99 through the router: no reply"
}

# check_traffic FLOWS: every counter counted FLOWS * 2 packets, the router
# tracks FLOWS ping flows per family, each with the whole mark.
check_traffic()
{
	local flows=$1 want=$(($1 * 2)) key got l3 mark marks
	local -A c4=() c6=() n4=() n6=()

	fill_assoc c4 "$(chain_counters "$nsrouter" iptables-legacy filter)"
	fill_assoc c6 "$(chain_counters "$nsrouter" ip6tables-legacy filter)"
	fill_assoc n4 "$(chain_counters "$nsrouter" iptables-nft mangle)"
	fill_assoc n6 "$(chain_counters "$nsrouter" ip6tables-nft mangle)"
	for key in "FORWARD 1" "FORWARD 2"; do
		got=${c4["$key"]:-none}
		[ "$got" = "$want" ] ||
			fail "iptables-legacy filter $key (CONNMARK / connmark), want $want packets, got $got"
		got=${c6["$key"]:-none}
		[ "$got" = "$want" ] ||
			fail "ip6tables-legacy filter $key (CONNMARK / connmark), want $want packets, got $got"
	done
	for key in "PREROUTING 1" "POSTROUTING 1"; do
		got=${n4["$key"]:-none}
		[ "$got" = "$want" ] ||
			fail "iptables-nft mangle $key (CONNMARK / connmark), want $want packets, got $got"
		got=${n6["$key"]:-none}
		[ "$got" = "$want" ] ||
			fail "ip6tables-nft mangle $key (CONNMARK / connmark), want $want packets, got $got"
	done
	for l3 in ipv4 ipv6; do
		mark=4369	# 0x1111
		[ "$l3" = ipv6 ] && mark=8738	# 0x2222
		marks=$(ct_marks "$nsrouter" -f "$l3" | sort | uniq -c |
			awk '{ printf "%s%sx%s", sep, $1, $2; sep = " " }')
		[ "$marks" = "${flows}x$mark" ] ||
			fail "$l3 ping flows on the router, want ${flows}x$mark (count x ct mark), got '${marks:-none}'"
	done
}

pings
check_traffic 1
if [ "$ret" -ne 0 ]; then
	dump_xt_state "$nsrouter" iptables-legacy filter
	echo "FAIL: the ruleset does not work before the hostile payloads"
	exit "$ksft_fail"
fi
echo "PASS: before: CONNMARK --set-mark (legacy filter, nft mangle) marks both families' pings 0x1111 / 0x2222, connmark counts the replies"
rules_before=$(ruleset)

# 2. The hostile payloads, in the router's namespace. The debug kernel
# (KASAN, kmemleak) is ten times slower: there, a sample of each class.
step=${XTCM_HOSTILE_STEP:-1}
[ -n "${XTCM_HOSTILE_STEP:-}" ] || [ ! -e /sys/kernel/debug/kmemleak ] || step=8
token=$(mktemp -u XXXXXXXX)
echo "hostile_payload: start $token" >/dev/kmsg
start=$SECONDS
out=$(ip netns exec "$nsrouter" "$HOSTILE" -s "$step" 2>&1)
rc=$?
elapsed=$((SECONDS - start))
echo "hostile_payload: stop $token" >/dev/kmsg
echo "# xt_hostile: exit $rc, $elapsed s"

total=0
classes=0
kept4=0
kept6=0
while read -r kind rest; do
	declare -A f=()
	for kv in $rest; do
		f[${kv%%=*}]=${kv#*=}
	done
	case $kind in
	CLASS) ;;
	SKIPPATH)
		fail "${f[path]}: path unavailable (${f[reason]})"
		continue
		;;
	NOKLOG)
		fail "xt_hostile cannot read /dev/kmsg (${f[reason]})"
		continue
		;;
	TOTAL)
		total=${f[tried]}
		continue
		;;
	*)
		echo "# xt_hostile: $kind $rest"
		continue
		;;
	esac
	classes=$((classes + 1))
	what="${f[path]} ${f[name]}: ${f[tried]} payloads"
	if [ "${f[want]}" = 0 ]; then
		[ "${f[got_want]}" = "${f[tried]}" ] &&
			[ "${f[verified]}" = "${f[tried]}" ]
		ok=$?
		detail="accepted ${f[got_want]}, read back ${f[verified]}"
		case ${f[path]} in
		nft4) kept4=$((kept4 + f[verified])) ;;
		nft6) kept6=$((kept6 + f[verified])) ;;
		esac
	else
		[ "${f[got_want]}" = "${f[tried]}" ]
		ok=$?
		detail="${f[got_want]} got ${f[want]}"
	fi
	[ "${f[first_bad]}" = - ] || detail+=", first wrong: ${f[first_bad]}"
	# Only our module's messages; x_tables' size message in the size classes.
	if [ "${f[klog_other]}" != 0 ] ||
	   { [ "${f[klog_size]}" != 0 ] && [ -z "${f[size]:-}" ]; }; then
		ok=1
		detail+=", kernel log: ${f[klog_other]} foreign lines (first: ${f[first_other]}), ${f[klog_size]} size lines"
	fi
	if [ "$ok" = 0 ]; then
		echo "PASS: $what, all ${f[want]}$([ "${f[want]}" = 0 ] && echo " and read back"), kernel log: ${f[klog_ours]} of our lines${f[size]:+, ${f[klog_size]} x_tables size lines}, nothing else$([ "${f[klog_noise]:-0}" = 0 ] || echo " (${f[klog_noise]} emulator timekeeping lines ignored)")"
	else
		fail "$what, want all ${f[want]}: $detail"
	fi
	unset f
done <<<"$out"
# 25 classes per legacy path, 26 per nft path (valid_target_bad_match:
# x_tables checks a rule's matches before its target).
if [ "$rc" -ne 0 ] || [ "$classes" -ne 102 ] || [ "$total" -eq 0 ]; then
	fail "xt_hostile: exit $rc, $classes classes, $total payloads; want exit 0, 102 classes (25 per legacy path, 26 per nft path)"
	echo "$out" | tail -n 5
fi
echo "# payloads tried: $total in $classes classes (step $step), $elapsed s"

# 3. The valid rules the tool left are what the tools see.
got=$(ip netns exec "$nsrouter" iptables-legacy-save -t mangle |
	grep -c -- '-A PREROUTING -s 192.0.2.1/32 .*-j CONNMARK')
[ "$got" = 1 ] ||
	fail "iptables-legacy-save -t mangle: the tool's last valid rule (-s 192.0.2.1/32 -j CONNMARK), want 1, got $got"
got=$(ip netns exec "$nsrouter" ip6tables-legacy-save -t mangle |
	grep -c -- '-A PREROUTING -s 2001:db8::1/128 .*-j CONNMARK')
[ "$got" = 1 ] ||
	fail "ip6tables-legacy-save -t mangle: the tool's last valid rule (-s 2001:db8::1/128 -j CONNMARK), want 1, got $got"
for fam in ip ip6; do
	want=$kept4
	[ "$fam" = ip6 ] && want=$kept6
	got=$(ip netns exec "$nsrouter" nft -j list chain "$fam" xthostile c |
		grep -o '"rule": *{' | wc -l)
	{ [ "$got" = "$want" ] && [ "$want" -gt 0 ]; } ||
		fail "nft list chain $fam xthostile c: rules, want the $want valid ones, got $got"
done
[ "$ret" -eq 0 ] &&
	echo "PASS: the valid payloads are visible: iptables-legacy-save, ip6tables-legacy-save (1 rule each), nft list ($kept4 + $kept6 rules)"

# 4. The ruleset still carries traffic.
failed_before=$ret
ret=0
pings
check_traffic 2
rules_after=$(ruleset)
if [ "$rules_after" != "$rules_before" ]; then
	fail "the router's ruleset changed"
	printf '# before:\n%s\n# after:\n%s\n' "$rules_before" "$rules_after"
fi
if [ "$ret" -eq 0 ]; then
	echo "PASS: after: the ruleset is unchanged, a second ping per family gets ct mark 0x1111 / 0x2222, the first flow kept its mark, all counters at 4"
else
	dump_xt_state "$nsrouter" iptables-legacy filter
	dump_xt_state "$nsrouter" iptables-nft mangle
fi
[ "$failed_before" -eq 0 ] || ret=1

# 5. The kernel log of the run.
log=$(dmesg | sed -n "/hostile_payload: start $token/,\$p")
if [ -z "$log" ]; then
	fail "kernel log: the start marker is gone (ring buffer overrun?)"
fi
splats=$(kernel_splats <<<"$log")
if [ -n "$splats" ]; then
	fail "kernel log: splat during the run"
	echo "$log" | head -n 80
fi
ours=$(sed -n "/hostile_payload: stop $token/q; p" <<<"$log" |
	grep -c -e 'xt_connmark: ' -e 'callbacks suppressed')
# Rate limits of 10 messages per 5 s each, and a "callbacks suppressed"
# line each per interval: conntrack support, the match check, and the
# target check's one per invalid field (connmark_tginfo.h: 6).
bound=$(((2 + 6) * 11 * (elapsed / 5 + 2)))
if [ "$ours" -gt "$bound" ] || [ "$ours" -eq 0 ]; then
	fail "kernel log: $ours lines from xt_connmark for $total payloads in $elapsed s, want 1..$bound (rate-limited)"
fi
[ -n "$splats" ] || [ "$ours" -gt "$bound" ] || [ "$ours" -eq 0 ] ||
	echo "PASS: kernel log: no WARNING/BUG/Oops/KASAN/UBSAN, $ours rate-limited lines from xt_connmark for $total payloads in $elapsed s (at most $bound)"

# 6. No conntrack reference left behind: without rules, no tracking.
ip netns exec "$nsrouter" iptables-legacy -t filter -F
ip netns exec "$nsrouter" ip6tables-legacy -t filter -F
ip netns exec "$nsrouter" iptables-legacy -t mangle -F
ip netns exec "$nsrouter" ip6tables-legacy -t mangle -F
ip netns exec "$nsrouter" nft flush ruleset

# untracked: a new ping per family creates no conntrack entry on the router.
# shellcheck disable=SC2317 # called through busywait
untracked()
{
	local n

	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
	ip netns exec "$nsclient" ping -q -c 1 -W 1 10.0.2.99 >/dev/null
	ip netns exec "$nsclient" ping -q -c 1 -W 1 dead:2::99 >/dev/null
	n=$(ip netns exec "$nsrouter" conntrack -L 2>/dev/null | wc -l)
	echo "$n"
	[ "$n" -eq 0 ]
}

got=$(busywait 10000 untracked)
if [ "$got" = 0 ]; then
	echo "PASS: all rules gone: new pings create no conntrack entry, no conntrack reference leaked"
else
	fail "all rules gone, new pings still tracked ($got entries): a conntrack reference (nf_ct_netns_get) leaked"
	ip netns exec "$nsrouter" conntrack -L 2>&1
fi

exit "$ret"
