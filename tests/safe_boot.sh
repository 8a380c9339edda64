#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A router's boot through netfilter-persistent when the kernel cannot run
# our module: /etc/iptables/rules.v4 and rules.v6 (RULES_V4, RULES_V6:
# mangle before nat and filter, as iptables-save may write them; mangle
# restores, classifies and saves, and stores the DSCP with --set-dscpmark;
# filter drops what mangle did not mark) are loaded by Debian's own
# netfilter-persistent (iptables-persistent, installed in the guest), as its
# systemd unit does ("netfilter-persistent start"), in a fresh namespace with
# xt_connmark unloaded. The cases, by the boot (tests/run.sh boots 6.1, and
# in check-matrix sid, a second time with module.sig_enforce=1, this test
# alone):
#   control  ours in updates/, loadable
#   absent   none of ours for this kernel (DKMS did not build it): the
#            kernel's own module, without revision 3
#   refused  ours installed by make dkms-install, signed with DKMS's key,
#            which this kernel (module.sig_enforce=1) does not trust
# Each case runs without the boot path ("before": no modprobe fallback
# (boot/xt-connmark.conf), no plugins.d/14-xt-connmark) and with it
# ("after"), under each backend (update-alternatives, as an administrator
# chooses it). Measured per run, one MEASURE line each: the module loaded,
# the tables loaded per family, netfilter-persistent's exit status and
# first error line, our lines in the kernel log. Asserted:
#   - after: every table and every rule of the files loaded, the
#     --set-dscpmark rule where revision 3 is missing in its revision 2 form
#     (a jump to a chain of 64 -m dscp rules) and named on stderr and in
#     the kernel log; in the refused case the kernel's own module loaded by
#     the fallback, which says why in the kernel log; the ct mark of a ping
#     with each of 4 random DSCP values (and 0) is the --set-dscpmark
#     arithmetic's, computed here, in both families
#   - before: the absent and refused cases lose the filter table (the
#     hazard; a test that does not reproduce it fails, proving nothing)
#   - refused: make dkms-install names the refusal and what to do
#     (boot/signing-check), and the module's signer is DKMS's key

# shellcheck disable=SC2317 # functions called through run_case
set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/install_lib.sh"

install_env_ok || exit "$ksft_skip"
require_tools "make --version" "modinfo --version" "depmod --version" \
	"update-alternatives --version" "conntrack --version" \
	"ping -V" "run-parts --version"
if [ -z "${XTCM_PERSISTENT_DEBS:-}" ]; then
	echo "SKIP: XTCM_PERSISTENT_DEBS (netfilter-persistent's packages) is not set: tests/run.sh sets it"
	exit "$ksft_skip"
fi

