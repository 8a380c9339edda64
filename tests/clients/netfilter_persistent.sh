#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A router's CONNMARK ruleset saved by Debian's netfilter-persistent and
# restored by it at the next boot gives the same rules and the same marks.
# Only a fresh boot proves the restore: nothing loaded but our module
# (tests/vm/guest.sh), no rule, no conntrack entry, no module of the first
# boot's rules. The test runs in two boots of the VM (guest.sh's XTCM_BOOT,
# XTCM_CARRY):
#
#   boot 1  netfilter-persistent and iptables-persistent installed, our
#           plugins installed (make install); on the router of
#           client_topology, a ruleset of every kind of CONNMARK rule, both
#           families (--restore-mark and --save-mark with unequal, non-nested
#           masks, revision 2's --left-shift-mark and --right-shift-mark on
#           a save, a restore and a set, --set-xmark, --set-mark, the
#           connmark match masked and inverted, revision 3's
#           --set-dscpmark), its values drawn at random from the full 32
#           bits (the seed printed, XTCM_PERSIST_SEED replays it); the
#           client's TCP, UDP and ICMP through the router, the ct marks,
#           the marks per hook and the rules' counters observed
#           (client_observe); "netfilter-persistent save" in the router.
#           Its rules.v4 and rules.v6, iptables-save's output and the
#           observations are carried to the second boot.
#   boot 2  the packages and plugins installed again, the carried files in
#           /etc/iptables, fresh namespaces, "netfilter-persistent start"
#           in the router (what its systemd unit runs at boot): exit 0,
#           iptables-save and ip6tables-save as in boot 1 (counters
#           aside), the same traffic gives the same ct marks and marks per
#           hook (with their packet counts) and the same rule counters.
#
# Both boots also check what does not depend on our code: iptables-save
# writes each rule in its canonical form, every rule counted packets, and
# the ct marks of UDP (--set-xmark's (ct & ~mask) ^ value, twice) and ICMP
# (--set-dscpmark's (ct & ~dscpmask) | statemask | dscp << shift) are those
# computed here. Each backend in turn (update-alternatives, as an
# administrator chooses): the saved files are the backend's own.

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

client_env_ok
require_tools "update-alternatives --version"
if [ -z "${XTCM_CARRY:-}" ] || [ -z "${XTCM_BOOT:-}" ]; then
	echo "SKIP: XTCM_CARRY and XTCM_BOOT (the two boots) are not set: tests/vm/guest.sh sets them"
	exit "$ksft_skip"
fi
if [ -z "${XTCM_PERSISTENT_DEBS:-}" ]; then
	echo "SKIP: XTCM_PERSISTENT_DEBS (netfilter-persistent's packages) is not set: tests/run.sh sets it"
	exit "$ksft_skip"
fi

CARRY=$XTCM_CARRY
POLICY_RC=/usr/sbin/policy-rc.d
start=$SECONDS
declare -A ALTERNATIVE=()
for ipt in iptables ip6tables; do
	ALTERNATIVE[$ipt]=$(update-alternatives --query "$ipt" | sed -n 's/^Value: //p')
done

# shellcheck disable=SC2317 # called by the EXIT trap
persistent_cleanup()
{
	local rc=$? ipt

	rm -f "$POLICY_RC" /etc/iptables/rules.v4 /etc/iptables/rules.v6
	cleanup_all_ns
	make -s -C "$REPO_DIR" uninstall >/dev/null 2>&1
	for ipt in iptables ip6tables; do
		[ -n "${ALTERNATIVE[$ipt]}" ] &&
			update-alternatives --set "$ipt" "${ALTERNATIVE[$ipt]}" >/dev/null
	done
	restore_man_db
	# client_cleanup exits with the test's status, which it reads from $?.
	(exit "$rc")
	client_cleanup
}
trap persistent_cleanup EXIT

# install_persistent: Debian's netfilter-persistent and iptables-persistent, their init
# script kept from running (a policy-rc.d, as in a chroot), and our plugins
# where iptables looks for them (make install).
install_persistent()
{
	local log=$CLIENT_WORK/install.log

	printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC" && chmod 0755 "$POLICY_RC"
	skip_man_db
	# shellcheck disable=SC2086 # a list of files
	timed_step "dpkg -i netfilter-persistent, iptables-persistent" \
		env DEBIAN_FRONTEND=noninteractive dpkg -i $XTCM_PERSISTENT_DEBS &&
		timed_step "make install (our plugins)" make -C "$REPO_DIR" install
}

