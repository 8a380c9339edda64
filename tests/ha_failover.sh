#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Recipe 14 of docs/cookbook.md: a firewall pair keeps every connection's
# mark across a failover and a fail back, with conntrackd (FTFW) and
# keepalived (VRRP) from Debian. The firewalls' configuration comes from the
# page: every block "sh r14-ID fw1 fw2" runs on both firewalls, as one bash
# script with "set -e" after the firewall's "sh r14-me fwN" block, with
# iptables standing for iptables-$XTCM_HA_BACKEND (default nft).
#
#   lan 10.0.1.99 (br0)                      server 10.0.2.99 (br0)
#      p1 +------ lan0 [ fw1 ] wan0 ------------------+ p1
#         |   10.0.1.1  sync0  10.0.2.1               |
#         |           10.0.3.1                        |
#         |              |                            |
#         |           10.0.3.2                        |
#      p2 +------ lan0 [ fw2 ] wan0 ------------------+ p2
#             10.0.1.2  sync0  10.0.2.2
#   VRRP: 10.0.1.254 and 10.0.2.254 on the primary.
#
# Each firewall also gets a mount namespace with private /run, /var/log,
# /etc/conntrackd and /etc/keepalived (copies of the packages' own), so that
# the page's default paths (configuration, socket, lock and pid files) do
# not collide; the daemons run in the foreground, their logs go to this
# test's log on failure.
#
# The LAN host sends a TCP stream to the server's port 5001 (class 1) for
# the whole test and UDP bursts on one flow to port 5002 (class 2), which
# the server echoes. fw1 fails (its LAN and server links go down), fw2 takes
# over, then fw1 comes back and takes over again. Printed: the takeover
# times and the sync cost of N new flows.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

COOKBOOK=$REPO_DIR/docs/cookbook.md
PYTHON3=/usr/bin/python3
BACKEND=${XTCM_HA_BACKEND:-nft}
NFLOWS=${XTCM_HA_FLOWS:-200}

for tool in ip conntrack conntrackd keepalived socat ping unshare nsenter \
	"iptables-$BACKEND"; do
	checktool "command -v $tool" "run test without $tool"
done
checktool "test -x $PYTHON3" "run test without python3"
checktool "test -r $COOKBOOK" "read docs/cookbook.md"
checktool "test -d /etc/conntrackd -a -d /etc/keepalived" \
	"find /etc/conntrackd and /etc/keepalived (mount points)"
checktool "test -r /usr/share/doc/conntrackd/examples/sync/primary-backup.sh" \
	"find conntrackd's primary-backup.sh"

ret=0
lan=""
server=""
fw1=""
fw2=""
tmpdir=$(mktemp -d)
MOUNTED=false
PIDS=()
declare -A BLOCKS

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	local pid

	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null
	done
	cleanup_all_ns
	wait 2>/dev/null
	if $MOUNTED; then
		umount -l "$tmpdir/fw1/mnt" "$tmpdir/fw2/mnt" 2>/dev/null
		umount -l "$tmpdir"
	fi
	rm -rf "$tmpdir"
}
trap cleanup EXIT

pass()
{
	echo "PASS: $1"
}

# poll TIMEOUT_S CMD...: like slowwait, every 0.5 s: each process slows the
# emulated guest, and the daemons under test need the CPU.
poll()
{
	local end=$((SECONDS + $1)) out rc
	shift

	while true; do
		out=$("$@")
		rc=$?
		if [ "$rc" -eq 0 ] || [ "$SECONDS" -ge "$end" ]; then
			echo -n "$out"
			return "$rc"
		fi
		sleep 0.5
	done
}

# phase NAME: a time mark in the log.
phase()
{
	echo "# $(((${EPOCHREALTIME/./} - T_START) / 1000)) ms: $1"
}

# fw_exec FW CMD...: run CMD on firewall FW (fw1, fw2): its network and
# mount namespaces.
fw_exec()
{
	nsenter --mount="$tmpdir/$1/mnt" --net="/run/netns/${!1}" "${@:2}"
}

