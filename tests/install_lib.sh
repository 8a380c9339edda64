#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the tests that swap xt_connmark or the plugins (install_*.sh,
# differential.sh, coexist_module.sh), sourced after lib.sh: which
# xt_connmark is loaded and from where, autoloading it with a plain iptables
# rule, putting back the module the runner loaded (XTCM_MODULE) so that
# later tests still run against it, and a ruleset of every kind of rule to
# save and restore across the swap (RULESET, rules_*). They run in the VM
# only (tests/vm/), on a throw-away overlay of the host's root.

KREL=$(uname -r)
XTLIBDIR=$(pkg-config --variable=xtlibdir xtables 2>/dev/null)
# shellcheck disable=SC2034 # used by the scripts sourcing us
DKMS_SRC=/usr/src/xt_connmark-${XTCM_VERSION:-}
# shellcheck disable=SC2034
PLUGIN_FILES=("$XTLIBDIR/libxt_CONNMARK.so" "$XTLIBDIR/libxt_connmark.so")

# install_env_ok: the variables the runner exports (tests/run.sh).
install_env_ok()
{
	local var

	for var in XTCM_KROOT XTCM_MODULE XTCM_VERSION XTCM_SRCVERSION; do
		if [ -z "${!var:-}" ]; then
			echo "SKIP: $var is not set: this test runs in the VM (tests/run.sh)"
			return 1
		fi
	done
}

# link_headers: /lib/modules/$KREL/build, which DKMS builds against, to the
# unpacked kernel's headers.
link_headers()
{
	local headers=$XTCM_KROOT/usr/src/linux-headers-$KREL

	if [ ! -f "$headers/Makefile" ]; then
		echo "FAIL: no headers for $KREL in $headers"
		return 1
	fi
	ln -sfn "$headers" "/lib/modules/$KREL/build"
}

# Under TCG, over 9p, "depmod -a" takes 70 to 120 s on Debian's ~4000
# modules, and DKMS runs it at every install and removal. The tests only
# load netfilter modules: hide_modules mounts an empty tmpfs on every
# directory of kernel/ but net/, lib/, crypto/ and arch/ (~640 modules
# left), after saving the modules.* indexes; unhide_modules puts both back,
# so the indexes are the initial ones again without another depmod.
MODULES_SAVED=""
MODULES_HIDDEN=()
hide_modules()
{
	local dir=/lib/modules/$KREL sub

	MODULES_SAVED=$(mktemp -d) || return
	cp -a "$dir"/modules.* "$MODULES_SAVED/" || return
	for sub in "$dir"/kernel/*/; do
		sub=${sub%/}
		case ${sub##*/} in
		net | lib | crypto | arch) continue ;;
		esac
		mount -t tmpfs -o ro,size=4k xtcm-hidden "$sub" || return
		MODULES_HIDDEN+=("$sub")
	done
}

unhide_modules()
{
	local sub

	for sub in "${MODULES_HIDDEN[@]}"; do
		umount "$sub"
	done
	MODULES_HIDDEN=()
	if [ -n "$MODULES_SAVED" ]; then
		rm -f "/lib/modules/$KREL"/modules.*
		cp -a "$MODULES_SAVED"/modules.* "/lib/modules/$KREL/"
		rm -rf "$MODULES_SAVED"
		MODULES_SAVED=""
	fi
}

# unload_connmark: rmmod xt_connmark if it is loaded, waiting for the
# namespaces of earlier rules to go away.
unload_connmark()
{
	[ -d /sys/module/xt_connmark ] || return 0
	if ! slowwait 30 rmmod xt_connmark 2>/dev/null; then
		echo "FAIL: cannot rmmod xt_connmark (refcnt $(cat \
			/sys/module/xt_connmark/refcnt 2>/dev/null))"
		return 1
	fi
}

# loaded_is ours|in-tree [FILE]: the loaded xt_connmark is ours (our
# version and the srcversion of FILE, default XTCM_MODULE's) or the kernel's
# own (no version: the kernel records neither a version nor a srcversion for
# it, nor the out-of-tree taint "O" that ours carries); else a FAIL line.
loaded_is()
{
	local version taint srcversion want

	version=$(cat /sys/module/xt_connmark/version 2>/dev/null)
	taint=$(cat /sys/module/xt_connmark/taint 2>/dev/null)
	srcversion=$(cat /sys/module/xt_connmark/srcversion 2>/dev/null)
	case $1 in
	ours)
		want=$XTCM_SRCVERSION
		[ -z "${2-}" ] || want=$(modinfo -F srcversion "$2")
		[ "$version" = "$XTCM_VERSION" ] && [ "$srcversion" = "$want" ] &&
			return 0
		echo "FAIL: loaded xt_connmark is not ours: version '$version', srcversion '$srcversion', want $XTCM_VERSION and $want (${2:-$XTCM_MODULE})"
		;;
	in-tree)
		[ -d /sys/module/xt_connmark ] && [ -z "$version" ] &&
			[[ $taint != *O* ]] && return 0
		echo "FAIL: loaded xt_connmark is not the kernel's: version '$version', taint '$taint'"
		;;
	esac
	return 1
}

