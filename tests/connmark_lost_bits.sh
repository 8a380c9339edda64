#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Lost ct mark bits: two directions of one UDP connection cross the router
# on two CPUs at once, and each direction's rules write their own half of
# the ct mark (a multi-WAN tool's bits and a QoS tool's, say). A rule that
# reads the mark, computes, and writes it back can undo a write of the
# other CPU in between; a compare-and-exchange cannot.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver
#   10.0.1.99:5000 <----- one conntrack entry -----> 10.0.2.99:6000
#
# Each direction's packets get a sequence value 1..SEQ in the packet mark
# (one -m statistic --mode nth rule per value: each packet matches exactly
# one), which --save-mark copies into the direction's half of the ct mark:
# the original direction into bits 0-15, the reply direction into bits
# 16-31 (--left-shift-mark 16). Before that, a rule checks that the half
# still holds the value the direction's previous packet wrote: a packet of
# one direction follows the previous one on the same CPU, so only a write
# of the other direction can have changed it, and it must not. Each such
# rule that counts a packet counts one lost write, and so does a half found
# empty after the direction's first packet.
#
# The senders (socat, 64-byte datagrams) are pinned to different CPUs for
# XTCM_LOST_BITS_SECONDS (default 20), with our module and then with the
# kernel's own. Ours must lose nothing; the kernel's losses are reported
# (MEASURE), with the packets each direction sent through the rules. Under
# run-vm.sh's TCG both vCPUs run in one host thread, which switches between
# them only now and then, so a switch inside the few instructions between
# the kernel module's read and its write is rare: on 6.1, the kernel's
# module lost 1 write in 4 runs of 20 s (40 000 to 300 000 packets each),
# ours none.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"

install_env_ok || exit "$ksft_skip"
require_tools "socat -V" "taskset -V" "iptables-legacy --version"
require_two_cpus

seconds=${XTCM_LOST_BITS_SECONDS:-20}
SEQ=8
ret=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	restore_module || exit "$ksft_fail"
}
trap cleanup EXIT

# rules: the router's mangle FORWARD, each direction in a chain of its own.
rules()
{
	local dir k prev shift mask

	printf '%s\n' '*mangle' ':FORWARD ACCEPT [0:0]' ':orig - [0:0]' ':reply - [0:0]' \
		':orig_lost - [0:0]' ':reply_lost - [0:0]' \
		':orig_empty - [0:0]' ':reply_empty - [0:0]' \
		'-A FORWARD -i veth0 -p udp -j orig' '-A FORWARD -i veth1 -p udp -j reply'
	for dir in orig reply; do
		shift=0 mask=0xffff
		[ "$dir" = reply ] && shift=16 mask=0xffff0000
		# "--packet k" matches packets k, k + SEQ, ... of the
		# direction (counted from 0): packet n gets n mod SEQ + 1.
		for ((k = 0; k < SEQ; k++)); do
			echo "-A $dir -m statistic --mode nth --every $SEQ --packet $k -j MARK --set-xmark $((k + 1))/0xffffffff"
		done
		# Empty: only the direction's first packet may find its half
		# so; a write that cleared the other half counts here.
		echo "-A $dir -m connmark --mark 0/$mask -j ${dir}_empty"
		for ((k = 1; k <= SEQ; k++)); do
			prev=$(((k + SEQ - 2) % SEQ + 1))
			printf -- '-A %s -m mark --mark 0x%x -m connmark ! --mark 0/%s -m connmark ! --mark 0x%x/%s -j %s_lost\n' \
				"$dir" "$k" "$mask" $((prev << shift)) "$mask" "$dir"
		done
		echo "-A $dir -j CONNMARK --save-mark --nfmask 0xffff --ctmask $mask --left-shift-mark $shift"
		echo "-A ${dir}_lost -j RETURN"
		echo "-A ${dir}_empty -j RETURN"
	done
	echo COMMIT
}

