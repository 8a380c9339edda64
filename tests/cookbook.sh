#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs the recipes of docs/cookbook.md and checks what the kernel did. The
# commands come from the page itself: every fenced block whose info string
# is "sh ID MACHINE" runs, as one bash script with "set -e", in that
# machine's namespace (MACHINE "host": in the initial one), with iptables and
# ip6tables standing for iptables-legacy/-nft and ip6tables-legacy/-nft.
# Every recipe runs once per backend. A block of one of the recipes run
# that the recipe did not run, or a block that belongs to no recipe (IDs are
# rN or rN-WORD), is a failure. A missing tc module, FTP helper or FTP
# server is a failure too, not a skip: Debian's kernels and tests/deps.sh
# provide them all. (The suite runs this script as cookbook_marking.sh and
# cookbook_services.sh, half of the recipes each.)
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver   uplink 1
#   10.0.1.99         10.0.1.1     10.0.2.1      10.0.2.99
#   dead:1::99        dead:1::1    dead:2::1     dead:2::99
#                                  veth2 -- veth1              uplink 2
#                                  10.0.3.1      10.0.3.99
#                                  dead:3::1     dead:3::99
#   nsserver lo: 10.0.9.99, dead:9::99 ("the Internet", via uplink 1)
#
# The server runs TCP echo servers on 10.0.9.99/dead:9::99 ports 21, 80,
# 443 and 8080, an FTP server (pyftpdlib) on 10.0.2.99 port 21 and UDP
# sinks on ports 5000 and 5001; the client an echo server on port 8080.
# The client (and the server) count their own packets in the filter table;
# the router's rule counters, interface counters, tc class and cake tin
# counters and conntrack entries must agree with them.
#
# Usage: cookbook.sh [RECIPE...] (numbers, default all)

# shellcheck disable=SC2317 # the recipes run as "recipe_$r", helpers by eval
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

COOKBOOK=$REPO_DIR/docs/cookbook.md
PYTHON3=/usr/bin/python3

# "command -v", a builtin: every process costs in the emulated guest.
for tool in ip tc ss iptables-legacy ip6tables-legacy iptables-nft \
	ip6tables-nft conntrack socat curl stdbuf dmesg; do
	checktool "command -v $tool" "run test without $tool"
done
checktool "test -x $PYTHON3" "run test without python3"
checktool "test -r $COOKBOOK" "read docs/cookbook.md"

ret=0
RAN=" "
DIRTY=" "
NETDIRTY=false
tmpdir=$(mktemp -d)
log_all_netns=$(sysctl -n net.netfilter.nf_log_all_netns 2>/dev/null)

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	[ -n "$log_all_netns" ] &&
		sysctl -q -w net.netfilter.nf_log_all_netns="$log_all_netns"
	rm -rf "$tmpdir"
}
trap cleanup EXIT

pass()
{
	echo "PASS: $BACKEND: $1"
}

fail()
{
	echo "FAIL: $BACKEND: $1"
	ret=1
	recipe_failed=true
}

# BLOCKS["ID MACHINE"]: the text of the page's blocks (tests/lib.sh).
declare -A BLOCKS

# run_block ID MACHINE: run the page's block; its output goes to the log.
run_block()
{
	local id=$1 machine=$2 script ns out
	local prelude="set -e
iptables() { iptables-$BACKEND \"\$@\"; }
ip6tables() { ip6tables-$BACKEND \"\$@\"; }
"

	script=${BLOCKS["$id $machine"]:-}
	if [ -z "$script" ]; then
		fail "docs/cookbook.md has no block \"sh $id $machine\""
		return 1
	fi
	RAN+="$id/$machine "
	if [ "$machine" = router ]; then
		dirty "$nsrouter" 4
		[[ "$script" == *ip6tables* ]] && dirty "$nsrouter" 6
		[[ "$script" == *"ip "* || "$script" == *"tc "* ]] &&
			NETDIRTY=true
	fi
	case $machine in
	router) ns=$nsrouter ;;
	client) ns=$nsclient ;;
	server) ns=$nsserver ;;
	*) ns="" ;;
	esac
	if [ -n "$ns" ]; then
		out=$(ip netns exec "$ns" bash -c "$prelude$script" 2>&1)
	else
		out=$(bash -c "$prelude$script" 2>&1)
	fi
	report_block "$id" "$machine" "$?" "$out"
}

# expect_eq WHAT WANT_CMD GOT_CMD: poll (3 s) until both commands print the
# same, then PASS or FAIL. Counters of the last packets may lag a little.
expect_eq()
{
	local what=$1 want got start

	start=${EPOCHREALTIME/./}
	while true; do
		want=$(eval "$2")
		got=$(eval "$3")
		[ "$want" = "$got" ] && break
		[ $((${EPOCHREALTIME/./} - start)) -ge 3000000 ] && break
		sleep 0.1
	done
	if [ "$want" = "$got" ]; then
		pass "$what (${got//$'\n'/, })"
	else
		fail "$what, want ${want//$'\n'/, }, got ${got//$'\n'/, }"
	fi
}

