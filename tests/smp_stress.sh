#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# SMP stress: the router's mangle ruleset is replaced in a loop while TCP and
# UDP flows cross it on both CPUs.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#
# Flows, each a loop of short connections until the replacements end; the
# senders are pinned (taskset) to alternate CPUs, so that the router forwards
# on both (a veth delivers in the sender's NET_RX softirq):
#   tcp 5001, 5002, 5003  client -> server, echoed back (socat, cat), the
#                         reply compared with what was sent (cmp)
#   tcp 6001              server -> client, the same
#   udp 5005              client -> server, 16 datagrams per flow
#   udp 6005              server -> client, the same
#
# The router's ruleset (ruleset() below) classifies the first packet of each
# connection by port (MARK, or CONNMARK --set-xmark for 5003) into class K,
# saves it (--save-mark, masked), copies it with rev-2 shifts into two other
# fields of the ct mark, restores it onto every packet (--restore-mark,
# masked and shifted) and sets flag bits through connmark matches. Every
# rule is idempotent, so a connection's ct mark does not depend on which
# generation of the ruleset (or of both backends) saw its packets:
#   K | K << 4 | K << 24 | 0x8000 | 0x100000 (K = 1) | 0x200000 (K = 2)
# A packet whose restored mark disagrees with its ct mark taints the entry
# with 0x80000000, so an inconsistency at any time of the run shows at the
# end. Each generation differs: a rule that never matches carries its
# number, and 0 to 3 more never-matching rules vary the size of the blob.
#
# The loop loads two generations with iptables-legacy-restore, two with
# iptables-nft-restore, and so on. The two backends are separate tables on
# the same hooks: a new one is loaded before the old one is flushed (the
# rules are idempotent, so packets that traverse both get the same marks),
# and no packet ever sees no ruleset at all.
#
# Afterwards: no new splat in the kernel log; the last backend's table is
# exactly the last generation loaded, the other backend's is empty; every
# TCP connection was byte-exact and every flow moved data; every conntrack
# entry of the test ports carries its class's mark; with the conntrack table
# flushed, a new connection per port is classified the same (every conntrack
# event of its entry carries the mark), and every counter of the final
# ruleset counted (the never-matching and taint rules must count nothing);
# both CPUs received packets (/proc/softirqs NET_RX).
#
# XTCM_STRESS_SECONDS sets the duration (default 60); a slow guest still
# loads MIN_GENERATIONS rulesets.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

checktool "ip -Version" "run test without ip tool"
checktool "iptables-legacy --version" "run test without iptables-legacy"
checktool "iptables-nft --version" "run test without iptables-nft"
checktool "conntrack --version" "run test without conntrack tool"
checktool "socat -V" "run test without socat"
checktool "taskset -V" "run test without taskset"
checktool "ss -V" "run test without ss"

require_two_cpus

seconds=${XTCM_STRESS_SECONDS:-60}
MIN_GENERATIONS=5
SERVER=10.0.2.99
CLIENT=10.0.1.99
PAYLOAD_BYTES=65536
UDP_BYTES=16000		# 16 datagrams of 1000 bytes
# port:protocol:class
CLASSES=(5001:tcp:1 5002:tcp:2 6001:tcp:3 5005:udp:4 6005:udp:5 5003:tcp:6)
# protocol:port:CPU of the senders: client and server side on each CPU
SENDERS=(tcp:5001:0 tcp:5002:1 tcp:5003:0 tcp:6001:1 udp:5005:0 udp:6005:1)

ret=0
dir=$(mktemp -d)

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	rm -rf "$dir"
}
trap cleanup EXIT

# class_mark K: the ct mark of a connection of class K, in decimal.
class_mark()
{
	local k=$1 m

	m=$((k | k << 4 | k << 24 | 0x8000))
	[ "$k" -ne 1 ] || m=$((m | 0x100000))
	[ "$k" -ne 2 ] || m=$((m | 0x200000))
	echo "$m"
}

