#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The families the target and the match are registered for, with our module
# and with the kernel's own (README.md, "Differences from upstream"). The
# target is registered for IPv4 and IPv6 only (upstream too since 6.12 and
# the stable backports of CVE-2024-50038: an NFPROTO_UNSPEC target was
# reachable from ebtables and arptables through nft_compat); the match,
# which reads no header, once for every family (NFPROTO_UNSPEC), as
# upstream registers it.
#
# 1. In a fresh namespace, hostile/xt_hostile family: through nft_compat in
#    tables of the ip, ip6, bridge and arp families, one rule with the first
#    valid payload of target revisions 1, 2 and 3 and one with the match.
#    Wanted: ip and ip6 accept all (read back from the kernel); bridge and
#    arp refuse the target with ENOENT (no such extension in that family;
#    the kernel's own before the split: as the match);
#    bridge accepts the match; arp refuses it with EPROTO (the match's
#    checkentry: nf_ct_netns_get() has no conntrack for ARP). The results
#    of both modules are printed as one MEASURE line each.
# 2. A bridge between two namespaces, in a third one, nf_conntrack_bridge:
#
#    nsa veth0 -- p0 [br0 in nsbr] p1 -- veth0 nsb
#    10.0.3.1                              10.0.3.2
#
#    An nft bridge base chain (hook forward) sets ct mark 0x42 on IPv4 and
#    sends ICMP to chain c, which holds two rules xt_hostile count adds: the
#    compat connmark match, 0x42 and 0x43, each followed by nft's counter.
#    Three pings: 6 packets for 0x42 (requests and replies), 0 for 0x43, and
#    conntrack -L shows the flow with mark 66.
#
# Both steps with our module, then with the kernel's own (use_module), then
# ours again (restore_module). A kernel with CONFIG_IP6_NF_IPTABLES=n, where
# a per-family match would have no IPv6 entry, is not among the lanes.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"

HOSTILE=$TESTS_DIR/hostile/xt_hostile

install_env_ok || exit "$ksft_skip"
require_tools "ip -Version" "nft --version" "ping -V" "conntrack --version"
if [ ! -x "$HOSTILE" ]; then
	echo "SKIP: Could not find $HOSTILE (make -C tests tools)"
	exit "$ksft_skip"
fi
if ! modprobe nf_conntrack_bridge; then
	echo "SKIP: Could not load nf_conntrack_bridge"
	exit "$ksft_skip"
fi

ret=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	restore_module || exit "$ksft_fail"
}
trap cleanup EXIT

# The kernel's own target is registered per family from the CVE-2024-50038
# split on (6.12; stable 6.11.4, 6.6.57, 6.1.113, 5.15.168), before it for
# NFPROTO_UNSPEC (Debian 11's 5.10). Debian's uname -r has no sublevel; its
# uname -v names the upstream version.
intree_target_split()
{
	local version maj min sub

	version=$(uname -v | sed -n 's/.*Debian \([0-9][0-9.]*\).*/\1/p')
	[ -n "$version" ] || version=$(uname -r | sed 's/[^0-9.].*//')
	IFS=. read -r maj min sub <<<"$version"
	sub=${sub:-0}
	case $maj.$min in
	5.15) [ "$sub" -ge 168 ] ;;
	6.1) [ "$sub" -ge 113 ] ;;
	6.6) [ "$sub" -ge 57 ] ;;
	6.11) [ "$sub" -ge 4 ] ;;
	*) [ "$maj" -gt 6 ] || { [ "$maj" -eq 6 ] && [ "$min" -ge 12 ]; } ;;
	esac
}

# want_of MODULE PATH EXT REV: what a valid payload must get (A|B: either).
# The kernel's own has no revision 3. In the arp family, x_tables itself
# refuses an NFPROTO_UNSPEC extension (EINVAL, "not valid for this family")
# on the kernels that have that check (6.1.0-57 and 5.10.0-46 have it);
# else its checkentry does (nf_ct_netns_get: EPROTO). An NFPROTO_UNSPEC
# target (the kernel's own before the split) is the match's case.
want_of()
{
	local ext=$3

	if [ "$ext" = CONNMARK ] && [ "$1" = in-tree ]; then
		if [ "$4" = 3 ]; then
			echo ENOENT
			return
		fi
		$intree_split || ext=connmark
	fi
	case $2 in
	nft4 | nft6) echo 0 ;;
	nftbr) [ "$ext" = CONNMARK ] && echo ENOENT || echo 0 ;;
	nftarp) [ "$ext" = CONNMARK ] && echo ENOENT || echo "EINVAL|EPROTO" ;;
	esac
}

intree_split=false
intree_target_split && intree_split=true

