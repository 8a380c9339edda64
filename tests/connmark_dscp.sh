#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# CONNMARK revision 3 (OpenWrt's --set-dscpmark) on forwarded traffic, with
# both iptables backends and both address families, then the round trip it
# exists for (OpenWrt's "DSCP classify": store the DSCP of what the LAN
# sends, put it back on the replies that come in from the WAN).
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   dead:1::99        dead:1::1    dead:2::1     dead:2::99
#   (LAN host)          (LAN)          (WAN)
#
# 1. Every DSCP value. The client sends one UDP datagram to each port
#    PORT0 + D, D = 0..63 (one flow, so one conntrack entry, per DSCP), all
#    from one process; a "-j DSCP --set-dscp D" rule per port in its mangle
#    OUTPUT sets the DSCP. The router gives every new flow the ct mark START
#    (mangle PREROUTING), whose DSCP bits hold another value and whose state
#    bit is clear, then stores the DSCP (mangle FORWARD, LAN -> WAN) with
#    "-j CONNMARK --set-dscpmark DSCPMASK/STATEMASK": IPv4 with OpenWrt's
#    0xfc000000/0x01000000, IPv6 with 0x3f00/0x1 (another position). Every
#    flow's ct mark (conntrack -L) must be
#    (START & ~DSCPMASK) | STATEMASK | D << (lowest bit of DSCPMASK),
#    computed here with bash arithmetic.
# 2. Round trip, per backend and family: the router stores the DSCP of the
#    client's pings (ping -Q) with --set-dscpmark 0xfc000000/0x01000000; the
#    server answers with DSCP 0 (a "-j DSCP --set-dscp 0" in its OUTPUT);
#    tc on the router's WAN port (clsact ingress, matchall, "action ctinfo
#    dscp 0xfc000000 0x01000000") rewrites the replies' DSCP from the ct mark
#    before they are routed; a "-m dscp --dscp D" counter in the client's
#    INPUT must count the reply of the ping with DSCP D exactly once.
# 3. The module's checkentry of revision 3, per backend, IPv4: iptables
#    cannot make a malformed blob, so a test plugin built here (a
#    libxt_CONNMARK.so with only revision 3 and one option, --raw, that sets
#    every field) hands the kernel each one; a malformed one must fail with
#    EINVAL, add nothing and log a message naming the field.
#
# Process start-up is what costs in the emulated guest: rules go in with
# one iptables-restore per namespace, and all counters come back at once.

# shellcheck disable=SC2317 # the checks run from for_each_backend_family
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_xt_tools "tc -Version"

trap cleanup_all_ns EXIT

ret=0
PORT0=20000
START=0x5a5a5a5a	# DSCP bits 31-26 hold 22, bits 13-8 hold 26; bits 24
			# and 0 (the state bits) are clear
RT_MASK=0xfc000000	# the round trip's dscpmask and statemask
RT_STATE=0x01000000
RT_DSCPS=(1 10 18 26 34 46 48 63)	# round trip: one ping each
batch_failed=false

# set_dscp_family: this test's variables of the family set_family chose.
set_dscp_family()
{
	ICMP_REPLY="-p icmp --icmp-type echo-reply"
	DSCPMASK=0xfc000000
	STATEMASK=0x01000000
	SHIFT=26
	if [ "$FAM" = 6 ]; then
		ICMP_REPLY="-p ipv6-icmp --icmpv6-type echo-reply"
		DSCPMASK=0x3f00
		STATEMASK=0x1
		SHIFT=8
	fi
	WHAT="$BACKEND IPv$FAM"
}

# restore NS TEXT: load TEXT with the family's iptables-restore in NS.
restore()
{
	ip netns exec "$1" "$IPT-restore" <<<"$2"
}

flush_all()
{
	restore "$nsclient" $'*mangle\nCOMMIT\n*filter\nCOMMIT'
	restore "$nsrouter" $'*mangle\nCOMMIT'
	restore "$nsserver" $'*mangle\nCOMMIT'
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
}

dump_state()
{
	dump_xt_state "$nsrouter" "$IPT" mangle
	dump_xt_state "$nsclient" "$IPT" mangle filter | grep -v -e '-j DSCP'
}