# admin CMD...: CMD in the router as the installed system runs it, with
# the plugins make install put in place (not lib.sh's XTABLES_LIBDIR).
admin()
{
	ip netns exec "$nsrouter" env -u XTABLES_LIBDIR "$@"
}

# set_backend BACKEND: iptables and ip6tables are BACKEND's.
set_backend()
{
	update-alternatives --set iptables "/usr/sbin/iptables-$1" >/dev/null &&
		update-alternatives --set ip6tables "/usr/sbin/ip6tables-$1" >/dev/null
}

# rand32 VAR: a random 32-bit value, in hex, into VAR (no subshell: the
# sequence of $RANDOM is the seed's).
rand32()
{
	printf -v "$1" '0x%x' $(((RANDOM << 30 ^ RANDOM << 15 ^ RANDOM) & 0xffffffff))
}

# two_masks VAR1 VAR2: random masks, each with a bit the other lacks
# (unequal, neither within the other).
two_masks()
{
	rand32 "$1"
	rand32 "$2"
	while ((!(${!1} & ~${!2}) || !(${!2} & ~${!1}))); do
		rand32 "$2"
	done
}

# random_values: the ruleset's values, from the seed.
# shellcheck disable=SC2153 # rand32 assigns them
random_values()
{
	RANDOM=$SEED
	two_masks RST_NF RST_CT
	two_masks FWD_NF FWD_CT
	two_masks SAVE_NF SAVE_CT
	FWD_SHIFT=$((RANDOM % 31 + 1))
	SAVE_SHIFT=$((RANDOM % 31 + 1))
	SHX_SHIFT=$((RANDOM % 31 + 1))
	rand32 UDP_V
	rand32 UDP_M
	rand32 TCP_V
	rand32 TCP_M
	rand32 PKT_V
	rand32 PKT_M
	rand32 SHX_V
	rand32 SHX_M
	rand32 INV_M
	rand32 INV_V
	printf -v INV_V '0x%x' $((INV_V & INV_M))
	rand32 MATCH_M
	printf -v MATCH_V '0x%x' $((UDP_V & MATCH_M))
	rand32 Q_V
	rand32 Q_M
	DSCP=$((RANDOM % 64))
	DSCP_SHIFT=$((RANDOM % 27))
	printf -v DSCP_MASK '0x%x' $((0x3f << DSCP_SHIFT))
	STATE=0
	while [ $((STATE)) -eq 0 ]; do
		rand32 STATE
		printf -v STATE '0x%x' $((STATE & ~DSCP_MASK))
	done
}

# ruleset FAMILY [saved]: the router's mangle table for FAMILY (4, 6), as
# an administrator writes it, or as iptables-save writes it (--set-mark
# V/M is --set-xmark V/(V|M), the DSCP in hex). The TCP rules that change
# the ct mark act on the SYN alone: on every packet, the marks would
# depend on how the two directions' packets interleave on two CPUs.
ruleset()
{
	local icmp="-p icmp" set_mark="--set-mark $TCP_V/$TCP_M"
	local dscp=$DSCP new="-m conntrack --ctstate NEW"

	[ "$1" = 6 ] && icmp="-p ipv6-icmp"
	if [ "${2:-}" = saved ]; then
		printf -v set_mark -- '--set-xmark %s/0x%x' "$TCP_V" $((TCP_V | TCP_M))
		printf -v dscp '0x%02x' "$DSCP"
	fi
	cat <<-EOF
		*mangle
		:PREROUTING ACCEPT [0:0]
		:INPUT ACCEPT [0:0]
		:FORWARD ACCEPT [0:0]
		:OUTPUT ACCEPT [0:0]
		:POSTROUTING ACCEPT [0:0]
		-A PREROUTING -j CONNMARK --restore-mark --nfmask $RST_NF --ctmask $RST_CT
		-A PREROUTING -p udp -j CONNMARK --set-xmark $UDP_V/$UDP_M
		-A PREROUTING -p tcp $new -m connmark ! --mark $INV_V/$INV_M -j CONNMARK $set_mark
		-A PREROUTING -p tcp -j MARK --set-xmark $PKT_V/$PKT_M
		-A PREROUTING -p tcp $new -j CONNMARK --save-mark --nfmask $SAVE_NF --ctmask $SAVE_CT --left-shift-mark $SAVE_SHIFT
		-A PREROUTING $icmp -j DSCP --set-dscp $dscp
		-A PREROUTING $icmp -j CONNMARK --set-dscpmark $DSCP_MASK/$STATE
		-A FORWARD $icmp -j CONNMARK --restore-mark --nfmask $FWD_NF --ctmask $FWD_CT --right-shift-mark $FWD_SHIFT
		-A FORWARD -p tcp $new -j CONNMARK --set-xmark $SHX_V/$SHX_M --left-shift-mark $SHX_SHIFT
		-A POSTROUTING -p udp -m connmark --mark $MATCH_V/$MATCH_M -j MARK --set-xmark $Q_V/$Q_M
		COMMIT
	EOF
}

