#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the kselftest-style scripts in tests/, modelled on
# tools/testing/selftests/net/lib.sh: exit codes, network namespaces with
# random suffixes, tool checks, polling and counter reads.

# shellcheck disable=SC2034 # the exit codes are used by the scripts sourcing us
ksft_pass=0
ksft_fail=1
ksft_xfail=2
ksft_skip=4

# KERNEL_SPLATS: what a kernel log must not contain (grep -E): warnings,
# BUGs and oopses, and the reports of the debug kernel's bug finders (KASAN,
# UBSAN, lockdep, kmemleak, DEBUG_LIST) and of refcount_t.
KERNEL_SPLATS='(WARNING|BUG):|Oops|Call Trace|UBSAN|KASAN|kmemleak: [0-9]+ new suspected|general protection|refcount_t|list_(add|del) corruption|possible circular locking|suspicious RCU'

# kernel_splats: the lines of the kernel log on stdin that match
# KERNEL_SPLATS; succeeds when there is one. A KCSAN report (from its
# "BUG: KCSAN:" line to the closing "====" line) counts only when one of
# its frames is in xt_connmark: the KCSAN lane's strict mode also reports
# races of the core kernel that are not this project's to fix (tests/run.sh
# prints how many).
kernel_splats()
{
	awk '
	/BUG: KCSAN:/ { in_report = 1; report = ""; ours = 0 }
	in_report {
		report = report $0 "\n"
		if (/xt_connmark/)
			ours = 1
		if (/=====/) {
			in_report = 0
			if (ours)
				printf "%s", report
		}
		next
	}
	{ print }
	END { if (in_report && ours) printf "%s", report }' |
		grep -E "$KERNEL_SPLATS"
}

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$TESTS_DIR")
NS_LIST=()

# Plugins come from the build tree first, the distribution's after it, so
# that everything but CONNMARK/connmark (tcp, mark, MARK, ...) still loads.
: "${XTABLES_LIBDIR:=$REPO_DIR/libxt:$(pkg-config --variable=xtlibdir xtables 2>/dev/null || echo /usr/lib/x86_64-linux-gnu/xtables)}"
export XTABLES_LIBDIR

# checktool "cmd args" "why": skip the test when a tool is missing.
checktool()
{
	if ! eval "$1" >/dev/null 2>&1; then
		echo "SKIP: Could not $2"
		exit "$ksft_skip"
	fi
}

# expect WHAT CONDITION: pass or fail (lib.sh's, or the caller's own) on a
# test(1) expression given as words.
expect()
{
	local what=$1
	shift

	if test "$@"; then
		pass "$what"
	else
		fail "$what (test: $*)"
	fi
}

# setup_ns VAR...: create one namespace per variable name, named VAR-XXXXXX,
# store the name in VAR, bring lo up.
setup_ns()
{
	local var ns

	for var in "$@"; do
		ns="$var-$(mktemp -u XXXXXX)"
		if ! ip netns add "$ns"; then
			echo "FAIL: cannot create namespace $ns"
			return "$ksft_fail"
		fi
		ip -net "$ns" link set lo up
		NS_LIST+=("$ns")
		printf -v "$var" '%s' "$ns"
	done
}

cleanup_all_ns()
{
	local ns

	for ns in "${NS_LIST[@]}"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	NS_LIST=()
}

# busywait TIMEOUT_MS CMD...: retry CMD until it succeeds or time runs out;
# prints CMD's last output.
busywait()
{
	local timeout_ms=$1 start out rc
	shift

	start=$(date +%s%3N)
	while true; do
		out=$("$@")
		rc=$?
		if [ "$rc" -eq 0 ] || [ $(($(date +%s%3N) - start)) -ge "$timeout_ms" ]; then
			echo -n "$out"
			return "$rc"
		fi
		sleep 0.1
	done
}

# slowwait TIMEOUT_S CMD...
slowwait()
{
	local timeout_s=$1
	shift

	busywait "$((timeout_s * 1000))" "$@"
}

# rule_packets NS IPTABLES TABLE CHAIN RULENUM: packet counter of one rule.
rule_packets()
{
	ip netns exec "$1" "$2" -t "$3" -L "$4" "$5" -v -n -x |
		awk '{ print $1; exit }'
}