# The rules of every generation, written the way iptables-save prints them.
ruleset_init()
{
	local c port proto k

	RULES_HEAD=$(printf '%s\n' ":PREROUTING ACCEPT [0:0]" \
		":INPUT ACCEPT [0:0]" ":FORWARD ACCEPT [0:0]" \
		":OUTPUT ACCEPT [0:0]" ":POSTROUTING ACCEPT [0:0]"
	echo "-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xf --ctmask 0xf"
	echo "-A PREROUTING -m mark ! --mark 0x0/0xf -j ACCEPT"
	for c in "${CLASSES[@]}"; do
		IFS=: read -r port proto k <<<"$c"
		[ "$port" = 5003 ] && continue
		echo "-A PREROUTING -p $proto -m $proto --dport $port -j MARK --set-xmark 0x$k/0xf"
	done
	echo "-A PREROUTING -m mark ! --mark 0x0/0xf -j CONNMARK --save-mark --nfmask 0xf --ctmask 0xf"
	echo "-A PREROUTING -p tcp -m tcp --dport 5003 -j CONNMARK --set-xmark 0x6/0xf"
	echo "-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xf --ctmask 0xf"
	echo "-A PREROUTING -m mark ! --mark 0x0/0xf -j CONNMARK --save-mark --nfmask 0xf --ctmask 0xf000000 --left-shift-mark 24"
	echo "-A FORWARD -j CONNMARK --restore-mark --nfmask 0xf00 --ctmask 0xf000000 --right-shift-mark 16"
	echo "-A FORWARD -m mark ! --mark 0x0/0xf00 -j CONNMARK --save-mark --nfmask 0xf00 --ctmask 0xf0 --right-shift-mark 4"
	echo "-A FORWARD -m connmark --mark 0x1/0xf -j CONNMARK --set-xmark 0x100000/0x100000"
	echo "-A FORWARD -m connmark --mark 0x2/0xf -j CONNMARK --set-xmark 0x200000/0xf00000"
	echo "-A FORWARD -m connmark ! --mark 0x0/0xf -j CONNMARK --set-xmark 0x8000/0x8000")
	RULES_TAIL=$(for c in "${CLASSES[@]}"; do
		IFS=: read -r port proto k <<<"$c"
		echo "-A POSTROUTING -m connmark --mark 0x$k/0xf -m mark ! --mark 0x${k}0${k}/0xf0f -j CONNMARK --set-xmark 0x80000000/0x80000000"
	done)
}

# ruleset GEN: generation GEN of the router's mangle table into RULESET,
# its chain and rule lines into RULES (as normalize prints them), without a
# subshell (processes are slow in the guest). Never matching rules (bits
# 28-30 of the ct mark stay clear) carry GEN and vary the size.
ruleset()
{
	local gen=$1 i

	RULES=$RULES_HEAD$'\n'
	for ((i = 1; i <= gen % 4; i++)); do
		RULES+="-A OUTPUT -m connmark --mark 0x70000000/0x70000000 -j CONNMARK --restore-mark --nfmask 0xffff --ctmask 0xffff --left-shift-mark $i"$'\n'
	done
	printf -v i '%x' "$gen"
	RULES+=$RULES_TAIL$'\n'
	RULES+="-A POSTROUTING -m connmark --mark 0x70000000/0x70000000 -j CONNMARK --set-xmark 0x$i/0xffffffff"
	RULESET="*mangle"$'\n'$RULES$'\nCOMMIT'
}

# normalize: the chain and rule lines of iptables-save, counters zeroed.
normalize()
{
	sed -n -e 's/^\[[0-9]*:[0-9]*\] //' \
		-e 's/^\(:[A-Z]* [A-Z-]*\) \[[0-9]*:[0-9]*\]$/\1 [0:0]/' \
		-e '/^:/p' -e '/^-A /p'
}