# probe MODULE: step 1.
probe()
{
	local module=$1 nsprobe out kind rest kv path ext rev got back want n=0
	local table="" failed=false
	local -A fields

	setup_ns nsprobe || return
	out=$(ip netns exec "$nsprobe" "$HOSTILE" family 2>&1)
	while read -r kind rest; do
		if [ "$kind" != FAMILY ]; then
			fail "$module: xt_hostile family: $kind $rest"
			failed=true
			continue
		fi
		fields=()
		for kv in $rest; do
			fields[${kv%%=*}]=${kv#*=}
		done
		path=${fields[path]} ext=${fields[ext]} rev=${fields[rev]}
		got=${fields[got]} back=${fields[read_back]}
		n=$((n + 1))
		table+="${table:+ }$path/$ext/$rev=$got"
		want=$(want_of "$module" "$path" "$ext" "$rev")
		if [[ "|$want|" != *"|$got|"* ]]; then
			fail "$module: $path $ext revision $rev, want ${want/#0/accepted}, got $got"
			failed=true
		elif [ "$got" = 0 ] && [ "$back" != yes ]; then
			fail "$module: $path $ext revision $rev accepted, but not read back"
			failed=true
		fi
	done <<<"$out"
	if [ "$n" -ne 16 ]; then
		fail "$module: xt_hostile family: $n results, want 16 (4 paths, 4 extensions)"
		failed=true
	fi
	echo "MEASURE $module: $table"
	local target="refuses the target in bridge and arp (ENOENT)"
	[ "$module" = in-tree ] && ! $intree_split &&
		target="accepts the target in bridge, refuses it in arp ($(sed 's/.*nftarp\/CONNMARK\/1=\([A-Z0-9]*\).*/\1/' <<<"$table"): NFPROTO_UNSPEC, before the CVE-2024-50038 split)"
	$failed ||
		echo "PASS: $module: nft_compat accepts target and match in ip and ip6, $target, accepts the match in bridge, refuses it in arp ($(sed 's/.*nftarp\/connmark\/1=//' <<<"$table"))"
	ip netns del "$nsprobe"
}

# bridge_count MODULE: step 2.
bridge_count()
{
	local module=$1 nsa nsbr nsb counts got mark

	setup_ns nsa nsbr nsb || return
	ip link add veth0 netns "$nsa" type veth peer name p0 netns "$nsbr" &&
		ip link add veth0 netns "$nsb" type veth peer name p1 \
			netns "$nsbr" || return
	ip -net "$nsbr" -batch - <<-EOF || return
		link add br0 type bridge
		link set p0 master br0
		link set p1 master br0
		link set p0 up
		link set p1 up
		link set br0 up
	EOF
	ip -net "$nsa" -batch - <<-EOF || return
		addr add 10.0.3.1/24 dev veth0
		link set veth0 up
	EOF
	ip -net "$nsb" -batch - <<-EOF || return
		addr add 10.0.3.2/24 dev veth0
		link set veth0 up
	EOF
	# The bridge forwards once its ports have left the listening state.
	if ! slowwait 10 ip netns exec "$nsa" ping -q -c 1 -W 0.5 10.0.3.2 \
		>/dev/null; then
		fail "$module: bridge: no ping reply before the rules"
		return
	fi
	if ! ip netns exec "$nsbr" nft -f - <<-EOF; then
		table bridge xtfam {
			chain c {
			}
			chain cmfwd {
				type filter hook forward priority 0;
				meta protocol ip ct mark set 0x42
				ip protocol icmp jump c
			}
		}
	EOF
		fail "$module: bridge: cannot load the nft table"
		return
	fi
	ip netns exec "$nsbr" conntrack -F >/dev/null 2>&1
	for mark in 0x42 0x43; do
		ip netns exec "$nsbr" "$HOSTILE" count nftbr xtfam c "$mark" \
			0xffffffff ||
			fail "$module: bridge: compat connmark match $mark in chain c, want accepted"
	done
	ip netns exec "$nsa" ping -q -c 3 -i 0.2 -W 2 10.0.3.2 >/dev/null ||
		fail "$module: bridge: 3 pings through the bridge, want replies"
	counts=$(ip netns exec "$nsbr" nft list chain bridge xtfam c 2>/dev/null |
		sed -n 's/.* counter packets \([0-9]*\) .*/\1/p' | tr '\n' ' ')
	if [ "$counts" = "6 0 " ]; then
		echo "PASS: $module: bridge family, compat connmark match: ct mark 0x42 counted 6 packets (3 pings), 0x43 none"
	else
		fail "$module: bridge family, compat connmark match 0x42 then 0x43: want counters 6 0, got '${counts% }'"
		ip netns exec "$nsbr" nft list table bridge xtfam
	fi
	got=$(ct_marks "$nsbr" -p icmp | tr '\n' ' ')
	[ "$got" = "66 " ] ||
		fail "$module: bridge: conntrack -L -p icmp marks, want one flow with 66, got '${got% }'"
	cleanup_all_ns
}

for module in ours in-tree; do
	use_module "$module" || exit "$ksft_fail"
	probe "$module"
	bridge_count "$module"
done

exit "$ret"