# check_loaded ours|in-tree: the loaded xt_connmark is the file modprobe
# finds, and that file is ours in updates/ or the kernel's own in
# kernel/net/netfilter/ (loaded_is).
check_loaded()
{
	local path

	path=$(modinfo -n xt_connmark 2>/dev/null)
	case $1 in
	ours)
		if [[ $path != "/lib/modules/$KREL/updates/"* ]]; then
			echo "FAIL: ours: modprobe's xt_connmark is $path, want one in updates/"
			return 1
		fi
		;;
	in-tree)
		if [[ $path != "/lib/modules/$KREL/kernel/net/netfilter/xt_connmark.ko"* ]] ||
			[ "$(modinfo -F intree "$path")" != Y ]; then
			echo "FAIL: in-tree: modprobe's xt_connmark is $path, want the kernel's in kernel/net/netfilter/"
			return 1
		fi
		;;
	esac
	loaded_is "$1" "$path" || return 1
	echo "PASS: $1 xt_connmark loaded: $path"
}

# use_module in-tree|ours: replace the loaded xt_connmark, and check that
# the one loaded is the one asked for.
use_module()
{
	unload_connmark || return 1
	if [ "$1" = ours ]; then
		insmod "$XTCM_MODULE" || return 1
	else
		modprobe xt_connmark || return 1
	fi
	loaded_is "$1"
}

# in_tree_autoloads: with xt_connmark unloaded, a plain rule loads the
# kernel's own again (after ours was removed from updates/).
in_tree_autoloads()
{
	unload_connmark && autoload_rule iptables && check_loaded in-tree
}

# timed_step WHAT CMD...: run CMD, its output into the caller's file $log,
# and log how long it took; if it fails, a FAIL line and the output.
timed_step()
{
	local what=$1 start=$SECONDS rc=0
	shift

	# shellcheck disable=SC2154 # log is the caller's
	"$@" >"$log" 2>&1 || rc=$?
	echo "# $what took $((SECONDS - start)) s"
	[ "$rc" -eq 0 ] && return 0
	echo "FAIL: $what: $* exited with $rc"
	cat "$log"
	return 1
}

# dkms_installed: DKMS has our version of xt_connmark installed for $KREL.
# Sets status (dkms status: "xt_connmark/V, K, ARCH: installed", or before
# DKMS 3.0, Debian 11's, "xt_connmark, V, K, ARCH: installed").
dkms_installed()
{
	local line

	status=$(dkms status xt_connmark)
	while read -r line; do
		case $line in
		"xt_connmark/$XTCM_VERSION, $KREL, "*": installed"* | \
			"xt_connmark, $XTCM_VERSION, $KREL, "*": installed"*)
			return 0
			;;
		esac
	done <<<"$status"
	echo "FAIL: dkms status, want xt_connmark/$XTCM_VERSION installed for $KREL, got: $status"
	return 1
}

# BOOT_FILES: what the module's installation adds to the boot path
# (Makefile's boot-install).
BOOT_FILES=(/usr/lib/modprobe.d/xt-connmark.conf
	/usr/lib/xt-connmark/modprobe-fallback /usr/lib/xt-connmark/signing-check)

