#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The forwarding benchmark, sourced inside the test VM by tests/bench.sh
# (make bench: the full run) and tests/bench_smoke.sh (make check: the same
# code with tiny durations). Needs tests/lib.sh sourced first and, from the
# runner, XTCM_MODULE, XTCM_VERSION and XTCM_SRCVERSION.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   bench/sender      (rule set)                 netdev ingress: drop
#
# bench/sender sends 18-byte UDP datagrams from the client to the server:
# FLOWS flows, (source port, destination port) pairs, so FLOWS conntrack
# entries on the router. The server's veth0 counts what arrives and its
# ingress hook drops the datagrams (no ICMP back; ARP must pass, or the
# router's neighbour entry fails once it needs confirming). A sample is one
# configuration of the router for BENCH_MS ms after BENCH_WARM_MS ms of
# warm-up, one sender process that joins the client's namespace and reads
# the server's counter (/proc/PID/net/dev of a process in its namespace)
# itself; pps = packets counted at the server / the sender's elapsed time.
# Under bench/run.sh's QEMU -icount, ms are guest instruction time.
#
# Configurations, IMPL-SC-N (bench_rules):
#   none          no rules: plain forwarding, no conntrack
#   ct            conntrack only: one "-m conntrack --ctstate INVALID -j DROP"
#   ours-sc-N     the how-to's complete example with our module: restore,
#                 "-m mark ! --mark 0 -j ACCEPT" (the shortcut), N
#                 classification rules, save
#   intree-sc-N   the same with Debian's in-tree xt_connmark.ko
#   nft-sc-N      the nftables equivalent (meta mark set ct mark, ...,
#                 ct mark set meta mark)
#   *-nosc-N      without restore and shortcut: N classification rules, save
# The N classification rules are "-p udp --dport P -j MARK --set-mark I"
# (P: 21, 80, 1003, 1004, ...; no traffic matches them) and a last one that
# every datagram matches: "-p udp -j MARK --set-mark 3" ("other UDP" of the
# how-to, whose 3 rules are N = 3). Every packet crosses all N rules
# without the shortcut; with it, only a flow's first packet does.
#
# Output: one tab-separated line per sample,
#   SAMPLE flows config rep received sent elapsed_ns module
# and per memory measurement (100k flows by default),
#   MEM config flows entries objsize active_objs_delta slab_kb_delta
# where module is what /sys/module/xt_connmark says: ours, intree or none.

# shellcheck disable=SC2154 # nsclient, nsrouter, nsserver: tests/lib.sh

BENCH_IPT=${BENCH_IPT:-iptables-nft}
BENCH_SERVER=10.0.2.99
BENCH_DPORT=10000
BENCH_SPORT=20000
BENCH_CLASS_MARK=3
BENCH_FAILED=false
BENCH_SENDER=""
BENCH_SAVED_SYSCTL=()
BENCH_SERVER_PID=""
BENCH_PREV=""
declare -A BENCH_RECEIVED=()
declare -A BENCH_MODULE_SEEN=()

bench_fail()
{
	echo "FAIL: $*"
	BENCH_FAILED=true
}

# bench_sender: the sender built on the host (bench/Makefile), else one
# compiled here into /tmp.
bench_sender()
{
	local src=$REPO_DIR/bench/sender.c bin=$REPO_DIR/bench/sender

	if [ ! -x "$bin" ] || [ "$bin" -ot "$src" ]; then
		bin=/tmp/bench-sender
		gcc -O2 -Wall -Wextra -o "$bin" "$src" || return
	fi
	BENCH_SENDER=$bin
}

# bench_require_tools: skip (tests/lib.sh's checktool) without what the
# benchmark needs, the in-tree module included.
bench_require_tools()
{
	checktool "ip -Version" "run test without ip tool"
	checktool "nft --version" "run test without nft"
	checktool "$BENCH_IPT --version" "run test without $BENCH_IPT"
	checktool "conntrack --version" "run test without conntrack tool"
	checktool "test -r /proc/slabinfo" "read /proc/slabinfo"
	checktool "ls /lib/modules/$(uname -r)/kernel/net/netfilter/xt_connmark.ko*" \
		"find the in-tree xt_connmark"
}

