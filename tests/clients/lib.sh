#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for tests/clients/: a tool that writes CONNMARK rules (or its
# rules replayed verbatim) runs on the router of setup_router_topology, once
# with our module and once with the kernel's own xt_connmark, and what the
# kernel did is compared (client_compare): the ct marks of the entries
# (conntrack -L), the packet mark and ct mark of each flow's packets after
# mangle at every hook and the interface each left by (observe.py's nft
# table), every rule's packet counter (iptables-save -c). The traffic is
# deterministic (observe.py send, ping -c 2), so any difference is the
# module's.
#
# Before the traffic, client_quiesce stops what is not the traffic (IPv6
# neighbour discovery, MLD, router solicitations) and zeroes the counters.
#
# A test defines client_start (the tool writes its rules in $nsrouter),
# client_traffic (client_send from the namespaces it chooses) and
# client_stop (the tool's own stop or down), and calls client_case for
# each backend it can choose. client_run checks that the
# tool's stop leaves no rule (iptables-save of both families and backends
# has no CONNMARK or connmark left) and no reference on the module
# (rmmod xt_connmark succeeds while the namespaces still exist).

# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source-path=SCRIPTDIR/.. source=install_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../install_lib.sh"

OBSERVE=$TESTS_DIR/clients/observe.py
CLIENT_PORT=80
CLIENT_WORK=$(mktemp -d)
CLIENT_SERVER_PID=""
ret=0

# client_cleanup: the EXIT trap of a client test: no namespace, our module
# loaded again.
# shellcheck disable=SC2317 # called by the EXIT trap
client_cleanup()
{
	local rc=$?

	client_serve_stop
	restore_module || ret=1
	rm -rf "$CLIENT_WORK"
	# A skip (or a failure) that exits before the end keeps its status.
	[ "$rc" -ne 0 ] && [ "$ret" -eq 0 ] && ret=$rc
	exit "$ret"
}

# client_backends BACKEND...: those of the iptables backends a tool lets
# one choose that this run tests: all, or those XTCM_CLIENT_BACKENDS names
# (tests/Makefile's BOOKWORM_ENV and SID_ENV: in make check 6.1 runs
# legacy alone, sid nft alone).
client_backends()
{
	local b

	for b in "$@"; do
		[[ " ${XTCM_CLIENT_BACKENDS:-$*} " == *" $b "* ]] && echo "$b"
	done
}

# client_env_ok: the runner's variables, the tools, our module loaded; the
# kernel's own module found. Skips the test otherwise.
client_env_ok()
{
	install_env_ok || exit "$ksft_skip"
	require_xt_tools "python3 --version" "nft --version" "ping -V"
	if [[ $(modinfo -n xt_connmark 2>/dev/null) != */kernel/net/netfilter/xt_connmark.ko* ]]; then
		echo "SKIP: Could not find the kernel's own xt_connmark"
		exit "$ksft_skip"
	fi
	loaded_is ours || exit "$ksft_fail"
}

# install_client_debs: the tools' Debian packages (XTCM_CLIENT_DEBS, the
# lane's release's, tests/run.sh downloads them) installed in the guest
# once, their services kept from starting (a policy-rc.d, as in a chroot).
install_client_debs()
{
	local policy_rc=/usr/sbin/policy-rc.d rc

	[ -e /run/xtcm-client-debs ] && return 0
	if [ -z "${XTCM_CLIENT_DEBS:-}" ]; then
		echo "SKIP: XTCM_CLIENT_DEBS (the tools' packages) is not set: tests/run.sh sets it"
		exit "$ksft_skip"
	fi
	printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod 0755 "$policy_rc"
	skip_man_db
	# shellcheck disable=SC2086 # a list of files
	DEBIAN_FRONTEND=noninteractive dpkg -i $XTCM_CLIENT_DEBS \
		>"$CLIENT_WORK/dpkg.log" 2>&1
	rc=$?
	rm -f "$policy_rc"
	restore_man_db
	if [ "$rc" -ne 0 ]; then
		cat "$CLIENT_WORK/dpkg.log"
		echo "FAIL: dpkg -i of the tools' packages"
		exit "$ksft_fail"
	fi
	touch /run/xtcm-client-debs
}

# QUIET_ROUTE: the route attributes of the client's and the server's routes
# that keep the traffic's packets the same every run: no delayed ACK, and
# no retransmission unless the guest stalls for seconds.
QUIET_ROUTE="quickack 1 rto_min 3s"

# client_topology: setup_router_topology, the observer's table in the
# router, the server's TCP and UDP servers on CLIENT_PORT.
client_topology()
{
	setup_router_topology || return
	# Timers' entries would come and go: a closed TCP connection stays.
	ip netns exec "$nsrouter" sysctl -q -w \
		net.netfilter.nf_conntrack_tcp_timeout_time_wait=3600 \
		net.netfilter.nf_conntrack_tcp_timeout_close=3600 || return
	python3 "$OBSERVE" ruleset | ip netns exec "$nsrouter" nft -f - || return
	client_serve "$nsserver"
}