# check_all_dscps: part 1 on the current backend and family.
check_all_dscps()
{
	local -A ct_marks=()
	local client="*mangle"$'\n' ports=() d port want got bad=0 n

	for d in {0..63}; do
		port=$((PORT0 + d))
		ports+=("$port")
		client+="-A OUTPUT -o veth0 -p udp --dport $port -j DSCP --set-dscp $d"$'\n'
	done
	batch_failed=false
	if ! restore "$nsclient" "${client}COMMIT"; then
		fail "$WHAT: client DSCP rules, want loaded, got an error"
		return
	fi
	if ! restore "$nsrouter" "*mangle
-A PREROUTING -i veth0 -p udp -m conntrack --ctstate NEW -j CONNMARK --set-xmark $START/0xffffffff
-A FORWARD -i veth0 -o veth1 -j CONNMARK --set-dscpmark $DSCPMASK/$STATEMASK
COMMIT"; then
		fail "$WHAT: --set-dscpmark $DSCPMASK/$STATEMASK, want accepted (revision 3), got rejected"
		flush_all
		return
	fi
	udp_send "$nsclient" "$SERVER" "${ports[@]}" ||
		fail "$WHAT: sending datagrams from the client, want success, got failure"
	n=$(busywait 3000 chain_packets_at_least "$nsrouter" "$IPT" mangle \
		FORWARD 64)
	fill_assoc ct_marks "$(ct_dport_marks "$nsrouter" -f "$CT_L3" -p udp)"

	for d in {0..63}; do
		want=$(((START & ~DSCPMASK & 0xffffffff) | STATEMASK |
			(d << SHIFT)))
		got=${ct_marks[$((PORT0 + d))]:-}
		[ "$got" = "$want" ] && continue
		bad=$((bad + 1))
		fail "$WHAT: DSCP $d, --set-dscpmark $DSCPMASK/$STATEMASK on ct mark $START, want ct mark $(printf 0x%08x "$want"), got ${got:+$(printf 0x%08x "$got")}${got:-no entry}"
	done
	if $batch_failed; then
		echo "# $n of 64 datagrams went through the router's FORWARD"
		dump_state
	else
		echo "PASS: $WHAT: all 64 DSCP values stored by --set-dscpmark $DSCPMASK/$STATEMASK, state bit set, other bits kept"
	fi
	flush_all
}

# check_round_trip: part 2 on the current backend and family.
check_round_trip()
{
	local -A counters=()
	local client="*filter"$'\n' d k got reply
	local -a tos=()

	batch_failed=false
	for d in "${RT_DSCPS[@]}"; do
		# shellcheck disable=SC2086 # ICMP_REPLY is several words
		client+="-A INPUT -i veth0 $ICMP_REPLY -m dscp --dscp $d"$'\n'
		tos+=("$((d << 2))")
	done
	if ! restore "$nsclient" "${client}COMMIT" ||
	   ! restore "$nsserver" "*mangle
-A OUTPUT $ICMP_REPLY -j DSCP --set-dscp 0
COMMIT" ||
	   ! restore "$nsrouter" "*mangle
-A FORWARD -i veth0 -o veth1 -j CONNMARK --set-dscpmark $RT_MASK/$RT_STATE
COMMIT"; then
		fail "$WHAT round trip: rules, want loaded, got an error"
		flush_all
		return
	fi
	# One ping per DSCP, all from one shell: each is its own ICMP flow.
	# shellcheck disable=SC2016 # expanded by the inner bash
	ip netns exec "$nsclient" bash -c 'fam=$1 addr=$2; shift 2
		for tos; do
			ping -"$fam" -q -c 1 -W 2 -Q "$tos" "$addr" >/dev/null ||
				echo "no reply to the ping with TOS $tos"
		done' ping_all "$FAM" "$SERVER" "${tos[@]}"

	fill_assoc counters "$(chain_counters "$nsclient" "$IPT" filter)"
	k=0
	for d in "${RT_DSCPS[@]}"; do
		k=$((k + 1))
		got=${counters["INPUT $k"]:-none}
		[ "$got" = 1 ] && continue
		fail "$WHAT round trip: echo replies reaching the client with DSCP $d (ping -Q $((d << 2))), want 1, got $got"
	done
	reply=$(rule_packets "$nsserver" "$IPT" mangle OUTPUT 1)
	[ "$reply" = "${#RT_DSCPS[@]}" ] ||
		fail "$WHAT round trip: replies sent by the server with DSCP 0, want ${#RT_DSCPS[@]}, got $reply"
	if $batch_failed; then
		dump_state
		tc -n "$nsrouter" -s filter show dev veth1 ingress
	else
		echo "PASS: $WHAT round trip: --set-dscpmark $RT_MASK/$RT_STATE, tc ctinfo on the WAN ingress: ${#RT_DSCPS[@]} replies get their request's DSCP back"
	fi
	flush_all
}