# saved_rules FAMILY: the router's iptables-save (ip6tables-save), comments
# and counters aside, the tables by name (iptables-legacy-save writes them
# in the order the namespace made them, not the file's).
saved_rules()
{
	local save=iptables-save

	[ "$1" = 6 ] && save=ip6tables-save
	admin "$save" | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]$/[0:0]/' |
		awk '/^\*/ { table = $0 } { print table "\t" $0 }' |
		sort -s -t "$(printf '\t')" -k 1,1 | cut -f 2-
}

# traffic DIR: the client's TCP, UDP and ICMP to the server, both families,
# what the kernel did into DIR (client_observe); again, up to 3 times, when
# a stalled guest disturbed it.
traffic()
{
	local dir=$1 try log=$CLIENT_WORK/traffic.log

	for try in 1 2 3; do
		client_quiesce || return
		if ! client_send "$nsclient" 10.0.2.99 dead:2::99 >"$log" 2>&1 &&
			! grep -q retransmitted "$log"; then
			cat "$log"
			fail "$BACKEND: the traffic"
			return 1
		fi
		client_observe "$dir"
		! grep -q retransmitted "$log" &&
			python3 "$OBSERVE" disturbed <"$dir/marks" && return 0
		echo "# $BACKEND: the traffic was disturbed (a stalled guest, try $try): again"
	done
	fail "$BACKEND: the traffic was disturbed 3 times"
	return 1
}

# check_computed DIR: what does not depend on our code, in DIR's
# observations: the ct marks of UDP and ICMP computed here, each rule's
# packet counter.
check_computed()
{
	local dir=$1 udp icmp idle entry proto dst want

	# A new entry's ct mark is 0. UDP: the request's --set-xmark, then the
	# reply's. ICMP: --set-dscpmark with the DSCP of the rule before it.
	udp=$(((((0 & ~UDP_M) ^ UDP_V) & ~UDP_M) ^ UDP_V))
	icmp=$(((0 & ~DSCP_MASK) | STATE | DSCP << DSCP_SHIFT))
	for entry in "icmp 10.0.2.99 $icmp" "icmpv6 dead:2::99 $icmp" \
		"udp 10.0.2.99 $udp" "udp dead:2::99 $udp"; do
		read -r proto dst want <<<"$entry"
		expect "$BACKEND: boot $XTCM_BOOT: $proto to $dst: ct mark $(printf '0x%x' "$want") (computed)" \
			"$(grep -c "^$proto src=[^ ]* dst=$dst .* mark=$want\$" "$dir/ct")" -eq 1
	done
	idle=$(grep "^ip6\?tables-$BACKEND mangle .*: 0 packets\$" "$dir/counters")
	[ -z "$idle" ] || echo "$idle"
	expect "$BACKEND: boot $XTCM_BOOT: every rule counted packets ($(grep -c "^ip6\?tables-$BACKEND mangle" "$dir/counters") rules)" \
		-z "$idle"
	echo "# $BACKEND: boot $XTCM_BOOT: ct marks"
	sed 's/^/#   /' "$dir/ct"
}