# client_serve NS: observe.py's servers in NS, in the background, once
# they listen; what they report (a retransmission) into CLIENT_SERVE_LOG.
CLIENT_SERVE_LOG=$CLIENT_WORK/serve.log
client_serve()
{
	local fifo=$CLIENT_WORK/serve.fifo line

	rm -f "$fifo" && mkfifo "$fifo" || return
	ip netns exec "$1" python3 "$OBSERVE" serve "$CLIENT_PORT" >"$fifo" \
		2>"$CLIENT_SERVE_LOG" &
	CLIENT_SERVER_PID=$!
	read -r -t 20 line <"$fifo"
	[ "$line" = ready ]
}

# client_serve_stop: no more client_serve.
client_serve_stop()
{
	[ -n "$CLIENT_SERVER_PID" ] || return 0
	kill "$CLIENT_SERVER_PID" 2>/dev/null
	wait "$CLIENT_SERVER_PID" 2>/dev/null
	CLIENT_SERVER_PID=""
}

# client_send NS [--mark MARK] ADDR...: from NS, one TCP and one UDP
# exchange with each ADDR (observe.py send) and two pings, their sockets
# marked MARK (SO_MARK) if given.
client_send()
{
	local ns=$1 mark=0 addr rc=0
	shift

	if [ "$1" = --mark ]; then
		mark=$2
		shift 2
	fi
	ip netns exec "$ns" python3 "$OBSERVE" send "$CLIENT_PORT" "$mark" "$@" || rc=1
	for addr in "$@"; do
		ip netns exec "$ns" ping -q -c 2 -i 0.2 -W 2 -m $((mark)) "$addr" \
			>/dev/null || rc=1
	done
	return "$rc"
}

# quiet_routes NS: QUIET_ROUTE on every unicast route of every table of NS
# (the tools' too), both families.
quiet_routes()
{
	local fam

	for fam in -4 -6; do
		ip "$fam" -net "$1" route show table all |
			awk -v quiet="$QUIET_ROUTE" '
			$1 ~ /^(local|broadcast|multicast|anycast|unreachable|blackhole|prohibit|throw)$/ { next }
			{ gsub(/ (quickack |rto_min (lock )?)[^ ]+/, ""); sub(/ linkdown/, "")
			  print "route change", $0, quiet }' |
			ip "$fam" -net "$1" -batch - || return
	done
}

# client_quiesce: before the traffic, what is not the traffic stops and
# what was is forgotten: QUIET_ROUTE on every route, every namespace's
# neighbours permanent, and the observer's table new, dropping IPv6's
# neighbour discovery, MLD and router solicitations before the rules; no
# conntrack entry (the set-up's pings would time out, or not), every
# rule's counters zeroed.
client_quiesce()
{
	local ns b ipt table

	for ns in "${NS_LIST[@]}"; do
		quiet_routes "$ns" || return
		ip -net "$ns" neigh show | awk '$2 == "dev" && $4 == "lladdr" {
			print "neigh replace", $1, "dev", $3, "lladdr", $5, "nud permanent" }' |
			ip -net "$ns" -batch - || return
	done
	# The observer's table first: a neighbour solicitation between the
	# zeroing and that table would count in the rules and not in it.
	python3 "$OBSERVE" ruleset traffic | ip netns exec "$nsrouter" nft -f - ||
		return
	for b in legacy nft; do
		for ipt in "iptables-$b" "ip6tables-$b"; do
			# A table no rule uses has no counter (and iptables-nft
			# has no such table to zero).
			for table in raw mangle nat filter; do
				ip netns exec "$nsrouter" "$ipt" -w -t "$table" -Z \
					2>/dev/null
			done
		done
	done
	ip netns exec "$nsrouter" conntrack -F 2>/dev/null
}

# client_observe DIR: what the kernel did, into DIR/ct, DIR/marks and
# DIR/counters (each observe.py's normalised lines).
client_observe()
{
	local dir=$1 b ipt

	mkdir -p "$dir"
	{
		ip netns exec "$nsrouter" conntrack -L -f ipv4 2>/dev/null
		ip netns exec "$nsrouter" conntrack -L -f ipv6 2>/dev/null
	} | python3 "$OBSERVE" ct >"$dir/ct"
	ip netns exec "$nsrouter" nft -j list table inet xtcm_obs |
		python3 "$OBSERVE" marks >"$dir/marks"
	for b in legacy nft; do
		for ipt in "iptables-$b" "ip6tables-$b"; do
			ip netns exec "$nsrouter" "$ipt-save" -c 2>/dev/null |
				python3 "$OBSERVE" counters | sed "s/^/$ipt /"
		done
	done >"$dir/counters"
}

# connmark_rules: the CONNMARK rules and connmark matches of every
# backend and family in the router, one "IPTABLES RULE" per line.
connmark_rules()
{
	local b ipt

	for b in legacy nft; do
		for ipt in "iptables-$b" "ip6tables-$b"; do
			ip netns exec "$nsrouter" "$ipt-save" 2>/dev/null |
				grep -iE -- '-j CONNMARK|-m connmark' | sed "s/^/$ipt: /"
		done
	done
}