# bench_sysctl NAME VALUE: set a global sysctl, restored by bench_cleanup.
bench_sysctl()
{
	local old

	old=$(sysctl -n "$1") || return
	BENCH_SAVED_SYSCTL+=("$1=$old")
	sysctl -q -w "$1=$2"
}

bench_cleanup()
{
	local kv

	cleanup_all_ns
	for kv in "${BENCH_SAVED_SYSCTL[@]}"; do
		sysctl -q -w "$kv"
	done
}

# bench_setup MAX_FLOWS: namespaces, the server's counter, a conntrack table
# big enough for MAX_FLOWS entries.
bench_setup()
{
	local max=$(($1 * 2 + 4096))

	bench_sender || return
	modprobe -a nf_conntrack nf_conntrack_netlink nf_tables || return
	if [ "$(sysctl -n net.netfilter.nf_conntrack_max)" -lt "$max" ]; then
		bench_sysctl net.netfilter.nf_conntrack_max "$max" || return
		echo "$(($1 + 4096))" >/sys/module/nf_conntrack/parameters/hashsize
	fi
	setup_router_topology || return
	# Entries outlive the whole run (UDP without a reply times out after
	# 30 s). Under -icount the guest's clock jumps over every idle wait
	# (9p I/O, rmmod's grace periods): a run spans hours of guest time.
	ip netns exec "$nsrouter" sysctl -q -w \
		net.netfilter.nf_conntrack_udp_timeout=864000 || return
	ip netns exec "$nsserver" nft -f - <<-EOF
		table netdev bench {
			chain in {
				type filter hook ingress device "veth0" priority 0;
				ip daddr $BENCH_SERVER udp dport >= $BENCH_DPORT drop
			}
		}
	EOF
	ip netns exec "$nsserver" sleep 1000000 &
	BENCH_SERVER_PID=$!
}

# bench_loaded: which xt_connmark is loaded: ours (the runner's file),
# intree (no version, no out-of-tree taint), none, or other.
bench_loaded()
{
	local d=/sys/module/xt_connmark version="" srcversion="" taint=""

	[ -d "$d" ] || { echo none; return; }
	[ -r "$d/version" ] && version=$(<"$d/version")
	[ -r "$d/srcversion" ] && srcversion=$(<"$d/srcversion")
	[ -r "$d/taint" ] && taint=$(<"$d/taint")
	if [ "$version" = "$XTCM_VERSION" ] &&
		[ "$srcversion" = "$XTCM_SRCVERSION" ]; then
		echo ours
	elif [ -z "$version" ] && [[ $taint != *O* ]]; then
		echo intree
	else
		echo other
	fi
}

# bench_use_module ours|intree: unload xt_connmark (no rule may use it) and
# load ours or Debian's in-tree file.
bench_use_module()
{
	local ko

	[ "$(bench_loaded)" = "$1" ] && return 0
	if [ -d /sys/module/xt_connmark ] &&
		! slowwait 30 rmmod xt_connmark 2>/dev/null; then
		bench_fail "cannot rmmod xt_connmark (refcnt $(cat \
			/sys/module/xt_connmark/refcnt 2>/dev/null))"
		return 1
	fi
	ko=$XTCM_MODULE
	if [ "$1" = intree ]; then
		ko=$(echo "/lib/modules/$(uname -r)/kernel/net/netfilter/xt_connmark.ko"*)
	fi
	if ! insmod "$ko"; then
		bench_fail "insmod $ko"
		return 1
	fi
}