DSCPMASK=0xfc000000
STATEMASK=0x1000000
RULES_V4='*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff
-A OUTPUT -m connmark --mark 0x0/0xff -j MARK --set-xmark 0x5/0xff
-A OUTPUT -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff
-A OUTPUT -p icmp -m icmp --icmp-type 8 -j CONNMARK --set-dscpmark 0xfc000000/0x1000000
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m connmark --mark 0x1000005/0x10000ff -j ACCEPT
COMMIT'
RULES_V6=${RULES_V4//-p icmp -m icmp --icmp-type 8/-p ipv6-icmp -m icmp6 --icmpv6-type 128}
TABLES="mangle nat filter"
DSCP_RULE_V4='-A OUTPUT -p icmp -m icmp --icmp-type 8 -j CONNMARK --set-dscpmark 0xfc000000/0x1000000'
DSCP_RULE_V6=${DSCP_RULE_V4//-p icmp -m icmp --icmp-type 8/-p ipv6-icmp -m icmp6 --icmpv6-type 128}

if [ "$(cat /sys/module/module/parameters/sig_enforce 2>/dev/null)" = Y ]; then
	CASES="refused"
else
	CASES="control absent"
fi
ret=0
log=$(mktemp)
work=$(mktemp -d)
policy_rc=/usr/sbin/policy-rc.d

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	rm -f "$policy_rc"
	make -s -C "$REPO_DIR" uninstall >/dev/null 2>&1
	make -s -C "$REPO_DIR" boot-uninstall >/dev/null 2>&1
	if [ "$CASES" = refused ]; then
		make -s -C "$REPO_DIR" dkms-uninstall KVER="$KREL" >/dev/null 2>&1
		unhide_modules
	else
		rm -f "/lib/modules/$KREL/updates/xt_connmark.ko"
		restore_module || exit "$ksft_fail"
	fi
	restore_man_db
	rm -rf "$work" "$log"
}
trap cleanup EXIT

# install_persistent: Debian's netfilter-persistent and iptables-persistent,
# their init script kept from running (a policy-rc.d, as in a chroot).
install_persistent()
{
	printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod 0755 "$policy_rc"
	skip_man_db
	# shellcheck disable=SC2086 # a list of files
	DEBIAN_FRONTEND=noninteractive dpkg -i $XTCM_PERSISTENT_DEBS
	local rc=$?
	rm -f "$policy_rc"
	return "$rc"
}

# set_module CASE: the module files of CASE in /lib/modules/$KREL.
set_module()
{
	local signer cn

	case $1 in
	control)
		mkdir -p "/lib/modules/$KREL/updates" &&
			cp "$XTCM_MODULE" "/lib/modules/$KREL/updates/xt_connmark.ko" &&
			depmod -a "$KREL"
		;;
	absent)
		rm -f "/lib/modules/$KREL/updates/xt_connmark.ko" &&
			depmod -a "$KREL"
		;;
	refused)
		link_headers || return
		timed_step "make dkms-install" make -C "$REPO_DIR" dkms-install \
			KVER="$KREL" || return
		if grep -q 'this kernel enforces module signatures (module.sig_enforce=1)' "$log" &&
			grep -qF "mok_signing_key" "$log"; then
			echo "PASS: make dkms-install names the refusal and what to do:"
		else
			echo "FAIL: make dkms-install does not say that the kernel will refuse the module:"
			ret=1
		fi
		sed -n '/enforces module signatures/,$p' "$log"
		signer=$(modinfo -F signer "$(modinfo -n xt_connmark)")
		cn=$(openssl x509 -inform DER -in /var/lib/dkms/mok.pub -noout \
			-subject -nameopt multiline | sed -n 's/^ *commonName *= //p')
		expect "the installed module's signer is DKMS's key ('$signer', mok.pub's CN '$cn')" \
			-n "$signer" -a "$signer" = "$cn"
		;;
	esac
}

# set_boot_path before|after: without or with the boot path's files.
set_boot_path()
{
	if [ "$1" = before ]; then
		make -s -C "$REPO_DIR" boot-uninstall >/dev/null &&
			rm -f /usr/share/netfilter-persistent/plugins.d/14-xt-connmark
	else
		make -s -C "$REPO_DIR" boot-install >/dev/null &&
			make -s -C "$REPO_DIR" install >/dev/null
	fi
}

# loaded_module: ours, in-tree or none.
loaded_module()
{
	if [ ! -d /sys/module/xt_connmark ]; then
		echo none
	elif [ -n "$(cat /sys/module/xt_connmark/version 2>/dev/null)" ]; then
		echo ours
	else
		echo in-tree
	fi
}

# saved_rules NS FAMILY: iptables-save of NS, comments and counters aside.
saved_rules()
{
	local save=iptables-save

	[ "$2" = 6 ] && save=ip6tables-save
	ip netns exec "$1" "$save" | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]$/[0:0]/'
}

# ping_mark NS FAMILY DSCP: the ct mark of one ping with DSCP, in hex.
ping_mark()
{
	local addr=127.0.0.1 proto=icmp mark

	[ "$2" = 6 ] && addr=::1 proto=icmpv6
	ip netns exec "$1" conntrack -F >/dev/null 2>&1
	ip netns exec "$1" ping -"$2" -q -c 1 -W 2 -Q "$(($3 << 2))" "$addr" \
		>/dev/null 2>&1
	mark=$(ip netns exec "$1" conntrack -L -p "$proto" 2>/dev/null |
		sed -n 's/.* mark=\([0-9]*\).*/\1/p' | head -n 1)
	printf '0x%x\n' "${mark:-0}"
}

# loaded_rules NS FAMILY: "TABLE N/M" per table of the family's rules: N of
# its M rules are in the namespace's iptables-save (the --set-dscpmark rule
# itself or a jump with its matches: its revision 2 form).
loaded_rules()
{
	local rules=$RULES_V4 dscp_rule=$DSCP_RULE_V4 save line table="" out=""
	local -A saved=() total=() found=()

	[ "$2" = 6 ] && rules=$RULES_V6 dscp_rule=$DSCP_RULE_V6
	save=$(saved_rules "$1" "$2")
	while IFS= read -r line; do
		[ "$line" = "${dscp_rule%% -j *} -j CONNMARK-DSCP-1" ] && line=$dscp_rule
		[ -n "$line" ] && saved[$line]=1
	done <<<"$save"
	while IFS= read -r line; do
		case $line in
		'*'*) table=${line#\*} ;;
		-A*)
			total[$table]=$((${total[$table]:-0} + 1))
			[ -n "${saved[$line]:-}" ] &&
				found[$table]=$((${found[$table]:-0} + 1))
			;;
		esac
	done <<<"$rules"
	for table in $TABLES; do
		out+="${out:+, }$table ${found[$table]:-0}/${total[$table]}"
	done
	echo "$out"
}