# ct_marks NS [conntrack args...]: "mark" values of the matching entries,
# one per line, in decimal as /proc/net/nf_conntrack prints them.
ct_marks()
{
	local ns=$1
	shift

	ip netns exec "$ns" conntrack -L "$@" 2>/dev/null |
		sed -n 's/.* mark=\([0-9]*\).*/\1/p'
}

# lax_sysctls NS [NAME=VALUE...]: in NS, no reverse path filter and no
# duplicate address detection (which would delay IPv6) on the links made
# afterwards, and the other sysctls NAME=VALUE.
lax_sysctls()
{
	local ns=$1
	shift

	ip netns exec "$ns" sysctl -q -w net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.default.rp_filter=0 \
		net.ipv6.conf.all.accept_dad=0 \
		net.ipv6.conf.default.accept_dad=0 "$@" >/dev/null
}

# setup_router_topology: three namespaces, client -- router -- server, names
# in $nsclient, $nsrouter and $nsserver; the router forwards both families.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99/24      10.0.1.1/24  10.0.2.1/24   10.0.2.99/24
#   dead:1::99/64     dead:1::1/64 dead:2::1/64  dead:2::99/64
#
# The client and the server route everything via the router. Returns non-zero
# when the namespaces cannot be built or the server does not answer a ping
# of either family (which also fills the neighbour caches).
nsclient=""
nsrouter=""
nsserver=""
setup_router_topology()
{
	setup_ns nsclient nsrouter nsserver || return
	# Before the router's links exist, so that they inherit the defaults:
	# no duplicate address detection there, it would delay IPv6.
	lax_sysctls "$nsrouter" net.ipv4.conf.all.forwarding=1 \
		net.ipv6.conf.all.forwarding=1 || return
	ip link add veth0 netns "$nsclient" type veth \
		peer name veth0 netns "$nsrouter" || return
	ip link add veth1 netns "$nsrouter" type veth \
		peer name veth0 netns "$nsserver" || return

	# One "ip" per namespace: processes are slow in an emulated guest.
	ip -net "$nsclient" -batch - <<-EOF || return
		addr add 10.0.1.99/24 dev veth0
		addr add dead:1::99/64 dev veth0 nodad
		link set veth0 up
		route add default via 10.0.1.1
		route add default via dead:1::1
	EOF
	ip -net "$nsrouter" -batch - <<-EOF || return
		addr add 10.0.1.1/24 dev veth0
		addr add dead:1::1/64 dev veth0 nodad
		addr add 10.0.2.1/24 dev veth1
		addr add dead:2::1/64 dev veth1 nodad
		link set veth0 up
		link set veth1 up
	EOF
	ip -net "$nsserver" -batch - <<-EOF || return
		addr add 10.0.2.99/24 dev veth0
		addr add dead:2::99/64 dev veth0 nodad
		link set veth0 up
		route add default via 10.0.2.1
		route add default via dead:2::1
	EOF

	# IPv6 starts on a veth only once linkwatch has seen the carrier come
	# up, which can take a second.
	slowwait 10 ip netns exec "$nsclient" ping -q -c 1 -W 0.5 10.0.2.99 \
		>/dev/null || return
	slowwait 10 ip netns exec "$nsclient" ping -q -c 1 -W 0.5 dead:2::99 \
		>/dev/null
}

# xt_backends NS: the iptables backends ("legacy", "nft") whose iptables and
# ip6tables can both use the mangle table in NS, space separated. A backend
# the kernel lacks (e.g. legacy compiled out) is left out.
xt_backends()
{
	local b out=""

	for b in legacy nft; do
		ip netns exec "$1" "iptables-$b" -t mangle -S >/dev/null 2>&1 &&
			ip netns exec "$1" "ip6tables-$b" -t mangle -S \
				>/dev/null 2>&1 &&
			out+="${out:+ }$b"
	done
	echo "$out"
}

# require_tools "CMD ARGS"...: checktool for each command line (e.g.
# "ss -V"); the test is skipped unless every one runs.
require_tools()
{
	local cmd

	for cmd in "$@"; do
		checktool "$cmd" "run test without ${cmd%% *}"
	done
}