# client_run MODULE NAME: one run of the tool with MODULE (ours, in-tree)
# in fresh namespaces: start, traffic, what the kernel did into
# $CLIENT_WORK/NAME/MODULE, the tool's stop; then nothing of it may be
# left. The rules it wrote (its own listing) into .../rules. Fails on the
# first step that does; returns 2 when a stalled guest disturbed the
# traffic (a TCP retransmission, or a TCP exchange of other packets than
# observe.py's), and the run can be repeated.
client_run()
{
	local module=$1 dir=$CLIENT_WORK/$2/$1 left disturbed=false

	rm -rf "$dir" && mkdir -p "$dir" || return
	# What a failed run left.
	client_serve_stop
	cleanup_all_ns
	use_module "$module" || return
	client_topology || { echo "FAIL: $2, $module: the topology"; return 1; }
	if ! client_start >"$dir/start.log" 2>&1; then
		cat "$dir/start.log"
		echo "FAIL: $2, $module: the tool's start"
		return 1
	fi
	connmark_rules >"$dir/rules"
	client_quiesce || { echo "FAIL: $2, $module: quiesce"; return 1; }
	if ! client_traffic >"$dir/traffic.log" 2>&1; then
		cat "$dir/traffic.log"
		grep -q retransmitted "$dir/traffic.log" && disturbed=true
		$disturbed || echo "FAIL: $2, $module: the traffic"
		client_observe "$dir"
		$disturbed || cat "$dir/ct" "$dir/marks" "$dir/counters"
	else
		client_observe "$dir"
		if ! python3 "$OBSERVE" disturbed <"$dir/marks"; then
			disturbed=true
		fi
	fi
	if ! client_stop >"$dir/stop.log" 2>&1; then
		cat "$dir/stop.log"
		echo "FAIL: $2, $module: the tool's stop"
		return 1
	fi
	left=$(connmark_rules)
	if [ -n "$left" ]; then
		echo "$left"
		echo "FAIL: $2, $module: the tool's stop left CONNMARK rules"
		return 1
	fi
	client_serve_stop
	if grep retransmitted "$CLIENT_SERVE_LOG"; then
		disturbed=true
	fi
	if ! slowwait 30 rmmod xt_connmark; then
		echo "FAIL: $2, $module: rmmod xt_connmark after the tool's stop (refcnt $(cat /sys/module/xt_connmark/refcnt 2>/dev/null))"
		return 1
	fi
	echo "PASS: $2, $module: the tool's stop left no rule and no reference on xt_connmark"
	cleanup_all_ns
	if $disturbed; then
		echo "# $2, $module: the traffic was disturbed (a stalled guest): again"
		return 2
	fi
}

# left_by_only NAME DST PROTO DEV [MARK]: in NAME's run with our module,
# PROTO's packets to DST (those with the packet mark MARK, if given) left
# the router by DEV, and by no other interface.
left_by_only()
{
	awk -v dst="$2" -v proto="$3" -v dev="$4" -v mark="${5:-}" '
	# route: out DEV to DST PROTO mark MARK: N packets
	$1 == "route:" && $5 == dst && $6 == proto &&
	    (mark == "" || $8 == mark ":") {
		if ($3 == dev)
			here++
		else
			elsewhere++
	}
	END { exit !(here && !elsewhere) }' "$CLIENT_WORK/$1/ours/marks"
}

# client_compare NAME: every observation of NAME's two runs agrees; each
# difference is named. The first run's rules and observations are printed
# (the note's "what the tool wrote").
client_compare()
{
	local name=$1 what dir=$CLIENT_WORK/$1

	echo "# $name: the CONNMARK rules the tool wrote"
	sed 's/^/#   /' "$dir/ours/rules"
	for what in rules ct marks counters; do
		if diff -u "$dir/ours/$what" "$dir/in-tree/$what" \
			>"$dir/$what.diff"; then
			pass "$name: $what: ours and the kernel's module agree ($(wc -l <"$dir/ours/$what") lines)"
		else
			sed 's/^/#   /' "$dir/$what.diff"
			fail "$name: $what differ between ours (-) and the kernel's module (+)"
		fi
	done
	echo "# $name: ct marks"
	sed 's/^/#   /' "$dir/ours/ct"
	echo "# $name: marks per hook"
	sed 's/^/#   /' "$dir/ours/marks"
}

# client_case NAME: the tool twice, ours then the kernel's module, and the
# comparison. A run whose traffic was disturbed is repeated, up to 3 times.
client_case()
{
	local module try rc

	for module in ours in-tree; do
		for try in 1 2 3; do
			client_run "$module" "$1"
			rc=$?
			[ "$rc" -eq 2 ] || break
		done
		if [ "$rc" -ne 0 ]; then
			fail "$1: the run with $module did not complete (try $try)"
			return 1
		fi
	done
	client_compare "$1"
}