# check_rules NS FAMILY REWRITTEN: every line of the family's rules is in
# the namespace's iptables-save; the --set-dscpmark rule itself, or when
# REWRITTEN is true its revision 2 form.
check_rules()
{
	local rules=$RULES_V4 dscp_rule=$DSCP_RULE_V4 save line missing="" chain n
	local -A saved=()

	[ "$2" = 6 ] && rules=$RULES_V6 dscp_rule=$DSCP_RULE_V6
	save=$(saved_rules "$1" "$2")
	while IFS= read -r line; do
		[ -n "$line" ] && saved[$line]=1
	done <<<"$save"
	while IFS= read -r line; do
		[ "$line" = "$dscp_rule" ] && $3 && continue
		[ -n "${saved[$line]:-}" ] || missing+=" '$line'"
	done <<<"$rules"
	if [ -n "$missing" ]; then
		echo "FAIL: IPv$2: not loaded:$missing"
		return 1
	fi
	$3 || return 0
	chain=$(sed -n "s/^${dscp_rule%% -j *} -j \(CONNMARK-DSCP-[0-9]*\)$/\1/p" <<<"$save")
	n=$(grep -c "^-A $chain -m dscp --dscp 0x[0-9a-f]* -j CONNMARK --set-xmark " <<<"$save")
	if [ -z "$chain" ] || [ "$n" -ne 64 ]; then
		echo "FAIL: IPv$2: no revision 2 form of '$dscp_rule' (chain '$chain', $n rules -m dscp):"
		echo "$save"
		return 1
	fi
}

# check_marks NS FAMILY: pings with DSCP 0 and 4 random values; each ct
# mark is (0x5 & ~dscpmask) | statemask | dscp << 26.
check_marks()
{
	local dscp want got bad=""

	for dscp in 0 $((RANDOM % 64)) $((RANDOM % 64)) $((RANDOM % 64)) $((RANDOM % 64)); do
		want=$(printf '0x%x' $(((0x5 & ~DSCPMASK) | STATEMASK | (dscp << 26))))
		got=$(ping_mark "$1" "$2" "$dscp")
		[ "$got" = "$want" ] || bad+=" DSCP $dscp: ct mark $got, want $want;"
	done
	if [ -n "$bad" ]; then
		echo "FAIL: IPv$2 ct marks:$bad"
		return 1
	fi
}

# run_case CASE PHASE BACKEND: one boot's restore, measured and checked.
run_case()
{
	local case=$1 phase=$2 backend=$3 boot_ns rc marker klog fam module
	local err=$work/$case-$phase-$backend.err measure

	unload_connmark || return 1
	update-alternatives --set iptables "/usr/sbin/iptables-$backend" >/dev/null &&
		update-alternatives --set ip6tables "/usr/sbin/ip6tables-$backend" >/dev/null ||
		return 1
	setup_ns boot_ns || return 1
	# The kernel log after a marker of this run: in a long run the ring
	# buffer is full, and a line count taken before says nothing.
	marker="safe_boot.sh: $case $phase $backend ${boot_ns##*-}"
	echo "$marker" >/dev/kmsg
	ip netns exec "$boot_ns" netfilter-persistent start >"$err.out" 2>"$err"
	rc=$?
	klog=$(dmesg | awk -v m="$marker" 'seen; index($0, m) { seen = 1 }' |
		grep -E 'xt_connmark|xtables-connmark-restore')
	module=$(loaded_module)
	measure="$case $phase $backend: module $module"
	for fam in 4 6; do
		measure+="; IPv$fam rules loaded: $(loaded_rules "$boot_ns" "$fam")"
	done
	measure+="; netfilter-persistent exit $rc"
	[ -s "$err.out" ] && measure+=", stdout: $(head -n 1 "$err.out")"
	[ -s "$err" ] && measure+=", stderr: $(grep -m1 -v '^run-parts: executing' "$err")"
	[ -n "$klog" ] && measure+="; kernel log: $(wc -l <<<"$klog") lines"
	echo "MEASURE $measure"
	[ -n "$klog" ] && printf '#   kernel log: %s\n' "${klog//$'\n'/$'\n'#   kernel log: }"
	sed 's/^/#   stdout: /' "$err.out"
	sed 's/^/#   stderr: /' "$err"

	check_case "$case" "$phase" "$boot_ns" "$module" "$measure" "$err" "$klog"
	rc=$?
	[ "$rc" -eq 0 ] || diagnose
	ip netns del "$boot_ns"
	cleanup_all_ns
	return "$rc"
}