# boot1 BACKEND: the rules loaded, the traffic, netfilter-persistent save;
# what boot 2 needs into $CARRY/BACKEND.
boot1()
{
	local dir=$CARRY/$1 fam restore

	mkdir -p "$dir" || return
	for fam in 4 6; do
		restore=iptables-restore
		[ "$fam" = 6 ] && restore=ip6tables-restore
		if ! ruleset "$fam" | admin "$restore" -w; then
			fail "$1: $restore of the ruleset"
			return 1
		fi
	done
	traffic "$dir" || return
	check_computed "$dir"
	if ! admin netfilter-persistent save >"$dir/save.log" 2>&1; then
		cat "$dir/save.log"
		fail "$1: netfilter-persistent save"
		return 1
	fi
	for fam in 4 6; do
		cp "/etc/iptables/rules.v$fam" "$dir/" || return
		saved_rules "$fam" >"$dir/save.v$fam"
		if diff -u <(ruleset "$fam" saved | grep '^-A') \
			<(grep '^-A' "$dir/save.v$fam") >"$dir/canonical.diff"; then
			pass "$1: IPv$fam: iptables-save writes each rule in its canonical form"
		else
			sed 's/^/#   /' "$dir/canonical.diff"
			fail "$1: IPv$fam: iptables-save (+) is not the rules' canonical form (-)"
		fi
	done
	echo "# $1: /etc/iptables/rules.v4 as netfilter-persistent saved it"
	sed 's/^/#   /' "$dir/rules.v4"
}

# boot2 BACKEND: boot 1's files in /etc/iptables, netfilter-persistent
# start, and what boot 1 saw.
boot2()
{
	local carried=$CARRY/$1 dir=$CLIENT_WORK/$1 fam what rc

	for fam in 4 6; do
		if ! cp "$carried/rules.v$fam" /etc/iptables/; then
			fail "$1: no rules.v$fam carried from boot 1"
			return 1
		fi
	done
	admin netfilter-persistent start >"$CLIENT_WORK/start.log" 2>&1
	rc=$?
	sed 's/^/#   /' "$CLIENT_WORK/start.log"
	expect "$1: netfilter-persistent start: exit 0" "$rc" -eq 0
	for fam in 4 6; do
		if diff -u "$carried/save.v$fam" <(saved_rules "$fam") >"$dir.diff"; then
			pass "$1: IPv$fam: iptables-save as in boot 1 ($(grep -c '^-A' "$carried/save.v$fam") rules)"
		else
			sed 's/^/#   /' "$dir.diff"
			fail "$1: IPv$fam: iptables-save differs from boot 1's (-)"
		fi
	done
	traffic "$dir" || return
	for what in ct marks counters; do
		if diff -u "$carried/$what" "$dir/$what" >"$dir.diff"; then
			pass "$1: $what as in boot 1 ($(wc -l <"$dir/$what") lines)"
		else
			sed 's/^/#   /' "$dir.diff"
			fail "$1: $what differ from boot 1's (-)"
		fi
	done
	check_computed "$dir"
}

if [ "$XTCM_BOOT" = 1 ]; then
	SEED=${XTCM_PERSIST_SEED:-$((RANDOM * 32768 + RANDOM))}
	mkdir -p "$CARRY" && echo "$SEED" >"$CARRY/seed" || exit "$ksft_fail"
elif ! SEED=$(cat "$CARRY/seed"); then
	echo "FAIL: no seed carried from boot 1"
	exit "$ksft_fail"
fi
echo "# boot $XTCM_BOOT, seed $SEED (XTCM_PERSIST_SEED=$SEED replays it)"
random_values
install_persistent || exit "$ksft_fail"
for BACKEND in $(client_backends legacy nft); do
	cleanup_all_ns
	client_serve_stop
	set_backend "$BACKEND" || { fail "$BACKEND: update-alternatives"; continue; }
	client_topology || { fail "$BACKEND: the topology"; continue; }
	case $XTCM_BOOT in
	1) boot1 "$BACKEND" ;;
	*) boot2 "$BACKEND" ;;
	esac
done
echo "# boot $XTCM_BOOT took $((SECONDS - start)) s"
# The second half runs in a fresh boot, once the first has saved.
[ "$XTCM_BOOT" = 1 ] && [ "$ret" -eq 0 ] && touch "$CARRY/reboot"
exit "$ret"