# bench_rules CONFIG: the rules of CONFIG, as iptables-restore or nft -f
# input.
bench_rules()
{
	local impl sc n i port

	IFS=- read -r impl sc n <<<"$1"
	case $impl in
	none)
		echo '*mangle'
		echo COMMIT
		return
		;;
	ct)
		echo '*mangle'
		echo '-A PREROUTING -m conntrack --ctstate INVALID -j DROP'
		echo COMMIT
		return
		;;
	nft)
		echo 'table ip bench {'
		echo 'chain pre {'
		echo 'type filter hook prerouting priority mangle; policy accept;'
		[ "$sc" = sc ] && printf '%s\n' 'meta mark set ct mark' \
			'meta mark != 0 accept'
		;;
	*)
		echo '*mangle'
		[ "$sc" = sc ] && printf '%s\n' \
			'-A PREROUTING -j CONNMARK --restore-mark' \
			'-A PREROUTING -m mark ! --mark 0 -j ACCEPT'
		;;
	esac
	for ((i = 1; i < n; i++)); do
		case $i in
		1) port=21 ;;
		2) port=80 ;;
		*) port=$((1000 + i)) ;;
		esac
		if [ "$impl" = nft ]; then
			echo "udp dport $port meta mark set $i"
		else
			echo "-A PREROUTING -p udp --dport $port -j MARK --set-mark $i"
		fi
	done
	if [ "$impl" = nft ]; then
		echo "meta l4proto udp meta mark set $BENCH_CLASS_MARK"
		printf '%s\n' 'ct mark set meta mark' '}' '}'
	else
		echo "-A PREROUTING -p udp -j MARK --set-mark $BENCH_CLASS_MARK"
		echo '-A PREROUTING -j CONNMARK --save-mark'
		echo COMMIT
	fi
}

# bench_load CONFIG: load CONFIG's rules on the router. The ruleset is
# flushed first for "none", around nft configurations and before the
# module is switched (no rule may use it); iptables-restore replaces the
# mangle table of one iptables configuration by the next by itself.
bench_load()
{
	local rules want=""

	case $1 in
	ours-*) want=ours ;;
	intree-*) want=intree ;;
	esac
	if [ "$1" = none ] || [[ $1 == nft-* ]] || [[ $BENCH_PREV == nft-* ]] ||
		{ [ -n "$want" ] && [ "$(bench_loaded)" != "$want" ]; }; then
		ip netns exec "$nsrouter" nft flush ruleset || return
		if [ "$BENCH_IPT" = iptables-legacy ]; then
			printf '*mangle\nCOMMIT\n' |
				ip netns exec "$nsrouter" iptables-legacy-restore ||
				return
		fi
	fi
	BENCH_PREV=$1
	if [ -n "$want" ]; then
		bench_use_module "$want" || return
	fi
	rules=$(bench_rules "$1")
	case $1 in
	none) ;;
	nft-*) ip netns exec "$nsrouter" nft -f - <<<"$rules" ;;
	*) ip netns exec "$nsrouter" "$BENCH_IPT-restore" <<<"$rules" ;;
	esac
}

# bench_send FLOWS MS [WARM_MS]: run the sender in the client's namespace
# (MS 0: one datagram per flow), after WARM_MS ms of warm-up; prints "SENT
# ELAPSED_NS RECEIVED", RECEIVED what the server's veth0 counted during the
# measurement. One process: the sender joins the namespace and reads the
# counter (/proc/PID/net/dev of a process in the server's namespace) itself.
bench_send()
{
	local ports=$1 sockets=1 sent elapsed received

	if [ "$1" -gt 1000 ]; then
		ports=1000
		sockets=$(($1 / 1000))
	fi
	read -r _ sent _ elapsed _ received <<<"$("$BENCH_SENDER" \
		-n "/run/netns/$nsclient" -w "${3:-0}" \
		-c "/proc/$BENCH_SERVER_PID/net/dev:veth0" \
		"$BENCH_SERVER" "$BENCH_DPORT" "$ports" "$BENCH_SPORT" \
		"$sockets" "$2")"
	echo "$sent $elapsed $received"
}

# bench_sample FLOWS CONFIG REP: one measurement of the loaded CONFIG.
bench_sample()
{
	local received sent elapsed module

	read -r sent elapsed received <<<"$(bench_send "$1" "$BENCH_MS" \
		"$BENCH_WARM_MS")"
	module=$(bench_loaded)
	printf 'SAMPLE\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" \
		"$received" "$sent" "$elapsed" "$module"
	BENCH_RECEIVED["$1 $2"]+=" $received/$sent"
	BENCH_MODULE_SEEN["$2"]+=" $module"
}