# diagnose: what modprobe would do for xt_connmark, and the kernel log's end.
diagnose()
{
	echo "# modprobe's configuration and files for xt_connmark:"
	modprobe -c | grep -E 'connmark' | sed 's/^/#   /'
	find /usr/lib/modprobe.d /usr/lib/xt-connmark "$(dirname "$(modinfo -n xt_connmark)")" -maxdepth 1 2>&1 |
		sed 's/^/#   /'
	echo "# modprobe -v xt_connmark:"
	modprobe -v xt_connmark 2>&1 | sed 's/^/#   /'
	echo "# the kernel log's last lines:"
	dmesg | tail -n 15 | sed 's/^/#   /'
}

# check_case CASE PHASE NS MODULE MEASURE ERR KLOG: what run_case asserts.
check_case()
{
	local case=$1 phase=$2 boot_ns=$3 module=$4 measure=$5 err=$6 klog=$7 fam
	local want_fallback=false

	case $case/$phase in
	control/*)
		check_rules "$boot_ns" 4 false && check_rules "$boot_ns" 6 false &&
			check_marks "$boot_ns" 4 && check_marks "$boot_ns" 6 &&
			expect "$measure: every rule loaded, marks right" "$module" = ours
		;;
	*/before)
		# The hazard this test is about: the filter table is lost.
		for fam in 4 6; do
			if [[ $(loaded_rules "$boot_ns" "$fam") != *"filter 0/"* ]]; then
				echo "FAIL: $measure: IPv$fam's filter table loaded without the boot path: this boot does not reproduce the failure"
				return 1
			fi
		done
		echo "PASS: $measure: without the boot path, no filter table"
		;;
	*/after)
		[ "$case" = refused ] && want_fallback=true
		check_rules "$boot_ns" 4 true && check_rules "$boot_ns" 6 true &&
			check_marks "$boot_ns" 4 && check_marks "$boot_ns" 6 || return 1
		if [ "$module" != in-tree ]; then
			echo "FAIL: $measure: want the kernel's own module"
			return 1
		fi
		if ! grep -q "xtables-connmark-restore: /etc/iptables/rules.v4: table mangle: .*--set-dscpmark.* loaded as a jump to chain CONNMARK-DSCP-1" "$err" ||
			! grep -q "xtables-connmark-restore: /etc/iptables/rules.v6: table mangle: .*loaded as a jump" <<<"$klog"; then
			echo "FAIL: $measure: the revision 2 form is not named on stderr and in the kernel log"
			return 1
		fi
		if $want_fallback && ! grep -q "xt_connmark: /lib/modules/$KREL/updates/.*refused (Key was rejected by service); loaded the kernel's own" <<<"$klog"; then
			echo "FAIL: $measure: the kernel log does not say that the kernel's own module replaced ours"
			return 1
		fi
		echo "PASS: $measure: every rule loaded (--set-dscpmark in its revision 2 form, named), ct marks right"
		;;
	esac
}

hide_modules || exit "$ksft_fail"
unload_connmark || exit "$ksft_fail"
timed_step "dpkg -i netfilter-persistent, iptables-persistent" install_persistent ||
	exit "$ksft_fail"
timed_step "make install (our plugins, xtables-connmark-restore)" \
	make -C "$REPO_DIR" install || exit "$ksft_fail"
printf '%s\n' "$RULES_V4" >/etc/iptables/rules.v4
printf '%s\n' "$RULES_V6" >/etc/iptables/rules.v6
for case in $CASES; do
	set_module "$case" || exit "$ksft_fail"
	for phase in before after; do
		[ "$case" = control ] && [ "$phase" = before ] && continue
		set_boot_path "$phase" || exit "$ksft_fail"
		for backend in legacy nft; do
			run_case "$case" "$phase" "$backend" || ret=1
		done
	done
done
exit "$ret"