# run_block ID FW: run the page's block on FW; its output goes to the log.
run_block()
{
	local id=$1 fw=$2 script out
	local prelude="set -e
iptables() { iptables-$BACKEND \"\$@\"; }
"

	script=${BLOCKS["$id $fw"]:-}
	if [ -z "$script" ] || [ -z "${BLOCKS["r14-me $fw"]:-}" ]; then
		fail "docs/cookbook.md has no block \"sh $id $fw\" or \"sh r14-me $fw\""
		return 1
	fi
	out=$(fw_exec "$fw" bash -c "$prelude${BLOCKS["r14-me $fw"]}$script" 2>&1)
	report_block "$id" "$fw" "$?" "$out"
}

setup_topology()
{
	local ns n side

	setup_ns lan server fw1 fw2 || return
	for n in 1 2; do
		ns=fw$n
		ip link add lan0 netns "${!ns}" type veth \
			peer name "p$n" netns "$lan" || return
		ip link add wan0 netns "${!ns}" type veth \
			peer name "p$n" netns "$server" || return
		ip -net "${!ns}" -batch - <<-EOF || return
			addr add 10.0.1.$n/24 dev lan0
			addr add 10.0.2.$n/24 dev wan0
			link set lan0 up
			link set wan0 up
		EOF
	done
	ip link add sync0 netns "$fw1" type veth peer name sync0 netns "$fw2" ||
		return
	ip -net "$fw1" -batch - <<-EOF || return
		addr add 10.0.3.1/24 dev sync0
		link set sync0 up
	EOF
	ip -net "$fw2" -batch - <<-EOF || return
		addr add 10.0.3.2/24 dev sync0
		link set sync0 up
	EOF
	for side in lan server; do
		n=1
		[ "$side" = server ] && n=2
		ip -net "${!side}" -batch - <<-EOF || return
			link add br0 type bridge
			link set p1 master br0
			link set p2 master br0
			link set p1 up
			link set p2 up
			link set br0 up
			addr add 10.0.$n.99/24 dev br0
		EOF
	done
	ip -net "$lan" route add default via 10.0.1.254 || return
	ip -net "$server" route add 10.0.1.0/24 via 10.0.2.254
}

# setup_mounts: the firewalls' mount namespaces, bound to $tmpdir/FW/mnt.
setup_mounts()
{
	local fw

	mount --bind "$tmpdir" "$tmpdir" || return
	MOUNTED=true
	mount --make-private "$tmpdir" || return
	for fw in fw1 fw2; do
		mkdir -p "$tmpdir/$fw/conntrackd" "$tmpdir/$fw/keepalived" ||
			return
		# What the packages keep there stays (keepalived 2.3, in sid,
		# will not start without its keepalived.config-opts).
		cp -a /etc/conntrackd/. "$tmpdir/$fw/conntrackd/" &&
			cp -a /etc/keepalived/. "$tmpdir/$fw/keepalived/" || return
		touch "$tmpdir/$fw/mnt"
		# shellcheck disable=SC2016 # expanded by the inner sh
		nsenter --net="/run/netns/${!fw}" unshare \
			--mount="$tmpdir/$fw/mnt" --propagation private sh -c '
			mount -t sysfs sysfs /sys &&
			mount -t tmpfs tmpfs /run && mkdir /run/lock &&
			mount -t tmpfs tmpfs /var/log &&
			mount --bind "$1/conntrackd" /etc/conntrackd &&
			mount --bind "$1/keepalived" /etc/keepalived' \
			sh "$tmpdir/$fw" || return
	done
}

# start_daemons FW: conntrackd, then keepalived, in the foreground.
start_daemons()
{
	fw_exec "$1" conntrackd -C /etc/conntrackd/conntrackd.conf \
		>"$tmpdir/$1/conntrackd.out" 2>&1 &
	PIDS+=($!)
	if ! poll 20 fw_exec "$1" conntrackd -s >/dev/null 2>&1; then
		fail "$1: conntrackd does not answer"
		return 1
	fi
	fw_exec "$1" keepalived -n -l -D -f /etc/keepalived/keepalived.conf \
		>"$tmpdir/$1/keepalived.out" 2>&1 &
	PIDS+=($!)
}

# shellcheck disable=SC2317 # called by poll
# is_primary FW: FW holds both virtual addresses.
is_primary()
{
	local out

	out=$(ip -net "${!1}" -4 -o addr show)
	[[ "$out" == *"lan0"*" 10.0.1.254/"* && "$out" == *"wan0"*" 10.0.2.254/"* ]]
}

# shellcheck disable=SC2317 # called by poll
# has_no_vip FW
has_no_vip()
{
	! ip -net "${!1}" -4 -o addr show | grep -q '\.254/'
}

# flows FW conntrack|-i|-e: "DPORT MARK" of the test's flows (ports 5001,
# 5002) in FW's kernel table, internal or external cache, 5001 first.
flows()
{
	local out

	if [ "$2" = conntrack ]; then
		out=$(ip netns exec "${!1}" conntrack -L 2>/dev/null)
	else
		out=$(fw_exec "$1" conntrackd "$2" 2>/dev/null)
	fi
	# One awk: the two flows' lines, 5001 first.
	awk "$CT_DPORT_MARK_AWK" <<<"$out" | awk '$1 == 5001 || $1 == 5002 {
			line[$1] = line[$1] (line[$1] == "" ? "" : "\n") $0
		}
		END {
			if (line[5001] != "")
				print line[5001]
			if (line[5002] != "")
				print line[5002]
		}'
}