# require_two_cpus: the test is skipped unless the guest has two CPUs
# online (the tests that run flows on both at once).
require_two_cpus()
{
	local ncpus

	ncpus=$(getconf _NPROCESSORS_ONLN)
	[ "$ncpus" -ge 2 ] && return
	echo "SKIP: Could not run on two CPUs, $ncpus online"
	exit "$ksft_skip"
}

# require_xt_tools ["CMD ARGS"...]: require_tools for what every traffic
# test runs (ip, conntrack, ping, iptables, ip6tables and their -restore of
# both backends), then for each CMD.
require_xt_tools()
{
	local b

	require_tools "ip -Version" "conntrack --version" "ping -V"
	for b in legacy nft; do
		require_tools "iptables-$b --version" "ip6tables-$b --version" \
			"iptables-$b-restore --version" \
			"ip6tables-$b-restore --version"
	done
	require_tools "$@"
}

# require_xt_backends NS: XT_BACKENDS=$(xt_backends NS); the test is
# skipped when neither backend works there.
XT_BACKENDS=""
require_xt_backends()
{
	XT_BACKENDS=$(xt_backends "$1")
	if [ -z "$XT_BACKENDS" ]; then
		echo "SKIP: Could not use iptables-legacy or iptables-nft here"
		exit "$ksft_skip"
	fi
}

# pass MESSAGE: one PASS line, for expect(); a script may define its own
# after sourcing us (cookbook.sh names the backend).
pass()
{
	echo "PASS: $*"
}

# fail MESSAGE: one FAIL line; the test fails (ret), and so does the batch
# of checks under way (batch_failed, for the tests that dump their state once
# per failed batch).
fail()
{
	echo "FAIL: $*"
	ret=1
	batch_failed=true
}

# set_family 4|6: the per-family variables of setup_router_topology for
# $BACKEND: FAM, IPT (the iptables command), SERVER (the server's address),
# SERVER_SOCAT (socat's TCP address of the server), CT_L3 (conntrack's name
# of the family).
set_family()
{
	FAM=$1
	if [ "$FAM" = 4 ]; then
		IPT=iptables-$BACKEND
		SERVER=10.0.2.99
		SERVER_SOCAT=TCP4:$SERVER
		CT_L3=ipv4
	else
		IPT=ip6tables-$BACKEND
		SERVER=dead:2::99
		SERVER_SOCAT="TCP6:[$SERVER]"
		CT_L3=ipv6
	fi
}

# for_each_backend_family FUNC [BACKEND_FUNC]: for BACKEND in legacy, nft:
# "set_family 4; FUNC", "set_family 6; FUNC", then BACKEND_FUNC. A backend
# missing from XT_BACKENDS (require_xt_backends) is a FAIL, since every
# kernel the suite runs on has both: returns 1 then.
for_each_backend_family()
{
	local family rc=0

	for BACKEND in legacy nft; do
		if [[ " $XT_BACKENDS " != *" $BACKEND "* ]]; then
			echo "FAIL: $BACKEND: iptables-$BACKEND does not work here"
			rc=1
			continue
		fi
		for family in 4 6; do
			set_family "$family"
			"$1"
		done
		[ -z "${2-}" ] || "$2"
	done
	return "$rc"
}

# dump_xt_state NS IPTABLES [TABLE...]: the rules with counters of each
# TABLE (default mangle) and the conntrack table of NS, for FAIL messages.
dump_xt_state()
{
	local ns=$1 ipt=$2 table
	shift 2

	for table in "${@:-mangle}"; do
		echo "# $ipt -t $table -v -S ($ns)"
		ip netns exec "$ns" "$ipt" -t "$table" -v -S 2>&1
	done
	echo "# conntrack -L ($ns)"
	ip netns exec "$ns" conntrack -L 2>&1
}

# chain_counters NS IPTABLES TABLE: "CHAIN RULENUM PACKETS" for every rule of
# every chain of TABLE, one line each: all counters with one command.
chain_counters()
{
	ip netns exec "$1" "$2" -t "$3" -L -v -n -x 2>/dev/null |
		awk '$1 == "Chain" { chain = $2; n = 0; next }
		     $1 == "pkts" || NF == 0 { next }
		     { print chain, ++n, $1 }'
}