# ctr NS FAM TABLE CHAIN RULENUM [bytes]: packets (or bytes) of one rule.
ctr()
{
	local ipt=iptables-$BACKEND out pkts bytes

	[ "$2" = 6 ] && ipt=ip6tables-$BACKEND
	out=$(ip netns exec "$1" "$ipt" -t "$3" -L "$4" "$5" -v -n -x 2>/dev/null)
	read -r pkts bytes _ <<<"$out"
	if [ "${6:-}" = bytes ]; then
		echo "${bytes:-none}"
	else
		echo "${pkts:-none}"
	fi
}

# sum N...: their sum.
sum()
{
	local s=0 n

	for n; do
		s=$((s + n))
	done
	echo "$s"
}

# xt_restore NS FAM: iptables-restore of the backend, from stdin.
xt_restore()
{
	if [ "$2" = 6 ]; then
		ip netns exec "$1" "ip6tables-$BACKEND-restore"
	else
		ip netns exec "$1" "iptables-$BACKEND-restore"
	fi
}

# count_rules NS FAM RULE...: the filter table of NS becomes these rules.
count_rules()
{
	local ns=$1 fam=$2 rule
	shift 2

	dirty "$ns" "$fam"
	{
		echo '*filter'
		for rule; do
			echo "$rule"
		done
		echo COMMIT
	} | xt_restore "$ns" "$fam"
}

# tcp_echo NS DEST PORT [SOCAT_OPTIONS]: one connection whose lines must
# come back.
tcp_echo()
{
	local out want

	want=$(printf 'cookbook %s\nline two' "$3")
	out=$(printf '%s\n' "$want" | ip netns exec "$1" socat -t 3 - \
		"TCP:$2:$3${4:+,$4}" 2>&1)
	[ "$out" = "$want" ] && return 0
	fail "connection from $1 to $2 port $3, want its data echoed, got: $out"
	return 1
}

# v6addr FAM ADDR4 ADDR6: the address of the family, bracketed for socat.
v6addr()
{
	if [ "$1" = 6 ]; then echo "[$3]"; else echo "$2"; fi
}

# ct_list FAM [conntrack args]: "DPORT MARK" of the router's TCP entries,
# sorted.
ct_list()
{
	local fam=$1
	shift

	ct_dport_marks "$nsrouter" -f "ipv$fam" -p tcp "$@" | sort
}

# dirty NS FAM: reset_all must empty the tables of NS and family FAM.
dirty()
{
	[[ "$DIRTY" == *" $1:$2 "* ]] || DIRTY+="$1:$2 "
}

# reset_all: no rules, qdiscs, policy routes or conntrack entries left
# (only the tables that were used: iptables-restore is slow in the VM).
reset_all()
{
	local entry

	for entry in $DIRTY; do
		printf '*mangle\nCOMMIT\n*raw\nCOMMIT\n*filter\nCOMMIT\n' |
			xt_restore "${entry%:*}" "${entry#*:}" 2>/dev/null
	done
	DIRTY=" "
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
	$NETDIRTY || return 0
	NETDIRTY=false
	tc -force -net "$nsrouter" -batch - >/dev/null 2>&1 <<-EOF
		qdisc del dev veth0 root
		qdisc del dev veth1 ingress
	EOF
	ip -4 -force -net "$nsrouter" -batch - >/dev/null 2>&1 <<-EOF
		link del ifb0
		link del ifb1
		rule del fwmark 2 table 2
		rule del fwmark 3 table 3
		route flush table 2
		route flush table 3
	EOF
	ip -6 -force -net "$nsrouter" -batch - >/dev/null 2>&1 <<-EOF
		rule del fwmark 2 table 2
		route flush table 2
	EOF
	ip -force -net "$nsserver" -batch - >/dev/null 2>&1 <<-EOF
		route del 10.0.1.0/24 via 10.0.3.1
		route del dead:1::/64 via dead:3::1
	EOF
}