# shellcheck disable=SC2317 # called by poll
# flows_are FW WHERE WANT: succeed once flows FW WHERE prints WANT.
flows_are()
{
	local got

	got=$(flows "$1" "$2")
	echo "$got"
	[ "$got" = "$3" ]
}

# ctr FW CHAIN RULENUM: packets of one mangle rule of FW.
ctr()
{
	rule_packets "${!1}" "iptables-$BACKEND" mangle "$2" "$3"
}

# shellcheck disable=SC2317 # called by poll
# ctr_at_least FW CHAIN RULENUM N
ctr_at_least()
{
	local n

	n=$(ctr "$1" "$2" "$3")
	echo "$n"
	[ "${n:-0}" -ge "$4" ]
}

# udp_burst N: N datagrams on the UDP flow (source port 40002), each waiting
# for its echo, 0.6 s apart: a flow active for more than 2 s is a stream to
# conntrack (timeout 120 s instead of 30); prints the echoes received.
udp_burst()
{
	ip netns exec "$lan" "$PYTHON3" -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.1.99", 40002))
s.settimeout(3)
got = 0
for i in range(int(sys.argv[1])):
    s.sendto(b"datagram %d" % i, ("10.0.2.99", 5002))
    try:
        if s.recv(100) == b"datagram %d" % i:
            got += 1
    except socket.timeout:
        pass
    time.sleep(0.6)
print(got)' "$1"
}

# shellcheck disable=SC2317 # called by poll
# fwd_counts FW: "TCP_MARKED UDP_MARKED TCP_ALL UDP_ALL", FW's FORWARD rules
# 1-4 from one listing; succeeds when both flows' packets were all marked.
fwd_counts()
{
	local -A c=()

	fill_assoc c "$(chain_counters "${!1}" "iptables-$BACKEND" mangle)"
	echo "${c[FORWARD 1]:-x} ${c[FORWARD 2]:-x} ${c[FORWARD 3]:-y} ${c[FORWARD 4]:-y}"
	[ "${c[FORWARD 1]:-x}/${c[FORWARD 2]:-x}" = "${c[FORWARD 3]:-y}/${c[FORWARD 4]:-y}" ]
}

