#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# CONNMARK target: the kernel's result for every option on forwarded
# traffic, with both iptables backends and both address families.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   dead:1::99        dead:1::1    dead:2::1     dead:2::99
#
# Every case is its own UDP flow (one datagram from the client to server
# port 20000 + case number), so it gets a new conntrack entry, and its own
# chain in the router's mangle table, so its own fresh counters. All cases of
# one backend and family run in one pass, after a "conntrack -F":
#
#   PREROUTING -i veth0 -p udp --dport PORT -j caseN
#   caseN 1  -j CONNMARK --set-xmark START  a non-zero starting ct mark
#         2  -j MARK --set-xmark PKT        a non-zero packet mark
#         3  -j CONNMARK <case>             must count exactly 1 packet
#         4  -m mark --mark WANT_PKT        must count 1: the packet mark
#
# The router's policy routing forwards a case's datagram only if its packet
# mark is exactly that case's WANT_PKT (ip rule fwmark ... dport PORT; all
# else hits an "unreachable" rule), and a counter in the server's INPUT
# proves the delivery: a second view of the packet mark. The ct mark is read
# back with conntrack -L and from /proc/net/nf_conntrack. Every expected
# value is computed here with bash arithmetic from the documented semantics,
# never taken from the module.
#
# Shifting by 32 bits is refused by our plugin when it parses the option,
# and by the module's checkentry (EINVAL) when Debian's plugin, which
# accepts 32, sends it: iptables fails and no rule is added. Kernels without
# that validation (every upstream release up to 6.12) accept it and fail
# that check. Invalid shift directions or modes cannot be expressed with
# iptables and are not tested.

# shellcheck disable=SC2317 # the checks run from for_each_backend_family
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_xt_tools "sysctl -V"

trap cleanup_all_ns EXIT

ret=0
M32=0xffffffff
PORT0=20000

# Bit patterns that make every mask and shift visible.
START=0xa5a55a5a	# starting ct mark
PKT=0x12345678		# packet mark before the CONNMARK rule
VAL=0x00c0ffed		# --set-xmark value, odd so that << 31 keeps a bit
MASK=0x00ff00ff		# --set-xmark mask
NFMASK=0xff00ff00
CTMASK=0x0ff00ff0

# shift_mark VALUE left|right BITS: VALUE shifted as a u32, in $REF.
shift_mark()
{
	if [ "$2" = right ]; then
		REF=$((($1 & M32) >> $3))
	else
		REF=$((($1 << $3) & M32))
	fi
}

# Reference arithmetic of revision 2 (revision 1 is a shift by 0), results
# in $REF. Command substitutions are avoided: forks are slow in the guest.
# ref_set CT CTMARK CTMASK DIR BITS: the new ct mark of a set operation.
ref_set()
{
	shift_mark $((($1 & ~$3) ^ $2)) "$4" "$5"
}

# ref_save CT PKT CTMASK NFMASK DIR BITS: the new ct mark of --save-mark.
ref_save()
{
	shift_mark $(($2 & $4)) "$5" "$6"
	REF=$((($1 & ~$3 ^ REF) & M32))
}

# ref_restore PKT CT CTMASK NFMASK DIR BITS: the new packet mark of
# --restore-mark.
ref_restore()
{
	shift_mark $(($2 & $3)) "$5" "$6"
	REF=$((($1 & ~$4 ^ REF) & M32))
}

case_names=()
case_ct=()
case_pkt=()
case_ct_hex=()
case_pkt_hex=()
case_args=()