# bench_slab: "active_objs objsize" of the nf_conntrack cache, and the
# kernel's Slab total in kB.
bench_slab()
{
	awk '$1 == "nf_conntrack" { print $2, $4 }' /proc/slabinfo
	awk '$1 == "Slab:" { print $2 }' /proc/meminfo
}

# bench_memory CONFIG FLOWS: conntrack entries and slab memory that FLOWS
# new flows cost with CONFIG loaded.
bench_memory()
{
	local count0 count1 active0 active1 objsize slab0 slab1

	bench_load "$2" || return
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
	slowwait 10 ip netns exec "$nsrouter" \
		grep -qx 0 /proc/sys/net/netfilter/nf_conntrack_count
	count0=$(ip netns exec "$nsrouter" cat /proc/sys/net/netfilter/nf_conntrack_count)
	{ read -r active0 objsize; read -r slab0; } <<<"$(bench_slab)"
	bench_send "$1" 0 >/dev/null
	count1=$(ip netns exec "$nsrouter" cat /proc/sys/net/netfilter/nf_conntrack_count)
	{ read -r active1 objsize; read -r slab1; } <<<"$(bench_slab)"
	printf 'MEM\t%s\t%s\t%s\t%s\t%s\t%s\n' "$2" "$1" \
		"$((count1 - count0))" "$objsize" "$((active1 - active0))" \
		"$((slab1 - slab0))"
	if [ $((count1 - count0)) -lt "$1" ]; then
		bench_fail "$2: $1 flows made $((count1 - count0)) conntrack entries"
	fi
}

# bench_seconds START END: END - START ($EPOCHREALTIME values) in seconds,
# to the millisecond.
bench_seconds()
{
	local us=$((${2/./} - ${1/./}))

	printf '%d.%03d' $((us / 1000000)) $((us % 1000000 / 1000))
}

# bench_sleep_check: how long "sleep 1" and "sleep 0.1" take on the guest's
# clock. Under QEMU's -icount with sleep=off the clock jumps over idle time:
# both must still take their time, neither return early nor hang.
bench_sleep_check()
{
	local t0 t1 t2

	t0=$EPOCHREALTIME
	sleep 1
	t1=$EPOCHREALTIME
	sleep 0.1
	t2=$EPOCHREALTIME
	echo "sleep 1 took $(bench_seconds "$t0" "$t1") s, sleep 0.1 $(bench_seconds "$t1" "$t2") s"
}

# bench_configs FLOWS: the configurations of one round, in order; ours and
# in-tree each in one block (two module swaps per round).
bench_configs()
{
	local n sc impl

	echo none ct nft-sc-3
	for impl in ours intree; do
		echo "$impl-sc-3"
		[ "$1" = "$BENCH_SWEEP_FLOWS" ] || continue
		for n in $BENCH_SWEEP_N; do
			for sc in sc nosc; do
				[ "$sc-$n" = sc-3 ] || echo "$impl-$sc-$n"
			done
		done
	done
}