# check_signed_install WHAT: after WHAT, DKMS's module is signed by DKMS's
# own key when this DKMS signs (DKMS 3: /var/lib/dkms/mok.pub, the
# certificate's CN is modinfo's signer) and unsigned otherwise (Debian 11's
# DKMS 2.8), and the boot path's files are installed with it.
check_signed_install()
{
	local ko signer cn="" f

	ko=$(modinfo -n xt_connmark)
	signer=$(modinfo -F signer "$ko")
	[ -f /var/lib/dkms/mok.pub ] &&
		cn=$(openssl x509 -inform DER -in /var/lib/dkms/mok.pub -noout \
			-subject -nameopt multiline | sed -n 's/^ *commonName *= //p')
	if [ -f /var/lib/dkms/mok.pub ] && [ -z "$cn" ]; then
		echo "FAIL: $1: no CN in /var/lib/dkms/mok.pub"
		return 1
	fi
	if [ "$signer" != "$cn" ]; then
		echo "FAIL: $1: $ko is signed by '$signer', want '$cn' (/var/lib/dkms/mok.pub's CN, none without it)"
		return 1
	fi
	for f in "${BOOT_FILES[@]}"; do
		if [ ! -f "$f" ]; then
			echo "FAIL: $1: no $f"
			return 1
		fi
	done
	# shellcheck disable=SC2016 # modprobe's own variable
	if ! modprobe -c | grep -qx 'install xt_connmark /usr/lib/xt-connmark/modprobe-fallback $CMDLINE_OPTS'; then
		echo "FAIL: $1: modprobe -c has no install command for xt_connmark"
		return 1
	fi
	echo "PASS: $1: $ko signed by '${signer:-nobody}' (modinfo -F signer${cn:+, the CN of DKMS key /var/lib/dkms/mok.pub}), modprobe's fallback installed"
}

# dkms_gone WHAT: after WHAT, DKMS knows no xt_connmark, and neither its
# module in updates/ nor its sources nor the boot path's files are left.
dkms_gone()
{
	local status ko left

	status=$(dkms status xt_connmark)
	ko=$(find "/lib/modules/$KREL/updates" -name 'xt_connmark.ko*' 2>/dev/null)
	left=$(ls -d "${BOOT_FILES[@]}" 2>/dev/null)
	[ -z "$status" ] && [ -z "$ko" ] && [ ! -e "$DKMS_SRC" ] && [ -z "$left" ] &&
		return 0
	echo "FAIL: after $1: dkms status '$status', module '$ko', $DKMS_SRC $([ -e "$DKMS_SRC" ] || echo "gone"), boot files left: '$left'"
	return 1
}

# autoload_rule IPTABLES: in a fresh namespace, the plain rule a user would
# write, with xt_connmark unloaded: the kernel must load the module itself.
# IPTABLES is a command, e.g. "iptables" or "env XTABLES_LIBDIR=... iptables".
autoload_rule()
{
	local ipt=$1 ns_autoload out

	if [ -d /sys/module/xt_connmark ]; then
		echo "FAIL: xt_connmark is loaded before the rule"
		return 1
	fi
	setup_ns ns_autoload || return
	# shellcheck disable=SC2086 # IPTABLES is a command with arguments
	if ! out=$(ip netns exec "$ns_autoload" $ipt -t mangle -A PREROUTING \
		-j CONNMARK --set-mark 1 2>&1); then
		echo "FAIL: $ipt -j CONNMARK --set-mark 1: $out"
		return 1
	fi
	# shellcheck disable=SC2086
	out=$(ip netns exec "$ns_autoload" $ipt -t mangle -S PREROUTING 2>&1)
	if ! grep -qx -- '-A PREROUTING -j CONNMARK --set-xmark 0x1/0xffffffff' \
		<<<"$out"; then
		echo "FAIL: $ipt -t mangle -S PREROUTING, want the rule, got: $out"
		return 1
	fi
	echo "PASS: $ipt -t mangle -A PREROUTING -j CONNMARK --set-mark 1 loaded xt_connmark"
}

# restore_module: the state the runner left, whatever happened: the
# modules and their indexes as they were, no other xt_connmark loaded,
# XTCM_MODULE insmod'ed.
restore_module()
{
	cleanup_all_ns
	unhide_modules
	unload_connmark || return
	if ! insmod "$XTCM_MODULE"; then
		echo "FAIL: cannot insmod $XTCM_MODULE again"
		return 1
	fi
	loaded_is ours || return 1
	echo "PASS: $XTCM_MODULE loaded again"
}

# skip_man_db: dpkg's man-db trigger rebuilds the manual page index, which
# takes minutes under TCG; man-db's own switch turns it off until
# restore_man_db.
MAN_DB_SKIPPED=false
skip_man_db()
{
	if [ -e /var/lib/man-db/auto-update ]; then
		rm -f /var/lib/man-db/auto-update
		MAN_DB_SKIPPED=true
	fi
}

restore_man_db()
{
	if $MAN_DB_SKIPPED; then
		touch /var/lib/man-db/auto-update
		MAN_DB_SKIPPED=false
	fi
}

# sha256_of FILE...: "sha256 name" lines; a missing file prints "missing".
sha256_of()
{
	local f

	for f in "$@"; do
		if [ -e "$f" ]; then
			sha256sum "$f"
		else
			echo "missing $f"
		fi
	done
}