# build_raw_plugin DIR: DIR/libxt_CONNMARK.so, revision 3 with
# --raw ctmark/ctmask/nfmask/shift_dir/shift_bits/mode/func.
build_raw_plugin()
{
	# shellcheck disable=SC2046 # pkg-config prints several flags
	gcc -O2 -Wall -Werror -fPIC -shared -I"$REPO_DIR/include" \
		$(pkg-config --cflags xtables) -o "$1/libxt_CONNMARK.so" \
		-x c - <<-'EOF'
	#include <stdio.h>
	#include <xtables.h>
	#include "xt_connmark.h"

	static const struct xt_option_entry raw_opts[] = {
		{.name = "raw", .id = 0, .type = XTTYPE_STRING,
		 .flags = XTOPT_MAND},
		XTOPT_TABLEEND,
	};

	static void raw_parse(struct xt_option_call *cb)
	{
		struct xt_connmark_tginfo3 *info = cb->data;
		unsigned int f[7];

		xtables_option_parse(cb);
		if (sscanf(cb->arg, "%x/%x/%x/%u/%u/%u/%u", &f[0], &f[1],
			   &f[2], &f[3], &f[4], &f[5], &f[6]) != 7)
			xtables_error(PARAMETER_PROBLEM, "raw: 7 fields");
		info->ctmark = f[0];
		info->ctmask = f[1];
		info->nfmask = f[2];
		info->shift_dir = f[3];
		info->shift_bits = f[4];
		info->mode = f[5];
		info->func = f[6];
	}

	static void raw_save(const void *ip, const struct xt_entry_target *t)
	{
		const struct xt_connmark_tginfo3 *i = (const void *)t->data;

		printf(" --raw 0x%x/0x%x/0x%x/%u/%u/%u/%u", i->ctmark,
		       i->ctmask, i->nfmask, i->shift_dir, i->shift_bits,
		       i->mode, i->func);
	}

	static struct xtables_target raw_tg = {
		.family = NFPROTO_UNSPEC,
		.name = "CONNMARK",
		.revision = 3,
		.version = XTABLES_VERSION,
		.size = XT_ALIGN(sizeof(struct xt_connmark_tginfo3)),
		.userspacesize = XT_ALIGN(sizeof(struct xt_connmark_tginfo3)),
		.x6_parse = raw_parse,
		.save = raw_save,
		.print = (void *)raw_save,
		.x6_options = raw_opts,
	};

	__attribute__((constructor)) static void raw_init(void)
	{
		xtables_register_target(&raw_tg);
	}
	EOF
}

# Blobs for part 3: "fields|what the kernel log must name", or "fields|"
# for a blob that must be accepted. Fields: ctmark/ctmask/nfmask/
# shift_dir/shift_bits/mode/func.
raw_cases=(
	"0x1/0xffffffff/0xffffffff/0/0/0/1|"
	"0xff/0xff/0xff/1/8/2/1|"
	"0xfc000000/0x1000000/0xffffffff/0/26/0/2|"
	"0x3f/0x0/0x0/0/0/0/2|"
	"0x0/0xff/0xff00/0/0/1/0|"
	"0x0/0xffffffff/0xffffffff/1/4/2/0|"
	"0x1/0xffffffff/0xffffffff/0/0/0/0|revision 3: invalid func: func 0 mode 0"
	"0x1/0xffffffff/0xffffffff/0/0/0/3|revision 3: invalid func: func 3"
	"0x1/0xffffffff/0xffffffff/0/0/0/4|revision 3: invalid func: func 4"
	"0x1/0xffffffff/0xffffffff/0/0/1/3|revision 3: invalid func: func 3 mode 1"
	"0x1/0xffffffff/0xffffffff/0/0/3/1|revision 3: invalid mode: func 1 mode 3"
	"0x1/0xffffffff/0xffffffff/0/0/3/0|revision 3: invalid mode: func 0 mode 3"
	"0x1/0xffffffff/0xffffffff/2/0/0/1|revision 3: invalid shift_dir: func 1 mode 0 shift_dir 2"
	"0x1/0xffffffff/0xffffffff/0/32/0/1|revision 3: invalid shift_bits: func 1 mode 0 shift_dir 0 shift_bits 32"
	"0x1/0xffffffff/0xffffffff/0/32/1/0|revision 3: invalid shift_bits: func 0 mode 1 shift_dir 0 shift_bits 32"
	"0xf8000000/0x1/0xffffffff/0/27/0/2|revision 3: invalid dscpmask: func 2 mode 0 shift_dir 0 shift_bits 27 ctmark 0xf8000000"
	"0xfe000000/0x1/0xffffffff/0/25/0/2|revision 3: invalid dscpmask: func 2 mode 0 shift_dir 0 shift_bits 25 ctmark 0xfe000000"
	"0xec000000/0x1/0xffffffff/0/26/0/2|revision 3: invalid dscpmask: func 2 mode 0 shift_dir 0 shift_bits 26 ctmark 0xec000000"
	"0x0/0x1/0xffffffff/0/0/0/2|revision 3: invalid dscpmask: func 2 mode 0 shift_dir 0 shift_bits 0 ctmark 0x0"
	"0xfc000000/0x1000000/0xffffffff/0/25/0/2|revision 3: invalid shift_bits: func 2 mode 0 shift_dir 0 shift_bits 25 ctmark 0xfc000000"
	"0xfc000000/0x4000000/0xffffffff/0/26/0/2|revision 3: invalid statemask: func 2 mode 0 shift_dir 0 shift_bits 26 ctmark 0xfc000000 ctmask 0x4000000"
	"0xfc000000/0x1000000/0xffffffff/0/26/1/2|revision 3: invalid mode: func 2 mode 1"
	"0xfc000000/0x1000000/0xffffffff/0/26/2/2|revision 3: invalid mode: func 2 mode 2"
	"0xfc000000/0x1000000/0xffffffff/0/26/3/2|revision 3: invalid mode: func 2 mode 3"
)