# check_primary FW BITS PHASE: after a takeover by FW, whose local bits are
# BITS (0x100, 0x200) and whose counters were zero before.
check_primary()
{
	local fw=$1 bits=$2 phase=$3 got echoed tm um ta ua n

	# Its kernel table has the marks that fw1's classification gave.
	if got=$(poll 120 flows_are "$fw" conntrack "$want"); then
		pass "$phase: $fw's kernel table has the committed marks (${got//$'\n'/, })"
	else
		fail "$phase: $fw's kernel table, want ${want//$'\n'/, }, got ${got//$'\n'/, }"
	fi
	# The stream goes through FW now; so does a UDP burst.
	poll 60 ctr_at_least "$fw" FORWARD 3 20 >/dev/null
	echoed=$(udp_burst 5)
	expect "$phase: the UDP flow's 5 datagrams came back through $fw ($echoed)" \
		"$echoed" -eq 5
	# Every packet of both flows that FW forwarded carried the restored
	# class and FW's own local bits: the page's FORWARD rules 1 and 2
	# counted as many as the test's rules 3 and 4 (polled: the stream
	# goes on while the counters are read).
	read -r tm um ta ua <<<"$(poll 3 fwd_counts "$fw")"
	expect "$phase: $fw forwarded $ta packets of the TCP stream, all with mark $(printf 0x%x $((bits | 1))) ($tm)" \
		"$ta" -gt 20 -a "$tm" = "$ta"
	expect "$phase: $fw forwarded $ua packets of the UDP flow (both ways), all with mark $(printf 0x%x $((bits | 2))) ($um)" \
		"$ua" = 10 -a "$um" = "$ua"
	n="$(ctr "$fw" PREROUTING 5)/$(ctr "$fw" PREROUTING 6)"
	expect "$phase: $fw's classification rules (5, 6) counted nothing ($n)" \
		"$n" = 0/0
}

# echo_gap T0 FILE: "MS_TO_RESUME LONGEST_GAP_MS" from ping -D's FILE: the
# time from T0 (EPOCHREALTIME) to the first echo reply after the longest gap
# between two replies after T0, and that gap.
echo_gap()
{
	awk -v t0="$1" '/bytes from/ {
		ts = substr($1, 2, length($1) - 2)
		if (prev != "" && ts > t0 && ts - prev > gap) {
			gap = ts - prev
			at = ts
		}
		prev = ts
	}
	END {
		if (at == "")
			print "? 0"
		else
			printf "%d %d\n", (at - t0) * 1000, gap * 1000
	}' "$2"
}

# take_over NEW OLD UP|DOWN WHAT MARK: while the LAN host pings the
# server, fw1's links go UP or DOWN; NEW must take the virtual addresses, OLD
# must give them up, and NEW must carry the connections with their marks
# (check_primary NEW MARK). Logs the time from the link change to NEW's
# addresses and to the first echo through NEW, and the longest echo gap.
take_over()
{
	local new=$1 old=$2 updown=$3 what=$4 mark=$5
	local ping=$tmpdir/ping.$1 pinger t0 took echo_ms gap

	ip netns exec "$lan" ping -D -n -i 0.2 10.0.2.99 >"$ping" 2>&1 &
	pinger=$!
	sleep 1
	phase "$what: fw1's links go $updown"
	t0=$EPOCHREALTIME
	ip -net "$fw1" -batch - <<-EOF
		link set lan0 $updown
		link set wan0 $updown
	EOF
	if poll 120 is_primary "$new"; then
		took=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
		pass "$what: $new took the virtual addresses"
	else
		fail "$what: $new did not take the virtual addresses"
	fi
	poll 30 has_no_vip "$old" || fail "$what: $old kept a virtual address"
	phase "$what: $new is the primary"
	check_primary "$new" "$mark" "$what"
	kill "$pinger"
	read -r echo_ms gap <<<"$(echo_gap "$t0" "$ping")"
	echo "# $what: fw1's links $updown; $new primary after ${took:-?} ms, first echo through $new after $echo_ms ms (echoes interrupted $gap ms)"
	run_block r14-show "$new"
}

# sync_stats FW: "PACKETS BYTES" FW's conntrackd sent on the sync link.
sync_stats()
{
	fw_exec "$1" conntrackd -s 2>/dev/null | awk '
		/Bytes sent/ { bytes = $1 }
		/Pckts sent/ { pkts = $1 }
		END { print pkts + 0, bytes + 0 }'
}