# shellcheck disable=SC2317 # called by busywait
listening()
{
	local n

	local -a lines

	mapfile -t lines <<<"$(ip netns exec "$1" ss -ltnuH)"
	n=${#lines[@]}
	echo "$n"
	[ "$n" -ge "$2" ]
}

start_servers()
{
	local port nlisten

	# Python first: it takes longest to start in the emulated guest.
	nlisten=10
	if [[ " ${recipes[*]} " == *" "[48]" "* ]]; then
		nlisten=11
		mkdir "$tmpdir/ftp"
		printf '%30000s\n' "FTP data" >"$tmpdir/ftp/file"
		(cd "$tmpdir" && exec ip netns exec "$nsserver" "$PYTHON3" \
			-m pyftpdlib -i 10.0.2.99 -p 21 -r 50000-50009 \
			-d "$tmpdir/ftp" >"$tmpdir/ftp.log" 2>&1) &
	fi
	for port in 21 80 443 8080; do
		ip netns exec "$nsserver" socat \
			"TCP4-LISTEN:$port,bind=10.0.9.99,reuseaddr,fork" PIPE &
		ip netns exec "$nsserver" socat \
			"TCP6-LISTEN:$port,bind=[dead:9::99],ipv6only=1,reuseaddr,fork" PIPE &
	done
	for port in 5000 5001; do
		ip netns exec "$nsserver" socat -u "UDP4-RECV:$port" /dev/null &
	done
	ip netns exec "$nsclient" socat \
		"TCP4-LISTEN:8080,reuseaddr,fork" PIPE &
	ip netns exec "$nsclient" socat \
		"TCP6-LISTEN:8080,ipv6only=1,reuseaddr,fork" PIPE &
	busywait 120000 listening "$nsserver" "$nlisten" >/dev/null &&
		busywait 10000 listening "$nsclient" 2 >/dev/null
}

# Recipes 1 and 11-1: persistence. FAM, block ID, show block ID.
recipe_persist()
{
	local fam=$1 id=$2 show=$3 dst c

	dst=$(v6addr "$fam" 10.0.9.99 dead:9::99)
	count_rules "$nsclient" "$fam" \
		"-A OUTPUT -o veth0 -p tcp --dport 80" \
		"-A INPUT -i veth0 -p tcp --sport 80" || return
	run_block "$id" router && run_block "$show" router || return
	tcp_echo "$nsclient" "$dst" 80
	tcp_echo "$nsclient" "$dst" 80
	tcp_echo "$nsclient" "$dst" 443
	c="sum \$(ctr $nsclient $fam filter OUTPUT 1) \$(ctr $nsclient $fam filter INPUT 1)"
	expect_eq "$id: FORWARD counted every packet of the port 80 connections with mark 2, both directions, as the client counted them" \
		"$c" "ctr $nsrouter $fam mangle FORWARD 1"
	expect_eq "$id: conntrack: the two port 80 connections have mark 2, the port 443 one 0" \
		"printf '443 0\n80 2\n80 2\n'" "ct_list $fam"
}

# Recipes 2 and 11-2: classification once per connection.
recipe_simple()
{
	local fam=$1 id=$2 show=$3 dst c

	dst=$(v6addr "$fam" 10.0.9.99 dead:9::99)
	count_rules "$nsclient" "$fam" \
		"-A OUTPUT -o veth0 -p tcp" "-A INPUT -i veth0 -p tcp" || return
	run_block "$id" router || return
	tcp_echo "$nsclient" "$dst" 21
	tcp_echo "$nsclient" "$dst" 80
	tcp_echo "$nsclient" "$dst" 80
	c="sum \$(ctr $nsclient $fam filter OUTPUT 1) \$(ctr $nsclient $fam filter INPUT 1) -3"
	expect_eq "$id: ACCEPT (rule 2) took every packet but the 3 first ones, both directions" \
		"$c" "ctr $nsrouter $fam mangle PREROUTING 2"
	expect_eq "$id: classification rules 3/4 (port 21/80) ran once per connection" \
		"echo 1/2" \
		"echo \$(ctr $nsrouter $fam mangle PREROUTING 3)/\$(ctr $nsrouter $fam mangle PREROUTING 4)"
	expect_eq "$id: conntrack -L: the port 21 connection has mark 1, the port 80 ones mark 2" \
		"printf '21 1\n80 2\n80 2\n'" "ct_list $fam"
	[ -n "$show" ] && run_block "$show" router
	expect_eq "$id: conntrack -L -m 2 lists the two port 80 connections" \
		"printf '80 2\n80 2\n'" "ct_list $fam -m 2"
}

# link_count NS rx|tx DEV...: the packet counters of the devices, in order,
# from one ip command.
link_count()
{
	local ns=$1 dir=$2 out dev line i res=""
	local -a seg f
	shift 2

	out=$(ip -net "$ns" -s -o link show)
	for dev; do
		while IFS= read -r line; do
			[[ "$line" == *": $dev"[@:]* ]] || continue
			mapfile -t seg <<<"${line//\\/$'\n'}"
			for ((i = 0; i < ${#seg[@]}; i++)); do
				if [[ "${seg[i]}" == *"${dir^^}:"* ]]; then
					read -ra f <<<"${seg[i + 1]}"
					res+="${res:+ }${f[1]}"
					break
				fi
			done
		done <<<"$out"
	done
	echo "$res"
}

# link_delta DEV BEFORE: packets the router's DEV transmitted since BEFORE.
link_delta()
{
	echo $(($(link_count "$nsrouter" tx "$1") - $2))
}

# route_check WHAT DEV OTHER COUNT_CMD TRAFFIC...: run TRAFFIC; the packets
# that COUNT_CMD counts (on the client or the server) must all leave the
# router through DEV, and none through OTHER (2 packets of slack for
# neighbour discovery).
route_check()
{
	local what=$1 dev=$2 other=$3 count=$4 a0 b0 a b c
	shift 4

	read -r a0 b0 <<<"$(link_count "$nsrouter" tx "$dev" "$other")"
	"$@"
	busywait 3000 expect_settled "$count" "link_delta $dev $a0" >/dev/null
	read -r a b <<<"$(link_count "$nsrouter" tx "$dev" "$other")"
	a=$((a - a0))
	b=$((b - b0))
	c=$(eval "$count")
	expect "$what: its $c packets left through $dev ($a), not $other ($b)" \
		"$c" -ge 3 -a "$a" -ge "$c" -a "$b" -le 2
}

# Recipes 6 and 11-6: two uplinks.
recipe_uplinks()
{
	local fam=$1 route=$2 id=$3 show=$4 dst client from

	dst=$(v6addr "$fam" 10.0.9.99 dead:9::99)
	client=$(v6addr "$fam" 10.0.1.99 dead:1::99)
	from=$(v6addr "$fam" 10.0.9.99 dead:9::99)
	# The Internet reaches the client through uplink 2.
	NETDIRTY=true
	if [ "$fam" = 6 ]; then
		ip -net "$nsserver" -6 route add dead:1::/64 via dead:3::1
	else
		ip -net "$nsserver" route add 10.0.1.0/24 via 10.0.3.1
	fi
	count_rules "$nsclient" "$fam" \
		"-A OUTPUT -o veth0 -p tcp --sport 8080" \
		"-A OUTPUT -o veth0 -p tcp --dport 443" || return
	run_block "$route" router && run_block "$id" router || return

	route_check "$id: replies of a connection from uplink 2" veth2 veth1 \
		"ctr $nsclient $fam filter OUTPUT 1" \
		tcp_echo "$nsserver" "$client" 8080 "bind=$from"
	route_check "$id: the client's port 443 connection" veth2 veth1 \
		"ctr $nsclient $fam filter OUTPUT 2" \
		tcp_echo "$nsclient" "$dst" 443
	expect_eq "$id: conntrack: both connections have mark 2" \
		"printf '443 2\n8080 2\n'" "ct_list $fam"
	[ -n "$show" ] && run_block "$show" router
}

# shellcheck disable=SC2317 # called by busywait
# expect_settled WANT_CMD GOT_CMD: succeed once GOT >= WANT.
expect_settled()
{
	local want got

	want=$(eval "$1")
	got=$(eval "$2")
	echo "$got"
	[ "$got" -ge "$want" ]
}

recipe_1()
{
	recipe_persist 4 r1 r1-show
}

recipe_2()
{
	recipe_simple 4 r2 r2-show
}

recipe_3()
{
	count_rules "$nsclient" 4 \
		"-A OUTPUT -o veth0 -p tcp --dport 8080" \
		"-A OUTPUT -o veth0 -p tcp --dport 80" || return
	run_block r3-route router && run_block r3 router || return
	route_check "r3: marked 3 in PREROUTING, port 8080" veth2 veth1 \
		"ctr $nsclient 4 filter OUTPUT 1" \
		tcp_echo "$nsclient" 10.0.9.99 8080
	route_check "r3: marked 2, port 80" veth1 veth2 \
		"ctr $nsclient 4 filter OUTPUT 2" \
		tcp_echo "$nsclient" 10.0.9.99 80
	expect_eq "r3: conntrack: port 80 has mark 2, port 8080 mark 3" \
		"printf '80 2\n8080 3\n'" "ct_list 4"

	# The same rules in POSTROUTING: too late for routing.
	printf '*mangle\nCOMMIT\n' | xt_restore "$nsrouter" 4
	ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
	count_rules "$nsclient" 4 "-A OUTPUT -o veth0 -p tcp --dport 8080" ||
		return
	run_block r3-wrong router || return
	route_check "r3-wrong: marked 3 in POSTROUTING, port 8080 still" \
		veth1 veth2 "ctr $nsclient 4 filter OUTPUT 1" \
		tcp_echo "$nsclient" 10.0.9.99 8080
	expect_eq "r3-wrong: all of them carried mark 3 when they left through veth1 (POSTROUTING rule 6)" \
		"ctr $nsclient 4 filter OUTPUT 1" \
		"ctr $nsrouter 4 mangle POSTROUTING 6"
	expect_eq "r3-wrong: conntrack: the connection has mark 3 all the same" \
		"echo 8080 3" "ct_list 4"
}

# ftp_get MODE: download the FTP server's file, "passive" or "active".
ftp_get()
{
	local opts=() out

	[ "$1" = active ] && opts=(-P -)
	if out=$(ip netns exec "$nsclient" curl -sS --max-time 20 "${opts[@]}" \
		-o "$tmpdir/got-$1" ftp://10.0.2.99/file 2>&1) &&
	   cmp -s "$tmpdir/got-$1" "$tmpdir/ftp/file"; then
		return 0
	fi
	fail "curl $1 FTP download, want the file, got: $out"
	return 1
}

# ct_data_marks: the marks of the router's TCP entries whose destination
# port is not 21 (FTP data connections), sorted and counted.
ct_data_marks()
{
	ct_list 4 | awk '$1 != 21 { print $2 }' | sort | uniq -c |
		awk '{ print $2 " x" $1 }'
}

# r4_counters: r4-show's two FORWARD counters, of the data connection's
# packets and of those with mark 1. The page matches the data connection
# with -m helper; a kernel without xt_helper (the debug kernel) gets the
# same counters from rules on the ports, and the page check says so.
STOOD_IN=""
r4_counters()
{
	if modinfo xt_helper >/dev/null 2>&1; then
		run_block r4-show router
		return
	fi
	echo "# this kernel has no xt_helper: r4-show's -m helper rules stand in as rules on the ports"
	ip netns exec "$nsrouter" "iptables-$BACKEND" -t mangle -A FORWARD \
		-p tcp ! --sport 21 ! --dport 21 &&
		ip netns exec "$nsrouter" "iptables-$BACKEND" -t mangle \
			-A FORWARD -p tcp ! --sport 21 ! --dport 21 \
			-m mark --mark 1 || return
	RAN+="r4-show/router "
	[[ $STOOD_IN == *" r4-show/router"* ]] || STOOD_IN+=" r4-show/router"
}

recipe_4()
{
	local mode n

	run_block r4 router && r4_counters || return
	for mode in passive active; do
		ip netns exec "$nsrouter" conntrack -F >/dev/null 2>&1
		ip netns exec "$nsrouter" "iptables-$BACKEND" -t mangle -Z
		ftp_get "$mode" || continue
		n=$(ct_data_marks)
		expect "r4 $mode: the data connection's conntrack entry inherited mark 1 ($n)" \
			"${n% x*}" = 1
		expect_eq "r4 $mode: the control connection has mark 1" \
			"echo 21 1" "ct_list 4 --dport 21"
		n=$(ctr "$nsrouter" 4 mangle FORWARD 1)
		expect_eq "r4 $mode: every packet of the data connection ($n) carried mark 1 in FORWARD" \
			"ctr $nsrouter 4 mangle FORWARD 1" \
			"ctr $nsrouter 4 mangle FORWARD 2"
		expect "r4 $mode: the data connection had packets ($n)" "$n" -ge 10
	done
}

# shaped_per_class ID DEV VERB: the client fetches port 21 once and port 80
# twice; the HTB classes 1:10 and 1:20 on the router's DEV must have VERB
# (sent, shaped) every packet the client received from port 21 and port 80,
# which the client's filter INPUT rules 1 and 2 count.
shaped_per_class()
{
	local id=$1 dev=$2 verb=$3 c10 c20

	c10=$(tc_class_packets "$nsrouter" "$dev" 1:10)
	c20=$(tc_class_packets "$nsrouter" "$dev" 1:20)
	tcp_echo "$nsclient" 10.0.9.99 21
	tcp_echo "$nsclient" 10.0.9.99 80
	tcp_echo "$nsclient" 10.0.9.99 80
	expect_eq "$id: $dev class 1:10 $verb every packet the client received from port 21" \
		"ctr $nsclient 4 filter INPUT 1" \
		"echo \$((\$(tc_class_packets $nsrouter $dev 1:10) - $c10))"
	expect_eq "$id: $dev class 1:20 $verb every packet the client received from port 80" \
		"ctr $nsclient 4 filter INPUT 2" \
		"echo \$((\$(tc_class_packets $nsrouter $dev 1:20) - $c20))"
}

recipe_5()
{
	count_rules "$nsclient" 4 \
		"-A INPUT -i veth0 -p tcp --sport 21" \
		"-A INPUT -i veth0 -p tcp --sport 80" || return
	run_block r5-tc router && run_block r2 router || return
	shaped_per_class r5 veth0 sent
	run_block r5-show router
}

recipe_6()
{
	recipe_uplinks 4 r6-route r6 r6-show
}

recipe_7()
{
	count_rules "$nsclient" 4 \
		"-A INPUT -i veth0 -p tcp --sport 21" \
		"-A INPUT -i veth0 -p tcp --sport 80" || return
	run_block r7-tc router && run_block r2 router &&
		run_block r7-show router || return
	shaped_per_class r7 ifb0 shaped
	expect_eq "r7: all of them entered PREROUTING marked already, by tc's action connmark" \
		"sum \$(ctr $nsclient 4 filter INPUT 1) \$(ctr $nsclient 4 filter INPUT 2)" \
		"ctr $nsrouter 4 mangle PREROUTING 1"
}

recipe_8()
{
	local r

	count_rules "$nsclient" 4 \
		"-A OUTPUT -o veth0 -p tcp --dport 80" \
		"-A INPUT -i veth0 -p tcp --sport 80" \
		"-A OUTPUT -o veth0 -p tcp ! --dport 80" \
		"-A INPUT -i veth0 -p tcp ! --sport 80" || return
	run_block r8 router && run_block r8-show router || return
	ftp_get passive
	tcp_echo "$nsclient" 10.0.9.99 80
	tcp_echo "$nsclient" 10.0.9.99 80
	r="ctr $nsrouter 4 mangle PREROUTING"
	expect_eq "r8: class 1 = rule 2 (ACCEPT) + rule 4 (set-mark): every FTP packet, control and data, as the client counted them" \
		"sum \$(ctr $nsclient 4 filter OUTPUT 2) \$(ctr $nsclient 4 filter INPUT 2)" \
		"sum \$($r 2) \$($r 4)"
	expect_eq "r8: class 2 = rule 3 (ACCEPT) + rule 5 (set-mark): every web packet" \
		"sum \$(ctr $nsclient 4 filter OUTPUT 1) \$(ctr $nsclient 4 filter INPUT 1)" \
		"sum \$($r 3) \$($r 5)"
	expect_eq "r8: the set-mark rules counted one packet per connection they classified; the data connection none" \
		"echo 1/2" "echo \$($r 4)/\$($r 5)"
}

# shellcheck disable=SC2317 # called by busywait
# event_lines FILE PATTERN N: succeed once FILE has N lines with PATTERN.
event_lines()
{
	local n

	n=$(grep -c -- "$2" "$1")
	echo "$n"
	[ "$n" -ge "$3" ]
}

# udp_flow SPORT N: N datagrams of one flow to 10.0.9.99 port 5000.
udp_flow()
{
	local i

	for ((i = 0; i < $2; i++)); do
		echo "datagram $i" | ip netns exec "$nsclient" socat -u - \
			"UDP4-SENDTO:10.0.9.99:5000,sourceport=$1,reuseaddr"
	done
}

# log_lines SPORT MARK: kernel log lines of recipe 9 for the flow.
log_lines()
{
	dmesg | grep -c "cookbook: .* SPT=$1 DPT=5000 .*MARK=$2"
}

recipe_9()
{
	local sport events=$tmpdir/events-$BACKEND flow got

	# The kernel log is the machine's: a port that no earlier LOG line
	# names (the other backend's run of this recipe wrote some).
	while sport=$((41000 + RANDOM % 1000)); [ "$(log_lines "$sport" '.*')" -gt 0 ]; do
		:
	done
	run_block r9-host host && run_block r9 router || return
	ct_events "$nsrouter" "$events" -p udp --orig-port-dst 5000

	flow="sport=$sport dport=5000"
	udp_flow "$sport" 5
	expect_eq "r9: LOG printed the five datagrams with MARK=0x1a" \
		"echo 5" "log_lines $sport 0x1a"
	expect_eq "r9: /proc/net/nf_conntrack prints the mark in decimal" \
		"echo mark=26" \
		"ip netns exec $nsrouter grep '$flow ' /proc/net/nf_conntrack | grep -o 'mark=[0-9]*'"
	expect_eq "r9: conntrack -L -m 26 lists the flow" \
		"echo 1" \
		"ip netns exec $nsrouter conntrack -L -p udp --sport $sport -m 26 2>/dev/null | grep -c '$flow'"
	run_block r9-show router
	busywait 2000 event_lines "$events" "$flow" 2 >/dev/null
	expect_eq "r9: conntrack -E: one event ([NEW], mark=26) for five packets" \
		"echo '[NEW] mark=26'" \
		"grep -- '$flow' $events | sed 's/^ *\(\[[A-Z]*\]\).* \(mark=[0-9]*\).*/\1 \2/'"

	run_block r9-remark router || return
	udp_flow "$sport" 5
	busywait 2000 event_lines "$events" "$flow" 3 >/dev/null
	got=$(grep -- "$flow" "$events" |
		sed 's/^ *\(\[[A-Z]*\]\).* \(mark=[0-9]*\).*/\1 \2/')
	expect_eq "r9: re-marked by a rule on each of five packets: one event ([UPDATE], mark=27)" \
		"printf '[NEW] mark=26\n[UPDATE] mark=27\n'" "echo '$got'"
	expect_eq "r9: LOG printed the five later datagrams with MARK=0x1b" \
		"echo 5" "log_lines $sport 0x1b"
	kill "$CT_EVENTS_PID" 2>/dev/null
	wait "$CT_EVENTS_PID" 2>/dev/null
}

recipe_10()
{
	local r0 r1 a0 a1 n=2 i

	count_rules "$nsserver" 4 \
		"-A INPUT -i veth1 -p udp --dport 5001" \
		"-A INPUT -p udp --dport 5001" || return
	run_block r10-route router && run_block r10 router || return
	printf '%2999s\n' datagram >"$tmpdir/datagram"
	read -r r0 r1 <<<"$(link_count "$nsserver" rx veth0 veth1)"
	for ((i = 0; i < n; i++)); do
		ip netns exec "$nsclient" socat -u -b 8192 \
			"OPEN:$tmpdir/datagram" UDP4-SENDTO:10.0.9.99:5001
	done
	expect_eq "r10: the server received $n whole datagrams through uplink 2 (veth1)" \
		"echo $n/$n" \
		"echo \$(ctr $nsserver 4 filter INPUT 1)/\$(ctr $nsserver 4 filter INPUT 2)"
	read -r a0 a1 <<<"$(link_count "$nsserver" rx veth0 veth1)"
	r0=$((a0 - r0))
	r1=$((a1 - r1))
	expect "r10: all their fragments came through uplink 2 ($r1 packets), none through uplink 1 ($r0)" \
		"$r1" -ge $((3 * n)) -a "$r0" -le 2
	expect_eq "r10: the set-mark rule saw whole datagrams (packets/bytes)" \
		"echo $n/$((n * 3028))" \
		"echo \$(ctr $nsrouter 4 mangle PREROUTING 2)/\$(ctr $nsrouter 4 mangle PREROUTING 2 bytes)"
	run_block r10-show router
}

recipe_11()
{
	recipe_persist 6 r11-1 r11-1-show
	reset_all
	recipe_simple 6 r11-2 ""
	reset_all
	recipe_uplinks 6 r11-6-route r11-6 ""
}

recipe_12()
{
	count_rules "$nsclient" 4 \
		"-A OUTPUT -o veth0 -p tcp --dport 80" \
		"-A INPUT -i veth0 -p tcp --sport 80" || return
	run_block r12 router && run_block r12-show router || return
	tcp_echo "$nsclient" 10.0.9.99 80
	tcp_echo "$nsclient" 10.0.9.99 80
	expect_eq "r12: every packet of both connections, both directions, carried 0x0207 in FORWARD" \
		"sum \$(ctr $nsclient 4 filter OUTPUT 1) \$(ctr $nsclient 4 filter INPUT 1)" \
		"ctr $nsrouter 4 mangle FORWARD 1"
	expect_eq "r12: conntrack: both connections have mark 519 (0x0207)" \
		"printf '80 519\n80 519\n'" "ct_list 4"
}

# cake_tin_packets NS DEV: the packets each tin of DEV's cake qdisc sent,
# space separated, in tc's order (diffserv4: Bulk, Best Effort, Video,
# Voice), from the per-tin "sent_packets" of "tc -s -j".
cake_tin_packets()
{
	tc -net "$1" -s -j qdisc show dev "$2" 2>/dev/null |
		awk 'BEGIN { RS = "[,{}[]" }
		     /^"sent_packets":/ { sub(/.*:/, ""); n = n s $0; s = " " }
		     END { print n }'
}

# tin_delta DEV BEFORE: what the tins of the router's DEV sent since BEFORE
# (cake_tin_packets output), slash separated.
tin_delta()
{
	local -a a b
	local i out=""

	read -ra a <<<"$(cake_tin_packets "$nsrouter" "$1")"
	read -ra b <<<"$2"
	for ((i = 0; i < ${#a[@]}; i++)); do
		out+="${out:+/}$((a[i] - ${b[i]:-0}))"
	done
	echo "$out"
}

# ct_dscp_mark DSCP: the conntrack mark --set-dscpmark 0xfc000000/0x01000000
# leaves on a connection whose mark was 0, in decimal.
ct_dscp_mark()
{
	echo $(($1 << 26 | 0x01000000))
}

recipe_13()
{
	local tins c a b d e

	# The client counts the replies per port, and those with the DSCP
	# of their connection; the server sends them all with CS2.
	count_rules "$nsclient" 4 \
		"-A INPUT -i veth0 -p tcp --sport 21" \
		"-A INPUT -i veth0 -p tcp --sport 21 -m dscp --dscp-class CS1" \
		"-A INPUT -i veth0 -p tcp --sport 80" \
		"-A INPUT -i veth0 -p tcp --sport 80 -m dscp --dscp-class AF41" \
		"-A INPUT -i veth0 -p tcp --sport 8080" \
		"-A INPUT -i veth0 -p tcp --sport 8080 -m dscp --dscp 0" \
		"-A INPUT -i veth0 -p tcp --sport 443" \
		"-A INPUT -i veth0 -p tcp --sport 443 -m dscp --dscp-class EF" ||
		return
	dirty "$nsserver" 4
	printf '*mangle\n%s\nCOMMIT\n' \
		"-A OUTPUT -o veth0 -p tcp -j DSCP --set-dscp-class CS2" |
		xt_restore "$nsserver" 4 || return
	run_block r13 router && run_block r13-tc router &&
		run_block r13-show router || return
	tins=$(cake_tin_packets "$nsrouter" ifb1)
	tcp_echo "$nsclient" 10.0.9.99 21
	tcp_echo "$nsclient" 10.0.9.99 80
	tcp_echo "$nsclient" 10.0.9.99 80
	tcp_echo "$nsclient" 10.0.9.99 8080
	tcp_echo "$nsclient" 10.0.9.99 443 tos=184
	expect_eq "r13: conntrack: each connection's mark is its DSCP << 26 | 0x01000000 (21 CS1, 80 AF41, 8080 0, 443 EF)" \
		"printf '%s\n' '21 $(ct_dscp_mark 8)' '80 $(ct_dscp_mark 34)' '80 $(ct_dscp_mark 34)' '8080 $(ct_dscp_mark 0)' '443 $(ct_dscp_mark 46)' | sort" \
		"ct_list 4"
	c="ctr $nsclient 4 filter INPUT"
	expect_eq "r13: the client received every reply with its connection's DSCP, not the server's CS2 (ports 21/80/8080/443)" \
		"echo \$($c 1)/\$($c 3)/\$($c 5)/\$($c 7)" \
		"echo \$($c 2)/\$($c 4)/\$($c 6)/\$($c 8)"
	expect_eq "r13: cake's Bulk/Best Effort/Video/Voice tins on ifb1 sent the packets the client received from ports 21/8080/80/443" \
		"echo \$($c 1)/\$($c 5)/\$($c 3)/\$($c 7)" \
		"tin_delta ifb1 '$tins'"
	expect_eq "r13: every port 80 reply entered PREROUTING with AF41, restored by tc's ctinfo" \
		"$c 3" "ctr $nsrouter 4 mangle PREROUTING 1"
	read -r a b d e <<<"$($c 1) $($c 3) $($c 5) $($c 7)"
	expect "r13: the client received replies from every port ($a/$b/$d/$e)" \
		"$a" -ge 2 -a "$b" -ge 2 -a "$d" -ge 2 -a "$e" -ge 2
	expect_eq "r13: the server sent every reply with CS2" \
		"sum \$($c 1) \$($c 3) \$($c 5) \$($c 7)" \
		"ctr $nsserver 4 mangle OUTPUT 1"
	if $recipe_failed; then
		tc -net "$nsrouter" -s qdisc show dev ifb1
		tc -net "$nsrouter" -s filter show dev veth1 ingress
	fi
}

read_blocks "$COOKBOOK" BLOCKS
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(1 2 3 4 5 6 7 8 9 10 11 12 13)

BACKEND=setup
if ! setup_router_topology || ! setup_second_uplink; then
	echo "FAIL: cannot set up the client -- router -- server namespaces"
	exit "$ksft_fail"
fi
if ! start_servers; then
	echo "FAIL: cannot start the servers"
	ip netns exec "$nsserver" ss -ltnup
	ip netns exec "$nsclient" ss -ltnup
	cat "$tmpdir/ftp.log"
	exit "$ksft_fail"
fi

backends=$(xt_backends "$nsrouter")
for BACKEND in legacy nft; do
	if [[ " $backends " != *" $BACKEND "* ]]; then
		echo "FAIL: $BACKEND: iptables-$BACKEND does not work here"
		ret=1
		continue
	fi
	for r in "${recipes[@]}"; do
		echo "# recipe $r, $BACKEND"
		start=${EPOCHREALTIME/./}
		recipe_failed=false
		reset_all
		"recipe_$r"
		if $recipe_failed; then
			dump_xt_state "$nsrouter" "iptables-$BACKEND" mangle raw
			tc -net "$nsrouter" -s class show dev veth0
		fi
		echo "# recipe $r, $BACKEND: $(((${EPOCHREALTIME/./} - start) / 1000)) ms"
	done
	reset_all
done

# Every block of the page that belongs to a recipe of this run ran.
BACKEND=page
missing=""
for tag in "${!BLOCKS[@]}"; do
	n=${tag#r}
	n=${n%%[!0-9]*}
	[[ " ${recipes[*]} " == *" $n "* ]] || continue
	[[ "$RAN" == *" ${tag/ //} "* ]] || missing+=" ${tag/ //}"
done
if [ -z "$missing" ]; then
	pass "every block of docs/cookbook.md for recipes ${recipes[*]} ran${STOOD_IN:+ (stood in for on this kernel:$STOOD_IN)}"
else
	fail "blocks of docs/cookbook.md that no recipe ran:$missing"
fi
for tag in "${!BLOCKS[@]}"; do
	n=${tag#r}
	n=${n%%[!0-9]*}
	# Recipe 14, the firewall pair, is tests/ha_failover.sh's.
	[[ "$n" =~ ^([1-9]|1[0-4])$ ]] ||
		fail "block \"sh $tag\" of docs/cookbook.md belongs to no recipe"
done

exit "$ret"