# replace_loop END: from generation $gen on $backend, replace the router's
# mangle table until the epoch second END, and at least up to generation
# MIN_GENERATIONS (a slow guest still switches backends), all in one process
# in the router's namespace. Two generations per backend; the old backend is
# flushed after the new one is loaded. Generations 2 and 4 replace a full
# table of each backend: iptables-save must show them exactly (the others
# only at the end: each process costs). Sets gen and backend.
replace_loop()
{
	local out

	export RULES_HEAD RULES_TAIL MIN_GENERATIONS
	# shellcheck disable=SC2016 # expanded by the inner bash
	out=$(ip netns exec "$nsrouter" bash -c 'end=$1 gen=$2 backend=$3 errors=0
		declare -A us=([legacy]=0 [nft]=0) n=([legacy]=0 [nft]=0)
		while [ "$EPOCHSECONDS" -lt "$end" ] ||
		      [ "$gen" -lt "$MIN_GENERATIONS" ]; do
			gen=$((gen + 1))
			prev=$backend
			backend=legacy
			[ $(((gen - 1) / 2 % 2)) -eq 1 ] && backend=nft
			ruleset "$gen"
			t=${EPOCHREALTIME/./}
			if ! "iptables-$backend-restore" <<<"$RULESET"; then
				errors=$((errors + 1))
				echo "FAIL: generation $gen ($backend), want loaded, got an error"
			fi
			us[$backend]=$((us[$backend] + ${EPOCHREALTIME/./} - t))
			n[$backend]=$((n[$backend] + 1))
			if [ "$prev" != "$backend" ] &&
			   ! "iptables-$prev-restore" <<<$'\''*mangle\nCOMMIT'\''; then
				errors=$((errors + 1))
				echo "FAIL: generation $gen: flushing $prev failed"
			fi
			[ "$gen" = 2 ] || [ "$gen" = 4 ] || continue
			got=$("iptables-$backend-save" -t mangle 2>/dev/null | normalize)
			[ "$got" = "$RULES" ] && continue
			errors=$((errors + 1))
			echo "FAIL: $backend: mangle table right after loading generation $gen, want it exactly, got:"
			echo "$got"
		done
		for b in legacy nft; do
			[ "${n[$b]}" -eq 0 ] ||
				echo "# iptables-$b-restore: ${n[$b]} loads, $((us[$b] / n[$b] / 1000)) ms each on average"
		done
		echo "$gen $backend $errors"' replace_loop "$1" "$gen" "$backend")
	echo "$out" | head -n -1
	read -r gen backend load_errors <<<"$(tail -n 1 <<<"$out")"
	[ "$load_errors" -eq 0 ] || ret=1
}
export -f ruleset normalize

# load BACKEND TEXT: replace the router's mangle table.
load()
{
	ip netns exec "$nsrouter" "iptables-$1-restore" <<<"$2"
}

net_rx()
{
	awk '$1 == "NET_RX:" { print $2, $3 }' /proc/softirqs
}

# listening NS PROTO PORT: a socket listens (tcp) or is bound (udp).
# shellcheck disable=SC2317 # called through busywait
listening()
{
	local opt=-Hltn

	[ "$2" = udp ] && opt=-Hlun
	[ -n "$(ip netns exec "$1" ss "$opt" "sport = :$3")" ]
}

# The workers run inside a namespace (bash -c), one process each; they
# count connections, at least one, until the file DIR/stop exists.
# tcp_worker ID ADDRESS PORT PAYLOAD DIR
# shellcheck disable=SC2317 # called by the inner bash
tcp_worker()
{
	local id=$1 addr=$2 port=$3 payload=$4 dir=$5 n=0 ok=0
	local out=$5/tcp.$1.out

	while :; do
		n=$((n + 1))
		# socat's CREATE truncates; -T ends a stalled connection.
		if socat -t 60 -T 60 "OPEN:$payload,rdonly!!CREATE:$out" \
			"TCP:$addr:$port" 2>>"$dir/tcp.$id.err" &&
		   cmp -s "$payload" "$out"; then
			ok=$((ok + 1))
		else
			echo "connection $n to $addr:$port: $(wc -c <"$out" 2>/dev/null || echo no) bytes back" \
				>>"$dir/tcp.$id.err"
		fi
		[ ! -e "$dir/stop" ] || break
	done
	echo "$n $ok" >"$dir/tcp.$id.result"
}

# udp_worker ID ADDRESS PORT PAYLOAD DIR: one flow (source port) per
# socat, its payload in 1000-byte datagrams.
# shellcheck disable=SC2317 # called by the inner bash
udp_worker()
{
	local id=$1 addr=$2 port=$3 payload=$4 dir=$5 n=0

	while :; do
		n=$((n + 1))
		socat -u -b 1000 "OPEN:$payload,rdonly" "UDP:$addr:$port" \
			2>>"$dir/udp.$id.err"
		[ ! -e "$dir/stop" ] || break
	done
	echo "$n" >"$dir/udp.$id.result"
}
export -f tcp_worker udp_worker

# worker NS CPU KIND ID ADDRESS PORT: start one worker in the background,
# at a lower priority than the ruleset replacements.
worker()
{
	local payload=$dir/payload

	[ "$3" = udp ] && payload=$dir/udp_payload
	# shellcheck disable=SC2016 # expanded by the inner bash
	ip netns exec "$1" nice -n 10 taskset -c "$2" bash -c "$3"'_worker "$@"' \
		"$3_worker" "$4" "$5" "$6" "$payload" "$dir" &
	pids+=($!)
}

# start_workers PREFIX: one worker per sender, IDs PREFIX<port>, from the
# client (ports 5xxx) or the server (6xxx). Sets pids.
start_workers()
{
	local sender proto port cpu ns addr

	pids=()
	for sender in "${SENDERS[@]}"; do
		IFS=: read -r proto port cpu <<<"$sender"
		ns=$nsclient
		addr=$SERVER
		if [ "${port:0:1}" = 6 ]; then
			ns=$nsserver
			addr=$CLIENT
		fi
		worker "$ns" "$cpu" "$proto" "$1$port" "$addr" "$port"
	done
}

# start_servers: echo servers and UDP sinks on both sides.
start_servers()
{
	local c port proto k ns

	for c in "${CLASSES[@]}"; do
		IFS=: read -r port proto k <<<"$c"
		ns=$nsserver
		[ "${port:0:1}" = 6 ] && ns=$nsclient
		if [ "$proto" = tcp ]; then
			# cat, not PIPE: the echo must end with the client's EOF.
			ip netns exec "$ns" socat -t 60 \
				"TCP-LISTEN:$port,reuseaddr,fork" EXEC:cat &
		else
			ip netns exec "$ns" socat -u "UDP-RECV:$port" \
				"CREATE:$dir/udp.$port.rcv" &
		fi
		if ! busywait 5000 listening "$ns" "$proto" "$port"; then
			fail "$proto port $port: no listener in $ns"
			return 1
		fi
	done
}

# check_ct_marks WHAT EACH LINES: in LINES ("DPORT MARK", of conntrack
# entries or events), every line of a test port carries its class's mark;
# with EACH=true each port has at least one line. Sets total.
check_ct_marks()
{
	local what=$1 each=$2 lines=$3 c port proto k want n bad ex

	total=0
	for c in "${CLASSES[@]}"; do
		IFS=: read -r port proto k <<<"$c"
		want=$(class_mark "$k")
		n=$(awk -v p="$port" '$1 == p' <<<"$lines" | wc -l)
		bad=$(awk -v p="$port" -v m="$want" '$1 == p && $2 != m' <<<"$lines")
		total=$((total + n))
		if [ "$n" -eq 0 ]; then
			$each || continue
			fail "$what: $proto port $port, want some, got none"
		elif [ -n "$bad" ]; then
			ex=$(head -n 1 <<<"$bad" | awk '{ printf "0x%08x", $2 }')
			fail "$what: $proto port $port (class $k), want ct mark $(printf 0x%08x "$want") on all $n, got $(wc -l <<<"$bad") others, e.g. $ex"
		fi
	done
}

# events_of_every_port: the conntrack events of the new connections include
# one of each test port.
# shellcheck disable=SC2317 # called through busywait
events_of_every_port()
{
	local c port

	for c in "${CLASSES[@]}"; do
		port=${c%%:*}
		grep -q " dport=$port " "$dir/ct-events" || return 1
	done
}

# rules_match BACKEND WHAT: BACKEND's mangle table is generation $gen
# exactly; a difference fails. Sets saved (iptables-save -c output).
rules_match()
{
	local got

	saved=$(ip netns exec "$nsrouter" "iptables-$1-save" -c -t mangle \
		2>/dev/null)
	ruleset "$gen"
	got=$(normalize <<<"$saved")
	[ "$RULES" = "$got" ] && return
	fail "$1: mangle table $2, want generation $gen exactly, got a difference"
	echo "$RULES" >"$dir/want"
	echo "$got" >"$dir/got"
	diff -u "$dir/want" "$dir/got"
	return 1
}

# check_rules BACKEND OTHER: the last generation is what BACKEND holds,
# OTHER's mangle table is empty.
check_rules()
{
	local n

	rules_match "$1" "after $gen generations"
	n=$(ip netns exec "$nsrouter" "iptables-$2-save" -t mangle 2>/dev/null |
		grep -c '^-A')
	[ "$n" -eq 0 ] ||
		fail "$2: mangle table, want empty (flushed), got $n rules"
}

# check_counters: every rule of the final ruleset counted packets, except
# the never-matching ones and the taint rules, which must count nothing.
check_counters()
{
	local line pkts rule zero

	while read -r line; do
		[[ $line == "["*"] -A "* ]] || continue
		pkts=${line#[}
		pkts=${pkts%%:*}
		rule=${line#*] }
		zero=false
		[[ $rule == *0x70000000/0x70000000* ]] && zero=true
		[[ $rule == *0x80000000/0x80000000* ]] && zero=true
		if $zero && [ "$pkts" -ne 0 ]; then
			fail "counter of '$rule': want 0, got $pkts"
		elif ! $zero && [ "$pkts" -eq 0 ]; then
			fail "counter of '$rule': want > 0, got 0"
		fi
	done <<<"$1"
}

if ! setup_router_topology; then
	echo "SKIP: Could not set up the client -- router -- server namespaces"
	exit "$ksft_skip"
fi
backends=$(xt_backends "$nsrouter")
if [ "$backends" != "legacy nft" ]; then
	fail "want both iptables backends, got '$backends'"
	exit "$ret"
fi

# An unreplied UDP entry lives 30 s, less than the debug kernel takes to
# finish the TCP echoes before the marks are checked.
if ! ip netns exec "$nsrouter" sysctl -q -w \
	net.netfilter.nf_conntrack_udp_timeout=600; then
	fail "could not set nf_conntrack_udp_timeout in $nsrouter"
	exit "$ret"
fi
head -c "$PAYLOAD_BYTES" /dev/urandom >"$dir/payload"
head -c "$UDP_BYTES" /dev/urandom >"$dir/udp_payload"
dmesg_before=$(dmesg | wc -l)

ruleset_init
gen=1
backend=legacy
ruleset "$gen"
if ! load "$backend" "$RULESET"; then
	fail "generation 1 ($backend), want loaded, got an error"
	exit "$ret"
fi
start_servers || exit "$ret"

echo "# ${SECONDS}s: setup done, stress for ${seconds}s"
rx_before=$(net_rx)
start_workers s
replace_loop $((EPOCHSECONDS + seconds))
touch "$dir/stop"
echo "# ${SECONDS}s: replacements done, waiting for the flows"
wait "${pids[@]}"
rx_after=$(net_rx)
other=legacy
[ "$backend" = legacy ] && other=nft

# Traffic: every TCP connection complete and byte-exact, every flow moved
# data.
tcp_conns=0
udp_flows=0
for f in "$dir"/tcp.*.result; do
	id=${f#"$dir"/tcp.}
	id=${id%.result}
	read -r n ok <"$f"
	tcp_conns=$((tcp_conns + n))
	if [ "$n" -eq 0 ] || [ "$ok" -ne "$n" ]; then
		fail "tcp flow $id: want all connections echoed byte-exact, got $ok of $n"
		tail -n 5 "$dir/tcp.$id.err"
	fi
done
[ "$tcp_conns" -gt 0 ] || fail "TCP: no connection ran"
for f in "$dir"/udp.*.result; do
	read -r n <"$f"
	udp_flows=$((udp_flows + n))
done
for c in "${CLASSES[@]}"; do
	IFS=: read -r port proto k <<<"$c"
	[ "$proto" = udp ] || continue
	n=$(wc -c <"$dir/udp.$port.rcv")
	[ "$n" -gt 0 ] || fail "udp port $port: want datagrams received, got none"
	echo "# udp port $port: $n bytes received"
done

echo "# $gen ruleset generations loaded in ${seconds}s ($((gen / 2)) switches between iptables-legacy and iptables-nft), last on $backend; $load_errors errors"
echo "# $tcp_conns TCP connections (echo of $PAYLOAD_BYTES bytes each), $udp_flows UDP flows"
read -r rx0 rx1 <<<"$rx_before"
read -r rx0_after rx1_after <<<"$rx_after"
echo "# NET_RX softirqs during the stress: CPU0 $((rx0_after - rx0)), CPU1 $((rx1_after - rx1))"
if [ $((rx0_after - rx0)) -lt 10 ] || [ $((rx1_after - rx1)) -lt 10 ]; then
	fail "NET_RX softirqs, want >= 10 on each CPU, got CPU0 $((rx0_after - rx0)) and CPU1 $((rx1_after - rx1))"
fi

check_rules "$backend" "$other"
# After the stress, the UDP entries of a slow run may have timed out.
check_ct_marks "after the stress: conntrack entries" false \
	"$(ct_dport_marks "$nsrouter" -f ipv4)"
echo "# $total conntrack entries of the test ports checked"
[ "$total" -gt 0 ] || fail "after the stress: want conntrack entries, got none"

# New connections on the final ruleset, one per port, with fresh counters.
ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
ip netns exec "$nsrouter" "iptables-$backend" -t mangle -Z
ct_events "$nsrouter" "$dir/ct-events" ||
	fail "conntrack -E: no event of a probe entry within 5 s"
start_workers n
wait "${pids[@]}"
for f in "$dir"/tcp.n*.result; do
	read -r n ok <"$f"
	[ "$ok" -eq "$n" ] ||
		fail "new connection (${f#"$dir"/}): want echoed byte-exact, got $ok of $n"
done
# The events show every state of every entry with its mark, even of an
# entry that a slow guest let expire before conntrack -L.
busywait 10000 events_of_every_port
kill "$CT_EVENTS_PID"
check_ct_marks "new connections: conntrack events" true \
	"$(awk "$CT_DPORT_MARK_AWK" "$dir/ct-events")"
check_ct_marks "new connections: conntrack entries" false \
	"$(ct_dport_marks "$nsrouter" -f ipv4)"
check_rules "$backend" "$other"
check_counters "$saved"

log=$(dmesg | tail -n +"$((dmesg_before + 1))")
if kernel_splats <<<"$log" >/dev/null; then
	fail "kernel log: want no splat during the stress, got:"
	echo "$log"
fi

if [ "$ret" -ne 0 ]; then
	dump_xt_state "$nsrouter" "iptables-$backend" mangle | head -n 80
	echo "# conntrack events of the new connections"
	cat "$dir/ct-events"
else
	echo "PASS: ${seconds}s, $gen ruleset replacements alternating iptables-legacy/iptables-nft, $tcp_conns TCP connections byte-exact, $udp_flows UDP flows, both CPUs forwarding: rules intact, every ct mark as classified, no splat"
fi
exit "$ret"