# dump: the state of both firewalls, for a failure.
dump()
{
	local fw

	for fw in fw1 fw2; do
		dump_xt_state "${!fw}" "iptables-$BACKEND" mangle
		echo "# conntrackd -i / -e / -s ($fw)"
		fw_exec "$fw" conntrackd -i
		fw_exec "$fw" conntrackd -e
		fw_exec "$fw" conntrackd -s
		echo "# conntrackd log ($fw)"
		fw_exec "$fw" cat /var/log/conntrackd.log
		cat "$tmpdir/$fw/conntrackd.out"
		echo "# keepalived ($fw)"
		cat "$tmpdir/$fw/keepalived.out"
	done
}

T_START=${EPOCHREALTIME/./}
read_blocks "$COOKBOOK" BLOCKS
if ! setup_topology || ! setup_mounts; then
	echo "FAIL: cannot set up the namespaces"
	exit "$ksft_fail"
fi

# Both firewalls: the page's configuration, the test's counters (FORWARD
# rules 3 and 4: every packet of the two flows).
for fw in fw1 fw2; do
	for id in r14-rules r14-conntrackd r14-keepalived r14-count; do
		run_block "$id" "$fw" || exit "$ksft_fail"
	done
	ip netns exec "${!fw}" "iptables-$BACKEND" -t mangle -A FORWARD \
		-p tcp -m multiport --ports 5001 || exit "$ksft_fail"
	ip netns exec "${!fw}" "iptables-$BACKEND" -t mangle -A FORWARD \
		-p udp -m multiport --ports 5002 || exit "$ksft_fail"
done
# The sync cost's flows end at the server, silently.
ip netns exec "$server" "iptables-$BACKEND" -A INPUT -p udp \
	--dport 6000:6999 -j DROP || exit "$ksft_fail"

# fw1 first: it becomes the primary.
start_daemons fw1 || exit "$ksft_fail"
if ! poll 120 is_primary fw1; then
	fail "fw1 did not become the primary"
	dump
	exit "$ret"
fi
start_daemons fw2 || exit "$ksft_fail"
phase "fw1 is the primary"
pass "fw1 is the primary (both virtual addresses)"

# The server: the TCP stream into a file, the UDP echo.
ip netns exec "$server" socat -u TCP4-LISTEN:5001,bind=10.0.2.99,reuseaddr \
	"CREATE:$tmpdir/rx" &
PIDS+=($!)
ip netns exec "$server" "$PYTHON3" -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.2.99", 5002))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)' &
PIDS+=($!)

# shellcheck disable=SC2317 # called by poll
server_ready()
{
	local out

	out=$(ip netns exec "$server" ss -lntuH)
	[[ "$out" == *":5001 "* && "$out" == *":5002 "* ]]
}
poll 120 server_ready || fail "the server's listeners did not start"

# The LAN host: 1000-byte chunks every 50 ms until $tmpdir/stop exists, a
# copy of everything sent in $tmpdir/tx.
ip netns exec "$lan" "$PYTHON3" -c '
import os, socket, sys, time
s = socket.create_connection(("10.0.2.99", 5001))
n = 0
with open(sys.argv[2], "wb") as f:
    while not os.path.exists(sys.argv[1]):
        chunk = b"%09d" % n + b"." * 990 + b"\n"
        s.sendall(chunk)
        f.write(chunk)
        n += 1
        time.sleep(0.05)
s.shutdown(socket.SHUT_WR)
s.recv(1)' "$tmpdir/stop" "$tmpdir/tx" &
sender=$!
PIDS+=("$sender")

# Phase 1: fw1 classifies, fw2 learns.
phase "traffic started"
want=$'5001 1\n5002 2'
poll 120 ctr_at_least fw1 FORWARD 1 20 >/dev/null
echoed=$(udp_burst 5)
expect "fw1: the UDP flow's 5 datagrams came back ($echoed)" "$echoed" -eq 5
if got=$(poll 30 flows_are fw1 conntrack "$want"); then
	pass "fw1: conntrack -L: the TCP stream has mark 1, the UDP flow mark 2"