# check_kernel_refusals DIR: part 3 on the current backend, IPv4, with the
# test plugin in DIR.
check_kernel_refusals()
{
	local case fields want out before log n_valid=0

	batch_failed=false
	before=$(dmesg | wc -l)
	for case in "${raw_cases[@]}"; do
		fields=${case%%|*}
		want=${case#*|}
		[ -z "$want" ] && n_valid=$((n_valid + 1))
		if out=$(XTABLES_LIBDIR="$1:$XTABLES_LIBDIR" ip netns exec \
			 "$nsrouter" "$IPT" -t mangle -A FORWARD -j CONNMARK \
			 --raw "$fields" 2>&1); then
			[ -z "$want" ] && continue
			fail "$WHAT checkentry: blob $fields, want EINVAL, got accepted"
		elif [ -z "$want" ]; then
			fail "$WHAT checkentry: blob $fields, want accepted, got ${out//$'\n'/ }"
		elif [[ $out != *"Invalid argument"* ]]; then
			fail "$WHAT checkentry: blob $fields, want EINVAL, got ${out//$'\n'/ }"
		fi
	done
	# Exactly the accepted blobs are in FORWARD.
	out=$(ip netns exec "$nsrouter" "$IPT" -t mangle -S FORWARD | grep -c CONNMARK)
	[ "$out" = "$n_valid" ] ||
		fail "$WHAT checkentry: CONNMARK rules in FORWARD, want the $n_valid valid blobs, got $out"
	log=$(dmesg | tail -n +"$((before + 1))")
	for case in "${raw_cases[@]}"; do
		want=${case#*|}
		[ -z "$want" ] || [[ $log == *"xt_connmark: $want"* ]] && continue
		fail "$WHAT checkentry: blob ${case%%|*}, want kernel message 'xt_connmark: $want', not found"
	done
	if $batch_failed; then
		echo "# kernel log:"
		echo "$log"
	else
		echo "PASS: $WHAT checkentry: $n_valid valid revision 3 blobs (OpenWrt's func 0 save and restore among them) accepted, $((${#raw_cases[@]} - n_valid)) malformed ones refused with EINVAL and a message naming the field"
	fi
	ip netns exec "$nsrouter" "$IPT" -t mangle -F FORWARD
}

if ! setup_router_topology; then
	echo "SKIP: Could not set up the client -- router -- server namespaces"
	exit "$ksft_skip"
fi

require_xt_backends "$nsrouter"

# The restore side: tc's ctinfo on the router's WAN port (Linux 5.3+).
ctinfo=true
if ! tc -n "$nsrouter" qdisc add dev veth1 clsact ||
   ! tc -n "$nsrouter" filter add dev veth1 ingress protocol all matchall \
	action ctinfo dscp "$RT_MASK" "$RT_STATE"; then
	echo "FAIL: tc ctinfo: cannot add 'action ctinfo dscp $RT_MASK $RT_STATE' on the router's WAN ingress"
	ret=1
	ctinfo=false
fi

raw_dir=$(mktemp -d)
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	rm -rf "$raw_dir"
}
trap cleanup EXIT
if ! command -v gcc >/dev/null || ! build_raw_plugin "$raw_dir"; then
	echo "FAIL: cannot build the test plugin for the checkentry blobs"
	ret=1
	raw_dir=""
fi

# check_family: parts 1 and 2 on the current backend and family.
check_family()
{
	set_dscp_family
	check_all_dscps
	! $ctinfo || check_round_trip
}

# check_backend: part 3 on the current backend, IPv4.
check_backend()
{
	set_family 4
	set_dscp_family
	[ -z "$raw_dir" ] || check_kernel_refusals "$raw_dir"
}

for_each_backend_family check_family check_backend || ret=1

exit "$ret"