# The rules of the tests that remove or replace our plugins or module while
# rules are loaded (install_plugins.sh, install_deb.sh, coexist_module.sh):
# every kind of CONNMARK rule and connmark match, plain and inverted, as
# iptables-restore input of the mangle table for either family, and
# DSCP_RULE, the one --set-dscpmark rule (revision 3: neither Debian's
# plugin nor the kernel's own module has it), which our plugin saves as
# DSCP_SAVED and Debian's as DSCP_STOCK_legacy and DSCP_STOCK_nft (read as
# revision 2). A ping in a namespace goes through chain cm twice (request,
# reply) and leaves its connection a mark.
RULESET='*mangle
:cm - [0:0]
-A PREROUTING -j cm
-A cm -j CONNMARK --set-xmark 0x23/0x63
-A cm -j CONNMARK --set-mark 0x5
-A cm -j CONNMARK --set-mark 0x5/0xff
-A cm -j CONNMARK --and-mark 0xf
-A cm -j CONNMARK --or-mark 0x10
-A cm -j CONNMARK --xor-mark 0x3
-A cm -j CONNMARK --save-mark
-A cm -j CONNMARK --save-mark --mask 0xff
-A cm -j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff00
-A cm -j CONNMARK --restore-mark
-A cm -j CONNMARK --restore-mark --ctmask 0xf --nfmask 0xf0 --left-shift-mark 4
-A cm -j CONNMARK --save-mark --mask 0xff00 --right-shift-mark 8
-A cm -j CONNMARK --set-xmark 0x23/0x63 --right-shift-mark 5
-A cm -j CONNMARK --set-mark 0x100/0x300 --left-shift-mark 2
-A cm -p icmp -m connmark --mark 0x1 -j CONNMARK --set-mark 0x2
-A cm -m connmark ! --mark 0x2/0xf -j CONNMARK --restore-mark --mask 0xff
-A cm -m connmark --mark 0x4/0x4 -j ACCEPT
-A cm -m connmark ! --mark 0x0 -j RETURN'
DSCP_RULE='-A FORWARD -j CONNMARK --set-dscpmark 0xfc000000/0x01000000'
DSCP_SAVED='-A FORWARD -j CONNMARK --set-dscpmark 0xfc000000/0x1000000'
# shellcheck disable=SC2034 # read through DSCP_STOCK_$BACKEND
DSCP_STOCK_legacy='-A FORWARD -j CONNMARK [unsupported revision]'
# shellcheck disable=SC2034
DSCP_STOCK_nft='-A FORWARD -j CONNMARK --set-xmark 0xfc000000/0x1000000 --left-shift-mark 26'

# RULES_NS[BACKEND]: the namespace of each backend's rules (one each, so
# that a ping goes through one backend's rules only); RULES_DIR: their
# iptables-save files, BACKEND FAMILY and a name, e.g. "legacy4.ours".
declare -A RULES_NS=()
RULES_DIR=""
# The arguments of the rules_* function under way, for its callback.
RULES_ARGS=()

# rules_namespaces: fresh namespaces for RULES_NS, XT_BACKENDS (lib.sh's
# for_each_backend_family fails a backend that does not work there), and
# RULES_DIR, made once (the caller removes it).
rules_namespaces()
{
	local nslegacy nsnft

	setup_ns nslegacy nsnft || return
	RULES_NS=([legacy]=$nslegacy [nft]=$nsnft)
	# shellcheck disable=SC2034 # lib.sh's for_each_backend_family reads it
	XT_BACKENDS=$(xt_backends "$nslegacy")
	[ -n "$RULES_DIR" ] || RULES_DIR=$(mktemp -d)
}

# xt_in_ns CMD...: CMD in the namespace of $BACKEND's rules.
xt_in_ns()
{
	ip netns exec "${RULES_NS[$BACKEND]}" "$@"
}

# rules_file NAME: the save file NAME of $BACKEND and $FAM.
rules_file()
{
	echo "$RULES_DIR/$BACKEND$FAM.$1"
}

# same_rules WHAT GOT WANT: the iptables-save files GOT and WANT hold the
# same lines, but for their comments ("# Generated by", "# Completed on",
# iptables-nft's "# Warning: iptables-legacy tables present"); else a FAIL
# line and the differences.
same_rules()
{
	sed '/^#/d' "$2" >"$2.rules"
	sed '/^#/d' "$3" >"$3.rules"
	cmp -s "$3.rules" "$2.rules" && return 0
	fail "$1: $(basename "$2") is not $(basename "$3"), comment lines aside:"
	diff -u "$3.rules" "$2.rules"
	return 1
}