# add_case NAME WANT_CT WANT_PKT CONNMARK-ARGS...: after the CONNMARK rule
# the ct mark must be WANT_CT and the packet mark WANT_PKT (arithmetic
# expressions).
add_case()
{
	local n=${#case_names[@]}

	case_names[n]=$1
	case_ct[n]=$((($2) & M32))
	case_pkt[n]=$((($3) & M32))
	printf -v "case_ct_hex[n]" '0x%x' "${case_ct[n]}"
	printf -v "case_pkt_hex[n]" '0x%x' "${case_pkt[n]}"
	case_args[n]=${*:4}
}

define_cases()
{
	local bits dir

	# The set operations leave the packet mark alone.
	add_case "set-xmark v/m" "START & ~MASK ^ VAL" PKT \
		--set-xmark "$VAL/$MASK"
	add_case "set-xmark v" VAL PKT --set-xmark "$VAL"
	add_case "set-mark v" VAL PKT --set-mark "$VAL"
	# --set-mark v/m zeroes the bits of m, then ORs v in.
	add_case "set-mark v/m" "START & ~0xff00 | 0x11" PKT \
		--set-mark 0x11/0xff00
	add_case "and-mark" "START & 0xff0000ff" PKT --and-mark 0xff0000ff
	add_case "or-mark" "START | 0x0000f00f" PKT --or-mark 0x0000f00f
	add_case "xor-mark" "START ^ 0xffff0000" PKT --xor-mark 0xffff0000

	# ct = (ct & ~ctmask) ^ (pkt & nfmask); the packet mark stays.
	add_case "save-mark" PKT PKT --save-mark
	add_case "save-mark mask" "START & ~0xffff ^ PKT & 0xffff" PKT \
		--save-mark --mask 0xffff
	add_case "save-mark nfmask ctmask" "START & ~CTMASK ^ PKT & NFMASK" \
		PKT --save-mark --nfmask "$NFMASK" --ctmask "$CTMASK"
	add_case "save-mark nfmask" "PKT & NFMASK" PKT \
		--save-mark --nfmask "$NFMASK"
	add_case "save-mark ctmask" "START & ~CTMASK ^ PKT" PKT \
		--save-mark --ctmask "$CTMASK"

	# pkt = (pkt & ~nfmask) ^ (ct & ctmask); the ct mark stays.
	add_case "restore-mark" START START --restore-mark
	add_case "restore-mark mask" START "PKT & ~0xffff ^ START & 0xffff" \
		--restore-mark --mask 0xffff
	add_case "restore-mark nfmask ctmask" START \
		"PKT & ~NFMASK ^ START & CTMASK" \
		--restore-mark --nfmask "$NFMASK" --ctmask "$CTMASK"
	add_case "restore-mark ctmask" START "START & CTMASK" \
		--restore-mark --ctmask "$CTMASK"
	add_case "restore-mark nfmask" START "PKT & ~NFMASK ^ START" \
		--restore-mark --nfmask "$NFMASK"

	# Revision 2: the whole set result, the saved packet bits and the
	# restored ct bits are shifted.
	for dir in left right; do
		for bits in 0 1 8 31; do
			ref_set "$START" "$VAL" "$MASK" "$dir" "$bits"
			add_case "set-xmark $dir $bits" REF PKT \
				--set-xmark "$VAL/$MASK" --"$dir"-shift-mark "$bits"
		done
		for bits in 1 8 31; do
			ref_save "$START" "$PKT" "$CTMASK" "$NFMASK" "$dir" "$bits"
			add_case "save-mark $dir $bits" REF PKT \
				--save-mark --nfmask "$NFMASK" --ctmask "$CTMASK" \
				--"$dir"-shift-mark "$bits"
			ref_restore "$PKT" "$START" "$CTMASK" "$NFMASK" "$dir" \
				"$bits"
			add_case "restore-mark $dir $bits" START REF \
				--restore-mark --nfmask "$NFMASK" --ctmask "$CTMASK" \
				--"$dir"-shift-mark "$bits"
		done
	done
}

ipt()
{
	ip netns exec "$nsrouter" "$IPT" "$@"
}

dump_state()
{
	dump_xt_state "$nsrouter" "$IPT" mangle
	echo "# ip -$FAM rule ($nsrouter)"
	ip -net "$nsrouter" -"$FAM" rule show
	echo "# $IPT -t filter -v -S INPUT ($nsserver)"
	ip netns exec "$nsserver" "$IPT" -t filter -v -S INPUT
}

# case_rules N: append the mangle rules of case N (see the top) to $rules.
case_rules()
{
	local n=$1

	rules+="-A PREROUTING -i veth0 -p udp --dport $((PORT0 + n)) -j case$n
-A case$n -j CONNMARK --set-xmark $START
-A case$n -j MARK --set-xmark $PKT
-A case$n -j CONNMARK ${case_args[n]}
-A case$n -m mark --mark ${case_pkt_hex[n]}
"
}

# load_router_rules: all cases with one iptables-restore; if that fails,
# case by case, so that one rejected rule fails only its own case. Sets
# loaded[N].
load_router_rules()
{
	local n rules="*mangle"$'\n'

	for n in "${!case_names[@]}"; do
		loaded[n]=true
		rules+=":case$n - [0:0]"$'\n'
	done
	for n in "${!case_names[@]}"; do
		case_rules "$n"
	done
	ip netns exec "$nsrouter" "$IPT-restore" <<<"${rules}COMMIT" && return

	echo "# one restore of all cases failed; loading them one by one"
	ip netns exec "$nsrouter" "$IPT-restore" <<<$'*mangle\nCOMMIT'
	for n in "${!case_names[@]}"; do
		rules="*mangle"$'\n'":case$n - [0:0]"$'\n'
		case_rules "$n"
		ip netns exec "$nsrouter" "$IPT-restore" --noflush \
			<<<"${rules}COMMIT" && continue
		loaded[n]=false
		fail "$BACKEND IPv$FAM ${case_names[n]}: rules with CONNMARK ${case_args[n]}, want accepted, got rejected"
	done
}

# load_routing: per case, forward to the server only what carries the case's
# expected packet mark; one counter per case in the server's INPUT.
load_routing()
{
	local n server_rules="*filter"$'\n'

	for n in "${!case_names[@]}"; do
		echo "rule add pref $((1000 + n)) fwmark ${case_pkt_hex[n]}/$M32 ipproto udp dport $((PORT0 + n)) table 100"
	done | ip -net "$nsrouter" -"$FAM" -batch -
	for n in "${!case_names[@]}"; do
		server_rules+="-A INPUT -i veth0 -p udp --dport $((PORT0 + n))"$'\n'
	done
	ip netns exec "$nsserver" "$IPT-restore" <<<"${server_rules}COMMIT"
}

unload_all()
{
	local n

	for n in "${!case_names[@]}"; do
		echo "rule del pref $((1000 + n))"
	done | ip -net "$nsrouter" -"$FAM" -batch -
	ip netns exec "$nsrouter" "$IPT-restore" <<<$'*mangle\nCOMMIT'
	ip netns exec "$nsserver" "$IPT-restore" <<<$'*filter\nCOMMIT'
}

# check_case N: compare everything read back for case N with its
# expectations; one PASS line when all agree.
check_case()
{
	local n=$1 port=$((PORT0 + $1)) want_ct=${case_ct[$1]}
	local ct_hex=${case_ct_hex[$1]} pkt_hex=${case_pkt_hex[$1]} ok=true got
	local what="$BACKEND IPv$FAM ${case_names[$1]}"

	${loaded[n]} || return
	got=${counters["case$n 3"]:-none}
	[ "$got" = 1 ] || {
		fail "$what: CONNMARK ${case_args[n]} rule counter, want 1 packet, got $got"
		ok=false
	}
	got=${counters["case$n 4"]:-none}
	[ "$got" = 1 ] || {
		fail "$what: -m mark --mark $pkt_hex counter, want 1 packet, got $got"
		ok=false
	}
	got=${server["INPUT $((n + 1))"]:-none}
	[ "$got" = 1 ] || {
		fail "$what: datagrams delivered by routing on packet mark $pkt_hex, want 1, got $got"
		ok=false
	}
	got=${ct_marks[$port]:-}
	[ "$got" = "$want_ct" ] || {
		fail "$what: conntrack -L mark, want $want_ct ($ct_hex), got ${got:-no entry}"
		ok=false
	}
	got=${proc_marks[$port]:-}
	[ "$got" = "$want_ct" ] || {
		fail "$what: /proc/net/nf_conntrack mark, want $want_ct, got ${got:-no entry}"
		ok=false
	}
	$ok && echo "PASS: $what: CONNMARK ${case_args[n]} -> ct mark $ct_hex, packet mark $pkt_hex"
}

# run_batch: every case once, on the current backend and family.
run_batch()
{
	local -A counters server ct_marks proc_marks
	local -a loaded ports
	local n got

	batch_failed=false
	load_router_rules
	load_routing
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1

	for n in "${!case_names[@]}"; do
		${loaded[n]} && ports+=("$((PORT0 + n))")
	done
	udp_send "$nsclient" "$SERVER" "${ports[@]}" ||
		fail "$BACKEND IPv$FAM: sending datagrams from the client, want success, got failure"
	got=$(busywait 3000 chain_packets_at_least "$nsserver" "$IPT" filter \
		INPUT "${#ports[@]}")

	fill_assoc counters "$(chain_counters "$nsrouter" "$IPT" mangle)"
	fill_assoc server "$(chain_counters "$nsserver" "$IPT" filter)"
	fill_assoc ct_marks "$(ct_dport_marks "$nsrouter" -f "$CT_L3" -p udp)"
	fill_assoc proc_marks "$(ct_proc_dport_marks "$nsrouter" "$CT_L3" udp)"

	for n in "${!case_names[@]}"; do
		check_case "$n"
	done
	if $batch_failed; then
		echo "# $got of ${#ports[@]} datagrams reached the server"
		dump_state
	fi
	unload_all
}

# check_shift_rejected OPTION: a 32-bit shift is refused by our plugin and,
# sent by Debian's, by the kernel.
check_shift_rejected()
{
	local what="$BACKEND IPv$FAM CONNMARK --set-xmark 0x1 $1 32" err rules
	local distro

	batch_failed=false
	distro=$(pkg-config --variable=xtlibdir xtables)
	if err=$(ipt -t mangle -A PREROUTING -i veth0 \
			-j CONNMARK --set-xmark 0x1 "$1" 32 2>&1); then
		fail "$what: our plugin accepted it, want 'out of range (0-31)'"
	elif [[ "$err" != *"out of range (0-31)"* ]]; then
		fail "$what: our plugin's error, want 'out of range (0-31)', got: $err"
	fi
	if err=$(XTABLES_LIBDIR=$distro ipt -t mangle -A PREROUTING -i veth0 \
			-j CONNMARK --set-xmark 0x1 "$1" 32 2>&1); then
		fail "$what: with Debian's plugin, iptables exit status, want non-zero (EINVAL from checkentry), got 0"
	elif [[ "$err" != *"Invalid argument"* ]]; then
		fail "$what: with Debian's plugin, want EINVAL (Invalid argument) from the kernel, got: $err"
	fi
	rules=$(ipt -t mangle -S PREROUTING 2>/dev/null)
	[[ "$rules" != *CONNMARK* ]] ||
		fail "$what: PREROUTING, want no CONNMARK rule, got: ${rules//$'\n'/; }"
	if $batch_failed; then
		dump_xt_state "$nsrouter" "$IPT" mangle
		ipt -t mangle -F PREROUTING
	else
		echo "PASS: $what: refused by our plugin, and by the kernel (EINVAL) from Debian's, nothing added"
	fi
}

define_cases

if ! setup_router_topology; then
	echo "SKIP: Could not set up the client -- router -- server namespaces"
	exit "$ksft_skip"
fi

# Table 100 reaches the server. Only the per-case fwmark rules lead there:
# anything else for the server's network is unreachable.
if ! ip -net "$nsrouter" route add 10.0.2.0/24 dev veth1 table 100 ||
   ! ip -net "$nsrouter" -6 route add dead:2::/64 dev veth1 table 100 ||
   ! ip -net "$nsrouter" rule add to 10.0.2.0/24 pref 30000 unreachable ||
   ! ip -net "$nsrouter" -6 rule add to dead:2::/64 pref 30000 unreachable
then
	echo "SKIP: Could not set up policy routing by packet mark"
	exit "$ksft_skip"
fi

# check_family: everything on the current backend and family.
check_family()
{
	run_batch
	check_shift_rejected --left-shift-mark
	check_shift_rejected --right-shift-mark
}

require_xt_backends "$nsrouter"
for_each_backend_family check_family || ret=1

exit "$ret"