# awk program: the first dport= and the mark= of each conntrack line.
# shellcheck disable=SC2016 # awk fields, not shell expansions
CT_DPORT_MARK_AWK='{
	port = ""; mark = ""
	for (i = 1; i <= NF; i++) {
		if (port == "" && $i ~ /^dport=/)
			port = substr($i, 7)
		if ($i ~ /^mark=/)
			mark = substr($i, 6)
	}
	if (port != "" && mark != "")
		print port, mark
}'

# ct_events NS FILE [CONNTRACK_ARGS...]: conntrack -E in NS, line by line
# into FILE, in the background (CT_EVENTS_PID), once it is subscribed: a
# probe entry, UDP 192.0.2.1 -> 192.0.2.2 port 5000 (ARGS must let it pass),
# shows in FILE.
CT_EVENTS_PID=""
ct_events()
{
	local ns=$1 file=$2
	shift 2

	ip netns exec "$ns" stdbuf -oL conntrack -E "$@" >"$file" 2>/dev/null &
	CT_EVENTS_PID=$!
	slowwait 5 bash -c "ip netns exec $ns conntrack -I -p udp \
		-s 192.0.2.1 -d 192.0.2.2 --sport \$RANDOM --dport 5000 -t 30 \
		>/dev/null 2>&1; grep -q 192.0.2.1 $file"
}

# ct_dport_marks NS [conntrack args...]: "DPORT MARK" of the matching
# entries, one per line: the original direction's destination port and the
# mark in decimal.
ct_dport_marks()
{
	local ns=$1
	shift

	ip netns exec "$ns" conntrack -L "$@" 2>/dev/null |
		awk "$CT_DPORT_MARK_AWK"
}

# ct_proc_dport_marks NS L3 L4: the same from /proc/net/nf_conntrack, for
# the entries whose layer 3 and 4 names are L3 (ipv4, ipv6) and L4 (udp, tcp).
ct_proc_dport_marks()
{
	# shellcheck disable=SC2016 # awk fields, not shell expansions
	ip netns exec "$1" awk -v l3="$2" -v l4="$3" \
		'$1 == l3 && $3 == l4 '"$CT_DPORT_MARK_AWK" /proc/net/nf_conntrack
}

# udp_send NS ADDRESS PORT...: one small datagram from NS to each PORT of
# ADDRESS, all from one process (bash's /dev/udp).
udp_send()
{
	local ns=$1 addr=$2
	shift 2

	# shellcheck disable=SC2016 # expanded by the inner bash
	ip netns exec "$ns" bash -c 'addr=$1; shift
		for port; do echo x >"/dev/udp/$addr/$port" || exit 1; done' \
		udp_send "$addr" "$@"
}

# chain_packets_at_least NS IPTABLES TABLE CHAIN N: succeed once the rules of
# CHAIN have counted N packets together; prints the sum (for busywait).
chain_packets_at_least()
{
	local sum

	sum=$(chain_counters "$1" "$2" "$3" |
		awk -v chain="$4" '$1 == chain { sum += $3 } END { print sum + 0 }')
	echo "$sum"
	[ "$sum" -ge "$5" ]
}