else
	fail "fw1: conntrack -L, want ${want//$'\n'/, }, got ${got//$'\n'/, }"
fi
n="$(ctr fw1 PREROUTING 5)/$(ctr fw1 PREROUTING 6)"
expect "fw1: the classification rules (5, 6) ran once per connection ($n)" \
	"$n" = 1/1
if got=$(poll 60 flows_are fw1 -i "$want"); then
	pass "fw1: conntrackd -i (internal cache) has both, with their marks"
else
	fail "fw1: conntrackd -i, want ${want//$'\n'/, }, got ${got//$'\n'/, }"
fi
if got=$(poll 60 flows_are fw2 -e "$want"); then
	pass "fw2: conntrackd -e (external cache) has both, with their marks"
else
	fail "fw2: conntrackd -e, want ${want//$'\n'/, }, got ${got//$'\n'/, }"
fi
got=$(flows fw2 conntrack)
expect "fw2: its kernel table does not have them yet (${got//$'\n'/, })" \
	-z "$got"

# Phase 2: fw1 fails, fw2 takes over.
take_over fw2 fw1 down failover 0x200

# fw1 purges its stale entries (PurgeTimeout) and learns fw2's state.
if got=$(poll 60 flows_are fw1 conntrack ""); then
	pass "fw1: its kernel table was purged after the fault"
else
	fail "fw1: its kernel table still has ${got//$'\n'/, }"
fi
if got=$(poll 60 flows_are fw1 -e "$want"); then
	pass "fw1: conntrackd -e has fw2's entries, with their marks"
else
	fail "fw1: conntrackd -e, want ${want//$'\n'/, }, got ${got//$'\n'/, }"
fi

# Phase 3: fw1 comes back and, after preempt_delay, takes over again.
ip netns exec "$fw1" "iptables-$BACKEND" -t mangle -Z
take_over fw1 fw2 up "fail back" 0x100

# The stream arrived complete.
touch "$tmpdir/stop"
wait "$sender"
tx=$(stat -c %s "$tmpdir/tx")
rx=$(stat -c %s "$tmpdir/rx" 2>/dev/null)
if [ "${rx:-0}" -gt 0 ] && cmp -s "$tmpdir/tx" "$tmpdir/rx"; then
	pass "the TCP stream arrived complete through both takeovers ($rx of $tx bytes, in order)"
else
	fail "the TCP stream: sent $tx bytes, the server got ${rx:-none}, or other bytes"
fi

phase "sync cost"
# Sync cost: NFLOWS new UDP flows through fw1 until fw2's external cache
# holds them all.
# shellcheck disable=SC2317 # called by poll
ext_count()
{
	local n

	n=$(fw_exec fw2 conntrackd -e 2>/dev/null | grep -c 'dport=6[0-9]* ')
	echo "$n"
	[ "$n" -ge "$NFLOWS" ]
}
read -r p0 b0 <<<"$(sync_stats fw1)"
start=${EPOCHREALTIME/./}
ports=()
for ((i = 6000; i < 6000 + NFLOWS; i++)); do
	ports+=("$i")
done
udp_send "$lan" 10.0.2.99 "${ports[@]}"
n=$(poll 120 ext_count)
synctime=$(((${EPOCHREALTIME/./} - start) / 1000))
read -r p1 b1 <<<"$(sync_stats fw1)"
expect "sync: fw2's external cache holds the $NFLOWS new flows ($n)" \
	"${n:-0}" -ge "$NFLOWS"

p1=$((p1 - p0))
b1=$((b1 - b0))
echo "# sync cost: $NFLOWS new UDP flows: fw1's conntrackd sent $p1 packets, $b1 bytes ($((b1 / NFLOWS)) bytes per flow); all in fw2's external cache after $synctime ms"

phase "done"
[ "$ret" -eq 0 ] || dump
exit "$ret"