# bench_run FLOWS SWEEP_FLOWS SWEEP_N REPS MS WARM_MS MEM_FLOWS MEM_CONFIGS:
# every sample of the run, then the memory measurements.
#   FLOWS        flow counts, e.g. "1000 100000"
#   SWEEP_FLOWS  the flow count of the rule-count sweep
#   SWEEP_N      classification rule counts, e.g. "1 10 50 200"
#   REPS         rounds: every configuration once per round
#   MS, WARM_MS  measured and warm-up time per sample
#   MEM_FLOWS    flows for the memory measurement
#   MEM_CONFIGS  its configurations, e.g. "ct ours-sc-3 intree-sc-3"
bench_run()
{
	local flows rep config configs max start mem

	BENCH_FLOWS=$1
	BENCH_SWEEP_FLOWS=$2
	BENCH_SWEEP_N=$3
	BENCH_REPS=$4
	BENCH_MS=$5
	BENCH_WARM_MS=$6
	BENCH_MEM_FLOWS=$7
	BENCH_MEM_CONFIGS=$8
	max=$BENCH_MEM_FLOWS
	for flows in $BENCH_FLOWS; do
		[ "$flows" -gt "$max" ] && max=$flows
	done
	if ! bench_setup "$max"; then
		bench_fail "cannot set up the namespaces"
		return 1
	fi
	echo "# $(uname -r), $BENCH_IPT, $(nproc) CPUs, sender $BENCH_SENDER"
	echo "# BENCH_FLOWS=$BENCH_FLOWS BENCH_SWEEP_FLOWS=$BENCH_SWEEP_FLOWS BENCH_SWEEP_N=$BENCH_SWEEP_N BENCH_REPS=$BENCH_REPS BENCH_MS=$BENCH_MS BENCH_WARM_MS=$BENCH_WARM_MS BENCH_MEM_FLOWS=$BENCH_MEM_FLOWS"
	echo "# loadavg at start: $(cat /proc/loadavg)"
	echo "# clocksource $(</sys/devices/system/clocksource/clocksource0/current_clocksource); $(bench_sleep_check)"
	start=$EPOCHREALTIME
	for flows in $BENCH_FLOWS; do
		read -ra configs <<<"$(bench_configs "$flows" | tr '\n' ' ')"
		# Create every flow's entry once, classified (ct mark 3).
		bench_load ours-sc-3 && bench_send "$flows" 0 >/dev/null
		for ((rep = 1; rep <= BENCH_REPS; rep++)); do
			for config in "${configs[@]}"; do
				if ! bench_load "$config"; then
					bench_fail "cannot load $config"
					continue
				fi
				bench_sample "$flows" "$config" "$rep"
			done
		done
	done
	mem=$EPOCHREALTIME
	for config in $BENCH_MEM_CONFIGS; do
		bench_memory "$BENCH_MEM_FLOWS" "$config"
	done
	echo "# guest time: samples $(bench_seconds "$start" "$mem") s, memory $(bench_seconds "$mem" "$EPOCHREALTIME") s"
	echo "# loadavg at end: $(cat /proc/loadavg)"
	ip netns exec "$nsrouter" nft flush ruleset
	bench_use_module ours
}

# bench_check: every configuration forwarded packets in every sample, with
# the module it was meant for; our module is loaded again at the end.
bench_check()
{
	local key config want got m rs bad

	# Received/sent per sample: most of what was sent must have arrived
	# (veth drops only when a backlog overflows).
	for key in "${!BENCH_RECEIVED[@]}"; do
		bad=false
		for rs in ${BENCH_RECEIVED[$key]}; do
			[ "${rs%/*}" -gt 0 ] && [ $((${rs%/*} * 2)) -ge "${rs#*/}" ] ||
				bad=true
		done
		if $bad; then
			bench_fail "${key#* } with ${key%% *} flows: a sample received less than half of what was sent (received/sent:${BENCH_RECEIVED[$key]})"
		else
			echo "PASS: ${key#* } with ${key%% *} flows forwarded packets (received/sent:${BENCH_RECEIVED[$key]})"
		fi
	done
	for config in "${!BENCH_MODULE_SEEN[@]}"; do
		case $config in
		ours-*) want=ours ;;
		intree-*) want=intree ;;
		*) continue ;;
		esac
		got=""
		for m in ${BENCH_MODULE_SEEN[$config]}; do
			[[ " $got " == *" $m "* ]] || got+=" $m"
		done
		if [ "$got" = " $want" ]; then
			echo "PASS: $config ran with the $want xt_connmark"
		else
			bench_fail "$config: want the $want xt_connmark, loaded:$got"
		fi
	done
	got=$(bench_loaded)
	if [ "$got" = ours ]; then
		echo "PASS: our xt_connmark is loaded again at the end"
	else
		bench_fail "at the end xt_connmark is '$got', want ours"
	fi
	! $BENCH_FAILED
}