# fill_assoc ARRAY TEXT: for each line of TEXT, ARRAY[all fields but the
# last] = the last field; a key seen again collects its values, space
# separated. ARRAY is an associative array of the caller. Made for
# "fill_assoc counters "$(chain_counters ...)"": no process substitution,
# since the test VM has no /dev/fd.
fill_assoc()
{
	local -n fill_assoc_arr=$1
	local line key value

	while read -r line; do
		[ -n "$line" ] || continue
		key=${line% *}
		value=${line##* }
		[ -n "${fill_assoc_arr["$key"]+set}" ] &&
			value="${fill_assoc_arr["$key"]} $value"
		fill_assoc_arr["$key"]=$value
	done <<<"$2"
}

# setup_second_uplink: after setup_router_topology, a second link between
# the router and the server, and an "Internet" address on the server that
# the router's main table reaches through the first link:
#
#   nsrouter veth2 -- veth1 nsserver     nsserver lo
#   10.0.3.1/24       10.0.3.99/24       10.0.9.99/32
#   dead:3::1/64      dead:3::99/64      dead:9::99/128
#
# The server still routes everything back through 10.0.2.1 (uplink 1).
setup_second_uplink()
{
	lax_sysctls "$nsserver" || return
	ip link add veth2 netns "$nsrouter" type veth \
		peer name veth1 netns "$nsserver" || return
	ip -net "$nsrouter" -batch - <<-EOF2 || return
		addr add 10.0.3.1/24 dev veth2
		addr add dead:3::1/64 dev veth2 nodad
		link set veth2 up
		route add 10.0.9.0/24 via 10.0.2.99
		route add dead:9::/64 via dead:2::99
	EOF2
	ip -net "$nsserver" -batch - <<-EOF2 || return
		addr add 10.0.9.99/32 dev lo
		addr add dead:9::99/128 dev lo
		addr add 10.0.3.99/24 dev veth1
		addr add dead:3::99/64 dev veth1 nodad
		link set veth1 up
	EOF2
	slowwait 10 ip netns exec "$nsrouter" ping -q -c 1 -W 0.5 10.0.3.99 \
		>/dev/null || return
	slowwait 10 ip netns exec "$nsrouter" ping -q -c 1 -W 0.5 dead:3::99 \
		>/dev/null || return
	slowwait 10 ip netns exec "$nsclient" ping -q -c 1 -W 0.5 10.0.9.99 \
		>/dev/null || return
	slowwait 10 ip netns exec "$nsclient" ping -q -c 1 -W 0.5 dead:9::99 \
		>/dev/null
}

# tc_class_packets NS DEV CLASSID: packets sent by one tc class.
tc_class_packets()
{
	tc -net "$1" -s class show dev "$2" classid "$3" 2>/dev/null |
		awk '$1 == "Sent" { print $4; exit }'
}

# report_block ID MACHINE RC OUT: log the output OUT of the block "sh ID
# MACHINE" of docs/cookbook.md, which exited with RC; non-zero is a FAIL.
report_block()
{
	echo "# block $1 ($2), exit $3"
	[ -n "$4" ] && echo "#   ${4//$'\n'/$'\n'#   }"
	[ "$3" -eq 0 ] && return 0
	fail "block \"sh $1 $2\" of docs/cookbook.md failed (exit $3)"
	return 1
}

# read_blocks FILE ARRAY: ARRAY["ID MACHINE"] = the text of the fenced blocks
# of FILE whose info string is "sh ID MACHINE..." (one or more machine
# names; a block goes to each), in order. ARRAY is an associative array of
# the caller. Pure bash: every process is slow in the VM.
read_blocks()
{
	local -n read_blocks_arr=$2
	local line tag machine inside=false
	local -a tags=()

	while IFS= read -r line; do
		if [[ "$line" == '```'* ]]; then
			tags=()
			if $inside; then
				inside=false
				continue
			fi
			inside=true
			[[ "$line" =~ ^'```sh '([^ ]+)((' '[a-z0-9]+)+)$ ]] || continue
			for machine in ${BASH_REMATCH[2]}; do
				tags+=("${BASH_REMATCH[1]} $machine")
			done
			continue
		fi
		for tag in "${tags[@]}"; do
			read_blocks_arr["$tag"]+="$line"$'\n'
		done
	done <"$1"
}

# tginfo CTMARK CTMASK NFMASK SHIFT_DIR SHIFT_BITS MODE FUNC: the hex of a
# 16-byte CONNMARK revision 2 or 3 blob, as tests/hostile/xt_hostile dump
# prints what the kernel holds (FUNC is revision 2's padding, 0). The u32
# fields are little-endian, as on every architecture the suite runs on.
tginfo()
{
	local v out=""

	for v in "$1" "$2" "$3"; do
		out+=$(printf '%02x%02x%02x%02x' $((v & 255)) $((v >> 8 & 255)) \
			$((v >> 16 & 255)) $((v >> 24 & 255)))
	done
	printf '%s%02x%02x%02x%02x' "$out" "$4" "$5" "$6" "$7"
}