# chain_count CHAIN RULE: the packet counter of rule RULE of CHAIN.
chain_count()
{
	ip netns exec "$nsrouter" iptables-legacy -t mangle -L "$1" "$2" -v -n -x |
		awk '{ print $1; exit }'
}

# send_for SECONDS [client|both]: 64-byte datagrams from /dev/zero for
# SECONDS, the client's pinned to CPU 0, the server's to CPU 1. Unconnected
# sockets (sendto): the port unreachable errors before the other side's
# socket is bound do not end a sender.
send_for()
{
	local pids=()

	ip netns exec "$nsclient" taskset -c 0 timeout "$1" socat -u -b 64 \
		OPEN:/dev/zero UDP-SENDTO:10.0.2.99:6000,sourceport=5000 2>/dev/null &
	pids+=($!)
	if [ "${2:-both}" = both ]; then
		ip netns exec "$nsserver" taskset -c 1 timeout "$1" socat -u -b 64 \
			OPEN:/dev/zero UDP-SENDTO:10.0.1.99:5000,sourceport=6000 2>/dev/null &
		pids+=($!)
	fi
	wait "${pids[@]}"
}

# run_with WHOSE: the flow for $seconds; prints "sent_orig sent_reply
# lost_orig lost_reply" (rule counters; a half found empty after the
# direction's first packet is a lost write too).
run_with()
{
	setup_router_topology >/dev/null || return
	rules | ip netns exec "$nsrouter" iptables-legacy-restore || return
	# The client first, so that its direction is the original one. No
	# -Z: replacing the table would restart the nth counters.
	send_for 1 client
	send_for "$seconds"
	echo "$(chain_count FORWARD 1) $(chain_count FORWARD 2)" \
		$(($(chain_count orig_lost 1) + $(chain_count orig_empty 1) - 1)) \
		$(($(chain_count reply_lost 1) + $(chain_count reply_empty 1) - 1))
	{
		echo "# $1: iptables-legacy -t mangle -v -S ($nsrouter)"
		ip netns exec "$nsrouter" iptables-legacy -t mangle -v -S
		echo "# $1: conntrack -L -p udp ($nsrouter)"
		ip netns exec "$nsrouter" conntrack -L -p udp 2>&1
	} >&2
	cleanup_all_ns
}

unload_connmark || exit "$ksft_fail"
insmod "$XTCM_MODULE" && loaded_is ours || exit "$ksft_fail"
# A command substitution, not < <(...): the namespaces must be gone (and
# their rules' references to the module) before it is unloaded.
counts=$(run_with ours)
read -r ours_orig ours_reply ours_lost_orig ours_lost_reply <<<"$counts"
echo "MEASURE ours: $ours_orig + $ours_reply packets in $seconds s, lost writes: original direction $ours_lost_orig, reply $ours_lost_reply"
unload_connmark || exit "$ksft_fail"
in_tree_autoloads >/dev/null || exit "$ksft_fail"
counts=$(run_with in-tree)
read -r it_orig it_reply it_lost_orig it_lost_reply <<<"$counts"
echo "MEASURE in-tree: $it_orig + $it_reply packets in $seconds s, lost writes: original direction $it_lost_orig, reply $it_lost_reply"

# KCSAN and a busy host slow the guest to a few hundred packets.
if [ -z "${ours_orig:-}" ] || [ "${ours_orig:-0}" -lt 100 ] || [ "${ours_reply:-0}" -lt 100 ]; then
	echo "FAIL: too little traffic with ours ('$ours_orig', '$ours_reply' packets)"
	ret=1
elif [ "$((ours_lost_orig + ours_lost_reply))" -ne 0 ]; then
	echo "FAIL: ours lost $ours_lost_orig + $ours_lost_reply writes"
	ret=1
else
	echo "PASS: ours lost no write in $ours_orig + $ours_reply packets on two CPUs"
fi
exit "$ret"