# replace_line FILE LINE [NEW]: FILE with every line LINE replaced by NEW,
# or left out without NEW, on stdout.
replace_line()
{
	local line

	while IFS= read -r line; do
		if [ "$line" = "$2" ]; then
			[ $# -gt 2 ] || continue
			line=$3
		fi
		printf '%s\n' "$line"
	done <"$1"
}

# rules_load DSCP NAME WHAT: for each backend and family, iptables-restore
# of RULESET (and DSCP_RULE if DSCP is "dscp") in the namespace of the
# backend, with the plugins that iptables loads now, and its iptables-save
# into "rules_file NAME": one restore and one save each.
rules_load()
{
	RULES_ARGS=("$@")
	# shellcheck disable=SC2034 # the caller's result
	for_each_backend_family rules_load_one || ret=1
}

rules_load_one()
{
	local out

	if ! out=$({ echo "$RULESET"
		[ "${RULES_ARGS[0]}" != dscp ] || echo "$DSCP_RULE"
		echo COMMIT; } | xt_in_ns "$IPT-restore" 2>&1); then
		fail "${RULES_ARGS[2]}: $IPT-restore refused the rules: $out"
		return
	fi
	xt_in_ns "$IPT-save" -t mangle >"$(rules_file "${RULES_ARGS[1]}")"
}

# rules_after_removal ERR WHAT: WHAT removed our plugins while
# "rules_load dscp ours" rules were loaded; the distribution's plugins are
# back. For each backend and family: ERR, WHAT's stderr, names the
# --set-dscpmark rule (xtables-connmark-rules' line for it); the
# distribution's iptables-save prints it as DSCP_STOCK_$BACKEND and every
# other rule as ours did; without it (-D FORWARD 1), that iptables-save goes
# into "rules_file stock", for rules_restored.
rules_after_removal()
{
	RULES_ARGS=("$@")
	grep -F -e 'xtables-connmark-rules:' -e '  ip netns exec ' "$1" |
		sed 's/^/# /'
	# shellcheck disable=SC2034 # the caller's result
	for_each_backend_family rules_after_removal_one || ret=1
}

rules_after_removal_one()
{
	local err=${RULES_ARGS[0]} what=${RULES_ARGS[1]} stock out
	local -n stock_line=DSCP_STOCK_$BACKEND

	stock="  ip netns exec ${RULES_NS[$BACKEND]} $IPT-save -t mangle: $DSCP_SAVED"
	grep -qxF -- "$stock" "$err" ||
		fail "$what: its stderr does not name the rule: want the line '$stock'"
	xt_in_ns "$IPT-save" -t mangle >"$(rules_file removed)"
	replace_line "$(rules_file ours)" "$DSCP_SAVED" "$stock_line" \
		>"$(rules_file removed-want)"
	same_rules "$what: $IPT-save, the distribution's" \
		"$(rules_file removed)" "$(rules_file removed-want)"
	if ! out=$(xt_in_ns "$IPT" -t mangle -D FORWARD 1 2>&1); then
		fail "$what: $IPT -t mangle -D FORWARD 1: $out"
		return
	fi
	xt_in_ns "$IPT-save" -t mangle >"$(rules_file stock)"
	replace_line "$(rules_file ours)" "$DSCP_SAVED" >"$(rules_file stock-want)"
	same_rules "$what: $IPT-save without the --set-dscpmark rule" \
		"$(rules_file stock)" "$(rules_file stock-want)"
}

# rules_restored WHAT: after a reboot-equivalent (fresh namespaces,
# rules_namespaces, and xt_connmark unloaded and loaded again), each
# "rules_file stock" restores with the iptables-restore of the moment and
# saves back the same (comment lines aside).
rules_restored()
{
	RULES_ARGS=("$@")
	# shellcheck disable=SC2034 # the caller's result
	for_each_backend_family rules_restored_one || ret=1
}

rules_restored_one()
{
	local out

	if ! out=$(xt_in_ns "$IPT-restore" <"$(rules_file stock)" 2>&1); then
		fail "${RULES_ARGS[0]}: $IPT-restore of its own save failed: $out"
		return
	fi
	xt_in_ns "$IPT-save" -t mangle >"$(rules_file restored)"
	same_rules "${RULES_ARGS[0]}: $IPT-save after $IPT-restore" \
		"$(rules_file restored)" "$(rules_file stock)"
}
