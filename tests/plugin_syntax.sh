#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Syntax of the CONNMARK target and connmark match plugins in libxt/, as
# iptables' own extension tests check theirs. For each backend (legacy, nft)
# and family (ipv4, ipv6), in a fresh network namespace:
#  - every line of plugin/libxt_CONNMARK.t and plugin/libxt_connmark.t
#    ("rule;expected-save-or-=;OK|FAIL"), in every chain of its section:
#    OK rules are added, iptables-save shows the expected save text, and
#    they are deleted by that text (it parses back to the same blob); a FAIL
#    rule exits non-zero and leaves the chains unchanged;
#  - the "-L -n" print of every target mode and of the match;
#  - selected error messages, exactly;
#  - that iptables loads our plugins from libxt/, not the distribution's;
#  - a differential run of every .t rule against Debian's installed plugins:
#    same exit status, error message, save text and print; the translations
#    too, except where connmark.txlate declares a deliberate difference.
# Revision 1 runs only where the kernel lacks revision 2, so one more legacy
# ipv4 namespace repeats all that (without the shift options) with iptables
# told by an LD_PRELOAD shim that the kernel has no CONNMARK revision 2.
# Revision 3 (--set-dscpmark, REV3 lines) is used only where the kernel has
# it (our module; it must be there when our module is loaded); elsewhere
# iptables must fall back to revision 2, where --set-dscpmark is an unknown
# option and every other rule works: Debian's kernel shows that, and in the
# legacy ipv4 namespace the shim hides revision 3 from iptables.
# Then plugin/connmark.txlate with iptables-translate and ip6tables-translate,
# also against Debian's plugins.
#
# Topology: one namespace per backend and family, no traffic.
#
# What runs where. Process start-up is what costs under emulation (50 to
# 250 ms each), so the checks of a namespace run in one "ip netns exec" of
# this script (--group), the OK rules go in and out with one
# iptables-restore, and each save is one iptables-save (the plugin's save
# callback prints it as it prints "-S"). A FAIL line, an error message case
# and their differential need a process each (iptables-restore stops at the
# first error). Those are parse errors: iptables exits 2 before it touches
# the kernel's tables, so what they give depends on the plugins' code and
# on the revisions iptables picked (it asks the kernel, per backend and
# family), not on the namespace. Each namespace asks iptables for the
# connmark and CONNMARK help with our and with Debian's plugins (which
# loads them: the check of where they come from, and of revision 3). The
# first namespace of a run with a given pair of helps (and shim) runs every
# FAIL line, error message and their differential; a later one with the
# same helps runs only the FAIL lines that exited with another status than
# 2 there (none, while they all fail in the parser) and says so. On every
# kernel: legacy ipv4 and the revision 1 namespace run them; the OK lines,
# revisions, saves and prints run in every namespace.
# iptables-translate asks no kernel (it takes every revision as there):
# connmark.txlate goes through iptables-restore-translate, one process per
# family and plugin set, and the first case of each family through
# iptables-translate itself; a case whose batch result differs is run with
# iptables-translate to decide.

set -u

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

repo=$REPO_DIR
if [ -z "${SYNTAX_DISTRO_LIBDIR-}" ]; then
	SYNTAX_DISTRO_LIBDIR=$(pkg-config --variable=xtlibdir xtables \
		2>/dev/null) || SYNTAX_DISTRO_LIBDIR=/usr/lib/x86_64-linux-gnu/xtables
	export SYNTAX_DISTRO_LIBDIR
fi
distro_libdir=$SYNTAX_DISTRO_LIBDIR

our_libdir=$XTABLES_LIBDIR
plugin_dir=$repo/tests/plugin
t_files=(libxt_CONNMARK.t libxt_connmark.t)
ret=0
group=""
ipt=""
ipt_restore=""
ipt_save=""
nchecks=0
nfails=0
nssyntax=""
rev1=""		# the LD_PRELOAD shim when testing revision 1
rev3=false	# iptables uses CONNMARK revision 3 (the kernel has it)
rep=true	# this namespace runs every FAIL line (see the top)
rep_group=""	# else the namespace that did
rep_file=""	# where rep: where record_rep writes its record
rep_key=""

# One entry per .t line and chain of its section ("instance"), file order.
i_file=()
i_table=()
i_chain=()
i_rule=()
i_exp=()
i_status=()
i_flag=()
i_pos=()	# OK: place among the OK rules of its chain, from 0
i_rc=()		# FAIL: exit status with our plugins
i_err=()	# FAIL: first line of the error with our plugins
declare -A n_lines=()
tables=()
ok_list=()	# OK instances added in one batch
rev3_list=()	# OK instances of revision 3, in a second batch
fail_list=()	# FAIL instances
run_fails=()	# FAIL instances run here (all of fail_list where rep)
ours_save=""	# save_all and list_all with the OK batch in place
ours_list=""
baseline=""	# save_all with only the ctkeep chain (run_group)
declare -A memo_rc=() memo_out=()	# "table chain rule": our FAIL runs

# -L -n print of a target mode or of the match (facts, section 5).
print_cases=(
	"-j CONNMARK --set-xmark 0x0/0xffffff00|CONNMARK and 0xff"
	"-j CONNMARK --and-mark 0xff|CONNMARK and 0xff"
	"-j CONNMARK --set-mark 0x0|CONNMARK and 0x0"
	"-j CONNMARK --set-xmark 0x0/0x0|CONNMARK and 0xffffffff"
	"-j CONNMARK --or-mark 0x10|CONNMARK or 0x10"
	"-j CONNMARK --set-xmark 0x10/0x10|CONNMARK or 0x10"
	"-j CONNMARK --xor-mark 0x10|CONNMARK xor 0x10"
	"-j CONNMARK --set-mark 0x1|CONNMARK set 0x1"
	"-j CONNMARK --set-mark 0x23/0x42|CONNMARK xset 0x23/0x63"
	"-j CONNMARK --set-xmark 0x1/0xff|CONNMARK xset 0x1/0xff"
	"-j CONNMARK --save-mark|CONNMARK save"
	"-j CONNMARK --save-mark --mask 0xff|CONNMARK save mask 0xff"
	"-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xf0|CONNMARK save nfmask 0xff ctmask ~0xf0"
	"-j CONNMARK --restore-mark|CONNMARK restore"
	"-j CONNMARK --restore-mark --mask 0xff|CONNMARK restore mask 0xff"
	"-j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xf0|CONNMARK restore ctmask 0xf0 nfmask ~0xff"
	"-j CONNMARK --save-mark --left-shift-mark 3|CONNMARK save left-shift-mark 3"
	"-j CONNMARK --save-mark --right-shift-mark 0|CONNMARK save"
	"-j CONNMARK --restore-mark --mask 0xff --right-shift-mark 8|CONNMARK restore mask 0xff right-shift-mark 8"
	"-j CONNMARK --set-xmark 0x23/0x63 --right-shift-mark 5|CONNMARK xset 0x23/0x63 right-shift-mark 5"
	"-j CONNMARK --and-mark 0xff --left-shift-mark 4|CONNMARK and 0xff left-shift-mark 4"
	"-j CONNMARK --set-dscpmark 0xfc000000/0x01000000|CONNMARK DSCP 0xfc000000/0x1000000"
	"-j CONNMARK --set-dscpmark 0x3f/0x0|CONNMARK DSCP 0x3f/0x0"
	"-m connmark --mark 0x1|connmark match  0x1"
	"-m connmark --mark 0x1/0xff|connmark match  0x1/0xff"
	"-m connmark ! --mark 0x1|connmark match ! 0x1"
	"-m connmark ! --mark 0x1/0xff|connmark match ! 0x1/0xff"
)

# Error messages, without the "iptables v1.8.9 (legacy): " prefix.
error_cases=(
	'-j CONNMARK --set-mark 0x1 --save-mark|CONNMARK: option "--set-mark" cannot be used together with "--save-mark".'
	'-j CONNMARK --save-mark --set-mark 0x1|CONNMARK: option "--set-mark" cannot be used together with "--save-mark".'
	'-j CONNMARK --save-mark --mask 0xff --ctmask 0xff|CONNMARK: option "--ctmask" cannot be used together with "--mask".'
	'-j CONNMARK --set-mark 0x1 --set-mark 0x2|CONNMARK: option "--set-mark" can only be used once.'
	'-j CONNMARK --save-mark --left-shift-mark 32|CONNMARK: bad value for option "--left-shift-mark", or out of range (0-31).'
	'-j CONNMARK --restore-mark --right-shift-mark 32|CONNMARK: bad value for option "--right-shift-mark", or out of range (0-31).'
	'-j CONNMARK --save-mark --left-shift-mark 33|CONNMARK: bad value for option "--left-shift-mark", or out of range (0-31).'
	'-j CONNMARK|CONNMARK target: No operation specified'
	'-j CONNMARK --mask 0xff|CONNMARK target: No operation specified'
	'-m connmark|connmark: option "--mark" must be specified'
	'-j CONNMARK --set-dscpmark 0xf8000000/0x1000000|CONNMARK target: need 6 contiguous dscpmask bits'
	'-j CONNMARK --set-dscpmark 0xfc000001/0x1000000|CONNMARK target: need 6 contiguous dscpmask bits'
	'-j CONNMARK --set-dscpmark 0xfc000000/0x4000000|CONNMARK target: dscpmask and statemask overlap'
	'-j CONNMARK --set-dscpmark 0xfc000000|CONNMARK target: dscpmask and statemask overlap'
	'-j CONNMARK --save-mark --set-dscpmark 0xfc000000/0x1000000|CONNMARK: option "--set-dscpmark" cannot be used together with "--save-mark".'
	'-j CONNMARK --set-dscpmark 0xfc000000/0x1000000 --mask 0xff|CONNMARK: option "--set-dscpmark" cannot be used together with "--mask".'
)
# Without revision 3 in the kernel, what every --set-dscpmark case gets
# (no_rev3_error ARG).
no_rev3_error()
{
	echo "CONNMARK target: --set-dscpmark $1 needs CONNMARK revision 3, which the kernel lacks: load the xt_connmark module of xt-connmark-dkms"
}

fail()
{
	echo "FAIL: $group: $*"
	ret=$ksft_fail
	nfails=$((nfails + 1))
}

# describe I: how a failure names instance I.
describe()
{
	echo "${i_file[$1]} (${i_table[$1]} ${i_chain[$1]}): ${i_rule[$1]}"
}

load_t_files()
{
	local file line table chains chain chain_list rule exp status flag
	local -A pos=()

	for file in "${t_files[@]}"; do
		table=filter
		chains=INPUT
		n_lines[$file]=0
		while IFS= read -r line; do
			case $line in
			"" | "#"*) continue ;;
			:*) chains=${line#:}; continue ;;
			"*"*) table=${line#\*}; continue ;;
			esac
			IFS=';' read -r rule exp status flag <<< "$line"
			[ "$exp" = "=" ] && exp=$rule
			# no revision 3: iptables must refuse the option
			[ "$flag" = REV3 ] && ! $rev3 && status=FAIL
			[ -n "$rev1" ] && [[ $rule == *-shift-mark* ]] &&
				continue
			case $status in
			OK | FAIL) ;;
			*) fail "$file: bad status '$status': $line"; continue ;;
			esac
			n_lines[$file]=$((n_lines[$file] + 1))
			[[ " ${tables[*]} " == *" $table "* ]] || tables+=("$table")
			IFS=, read -r -a chain_list <<< "$chains"
			for chain in "${chain_list[@]}"; do
				i_file+=("$file")
				i_table+=("$table")
				i_chain+=("$chain")
				i_rule+=("$rule")
				i_exp+=("$exp")
				i_status+=("$status")
				i_flag+=("$flag")
				i_pos+=("")
				if [ "$status" = FAIL ]; then
					fail_list+=($((${#i_rule[@]} - 1)))
				elif [ "$flag" = REV3 ]; then
					rev3_list+=($((${#i_rule[@]} - 1)))
					i_pos[-1]=${pos[rev3 $table $chain]:-0}
					pos[rev3 $table $chain]=$((i_pos[-1] + 1))
				else
					ok_list+=($((${#i_rule[@]} - 1)))
					i_pos[-1]=${pos[$table $chain]:-0}
					pos[$table $chain]=$((i_pos[-1] + 1))
				fi
			done
		done < "$plugin_dir/$file"
	done
}

# save_all VAR [LIBDIR]: VAR = iptables-save of the tables the .t files
# use, one "table line" per user chain and rule, without comments and
# counters. Built-in chains are left out: nothing here sets their policy,
# and iptables-nft-save shows one only once it exists in the kernel. stderr
# is dropped: under the revision 1 shim, iptables warns there that CONNMARK
# "is not supported".
save_all()
{
	local -n save_all_res=$1
	local libdir=${2:-$our_libdir} text line table=""

	save_all_res=""
	text=$(XTABLES_LIBDIR=$libdir "$ipt_save" 2>/dev/null)
	while IFS= read -r line; do
		case $line in
		"*"*)
			table=${line#\*}
			[[ " ${tables[*]} " == *" $table "* ]] || table=""
			continue ;;
		"#"* | COMMIT | "") continue ;;
		:*" - "*) line=${line% \[*\]} ;;
		:*) continue ;;
		esac
		[ -z "$table" ] || save_all_res+="$table $line"$'\n'
	done <<< "$text"
}

# save_rules VAR SAVE_ALL: VAR = the rules of SAVE_ALL as "table chain rule".
save_rules()
{
	local -n save_rules_res=$1
	local table op chain rule

	save_rules_res=""
	while read -r table op chain rule; do
		[ "$op" = -A ] && save_rules_res+="$table $chain $rule"$'\n'
	done <<< "$2"
}

# nlines TEXT: the number of lines of TEXT, in $nlines_res.
nlines()
{
	local line

	nlines_res=0
	while IFS= read -r line; do
		[ -n "$line" ] && nlines_res=$((nlines_res + 1))
	done <<< "$1"
}

# print_of LINE: the print of one "-L -n" rule line, in $print_res: what
# follows the source and destination columns.
print_of()
{
	local re='^(.*)(0\.0\.0\.0/0|::/0) +(.*)$'

	print_res=$1
	[[ $1 =~ $re ]] && print_res=${BASH_REMATCH[3]}
}

# list_all VAR [LIBDIR]: VAR = "-L -n" of every table the .t files use, as
# "table chain print" lines, without the columns before the print.
list_all()
{
	local -n list_all_res=$1
	local libdir=${2:-$our_libdir} table chain text line

	list_all_res=""
	for table in "${tables[@]}"; do
		text=$(XTABLES_LIBDIR=$libdir "$ipt" -t "$table" -L -n 2>/dev/null)
		chain=""
		while IFS= read -r line; do
			case $line in
			"Chain "*) chain=${line#Chain }; chain=${chain%% *}; continue ;;
			"target "* | "" | "#"*) continue ;;
			esac
			print_of "$line"
			list_all_res+="$table $chain $print_res"$'\n'
		done <<< "$text"
	done
}

# index_rules ARRAY LINES: ARRAY["table chain k"] = text of the k-th rule
# (from 0) of that chain in LINES ("table chain text").
index_rules()
{
	local -n index=$1
	local table chain text key
	local -A count=()

	index=()
	while read -r table chain text; do
		[ -n "$chain" ] || continue
		key="$table $chain ${count[$table $chain]:-0}"
		# shellcheck disable=SC2034,SC2004 # the caller's assoc. array
		index[$key]=$text
		count[$table $chain]=$((${count[$table $chain]:-0} + 1))
	done <<< "$2"
}

# batch OP I...: iptables-restore text doing "-OP" for instances I...:
# A adds the rule, D deletes it by its save text, F flushes its chain.
batch()
{
	local op=$1 table i
	shift

	for table in "${tables[@]}"; do
		echo "*$table"
		for i in "$@"; do
			[ "${i_table[i]}" = "$table" ] || continue
			case $op in
			A) echo "-A ${i_chain[i]} ${i_rule[i]}" ;;
			D) echo "-D ${i_chain[i]} ${i_exp[i]}" ;;
			F) echo "-F ${i_chain[i]}" ;;
			esac
		done
		echo COMMIT
	done
}

# restore LIBDIR TEXT: feed TEXT to iptables-restore --noflush; on error
# print the message and the line of TEXT it names.
restore()
{
	local out line

	out=$(XTABLES_LIBDIR=$1 "$ipt_restore" --noflush 2>&1 <<< "$2") &&
		return 0
	line=$(sed -n -E 's/.*line:? ([0-9]+).*/\1/p' <<< "$out" | head -n 1)
	[ -n "$line" ] && out="$out (line $line: $(sed -n "${line}p" <<< "$2"))"
	echo "${out//$'\n'/ }"
	return 1
}

flush_all()
{
	restore "$our_libdir" "$(batch F "${ok_list[@]}" "${rev3_list[@]}" \
		"${fail_list[@]}")" >/dev/null
}

# Diagnostic dump after a failure.
dump()
{
	local table

	for table in "${tables[@]}"; do
		"$ipt" -t "$table" -v -S 2>&1 | sed "/^# Warning/d; s/^/# $table /"
	done
}

# state VAR TABLE CHAIN: VAR = the chain's save text ("-S").
state()
{
	local -n state_res=$1
	local text line

	state_res=""
	text=$("$ipt" -t "$2" -S "$3" 2>/dev/null)
	while IFS= read -r line; do
		[[ $line == "#"* ]] || state_res+=${state_res:+$'\n'}$line
	done <<< "$text"
}

# check_one I: one OK instance on its own, to find the culprit when the
# batch fails.
check_one()
{
	local i=$1 table=${i_table[$1]} chain=${i_chain[$1]} args out rc
	local empty got want

	nchecks=$((nchecks + 1))
	state empty "$table" "$chain"
	read -r -a args <<< "${i_rule[i]}"
	out=$("$ipt" -t "$table" -A "$chain" "${args[@]}" 2>&1)
	rc=$?
	state got "$table" "$chain"
	want="-A $chain ${i_exp[i]}"
	if [ "$rc" -ne 0 ] || [ "$got" != "$empty"$'\n'"$want" ]; then
		fail "$(describe "$i"): want exit 0 and '$want', got exit" \
		     "$rc and '${got#"$empty"$'\n'}' ${out//$'\n'/ }"
		dump
		"$ipt" -t "$table" -F "$chain"
		return 1
	fi
	read -r -a args <<< "${i_exp[i]}"
	out=$("$ipt" -t "$table" -D "$chain" "${args[@]}" 2>&1)
	rc=$?
	state got "$table" "$chain"
	if [ "$rc" -ne 0 ] || [ "$got" != "$empty" ]; then
		fail "$(describe "$i"): want deletion by its save text," \
		     "got: ${out//$'\n'/ }"
		dump
		"$ipt" -t "$table" -F "$chain"
		return 1
	fi
}

# check_ok_batch LIST: all OK lines of LIST (ok_list or rev3_list) in one
# restore; iptables-save must show each expected save text in its place;
# one restore deletes them all by their save text.
check_ok_batch()
{
	local -n list=$1
	local text out i key save rules n_base
	local -A got=()

	[ "${#list[@]}" -gt 0 ] || return
	text=$(batch A "${list[@]}")
	if ! out=$(restore "$our_libdir" "$text"); then
		fail "the OK lines ($1) do not restore: $out; one by one:"
		flush_all
		for i in "${list[@]}"; do
			check_one "$i"
		done
		return
	fi
	save_all save
	if [ "$1" = ok_list ]; then
		ours_save=$save
		list_all ours_list
	fi
	save_rules rules "$save"
	index_rules got "$rules"
	for i in "${list[@]}"; do
		nchecks=$((nchecks + 1))
		key="${i_table[i]} ${i_chain[i]} ${i_pos[i]}"
		[ "${got[$key]-}" = "${i_exp[i]}" ] && continue
		fail "$(describe "$i"): want '-A ${i_chain[i]} ${i_exp[i]}'," \
		     "got '-A ${i_chain[i]} ${got[$key]-}'"
	done
	save_rules text "$baseline"
	nlines "$text"
	n_base=$nlines_res
	nlines "$rules"
	if [ "$nlines_res" -ne $((${#list[@]} + n_base)) ]; then
		fail "want ${#list[@]} more rules after the OK lines ($1), got:"
		dump
	fi

	nchecks=$((nchecks + 1))
	if ! out=$(restore "$our_libdir" "$(batch D "${list[@]}")"); then
		fail "deletion of the OK lines ($1) by their save text: $out"
		flush_all
		return
	fi
	save_all save
	[ "$save" = "$baseline" ] && return
	fail "rules left after deletion by their save text ($1):"
	dump
	flush_all
}

check_ok_lines()
{
	local i

	check_ok_batch ok_list
	check_ok_batch rev3_list
}

# run_fail LIBDIR I: instance I added with LIBDIR's plugins; its exit
# status and output in $run_rc and $run_out. A rule that went in is
# flushed again, the chain as it was then in $run_got.
run_rc=0
run_out=""
run_got=""
run_fail()
{
	local args

	read -r -a args <<< "${i_rule[$2]}"
	run_out=$(XTABLES_LIBDIR=$1 "$ipt" -t "${i_table[$2]}" \
		-A "${i_chain[$2]}" "${args[@]}" 2>&1)
	run_rc=$?
	[ "$run_rc" -eq 0 ] || return 0
	state run_got "${i_table[$2]}" "${i_chain[$2]}"
	"$ipt" -t "${i_table[$2]}" -F "${i_chain[$2]}"
}

# Every FAIL line run here fails; together they leave the chains as they
# were (else each is tried again on its own to find the culprit). Our
# runs are kept in memo_rc and memo_out for check_errors.
check_fail_lines()
{
	local i key now empty

	[ "${#run_fails[@]}" -gt 0 ] || return
	for i in "${run_fails[@]}"; do
		nchecks=$((nchecks + 1))
		run_fail "$our_libdir" "$i"
		i_rc[i]=$run_rc
		i_err[i]=${run_out%%$'\n'*}
		key="${i_table[i]} ${i_chain[i]} ${i_rule[i]}"
		memo_rc[$key]=$run_rc
		memo_out[$key]=$run_out
		[ "$run_rc" -eq 0 ] || continue
		fail "$(describe "$i"): want failure, got exit 0 and" \
		     "'$(tail -n +2 <<< "$run_got")'"
	done
	nchecks=$((nchecks + 1))
	save_all now
	[ "$now" = "$baseline" ] && return
	fail "the FAIL lines changed the chains:"
	dump
	flush_all
	for i in "${run_fails[@]}"; do
		state empty "${i_table[i]}" "${i_chain[i]}"
		run_fail "$our_libdir" "$i"
		state now "${i_table[i]}" "${i_chain[i]}"
		[ "$run_rc" -eq 0 ] && now=$run_got
		[ "$now" = "$empty" ] && continue
		fail "$(describe "$i"): failed but changed the chain"
		"$ipt" -t "${i_table[i]}" -F "${i_chain[i]}"
	done
}

check_t_files()
{
	local before=$nfails file note=""

	check_ok_lines
	check_fail_lines
	[ "$nfails" -eq "$before" ] || return
	$rep || note="; FAIL lines as in $rep_group"
	for file in "${t_files[@]}"; do
		if [ "${n_lines[$file]}" -eq 0 ]; then
			fail "$file: no rule lines"
		else
			echo "PASS: $group $file (${n_lines[$file]} lines$note)"
		fi
	done
}

check_prints()
{
	local case text out got line k=0 before=$nfails
	local -a lines=()

	text="*mangle"
	for case in "${print_cases[@]}"; do
		[ -n "$rev1" ] && [[ $case == *-shift-mark* ]] && continue
		! $rev3 && [[ $case == *-dscpmark* ]] && continue
		text+=$'\n'"-A PREROUTING ${case%%|*}"
	done
	text+=$'\n'COMMIT
	if ! out=$(restore "$our_libdir" "$text"); then
		fail "print: cannot add the rules: $out"
		return
	fi
	out=$("$ipt" -t mangle -L PREROUTING -n 2>/dev/null)
	while IFS= read -r line; do
		k=$((k + 1))
		[ "$k" -ge 3 ] || continue
		print_of "$line"
		[ "$print_res" = "$line" ] || lines+=("$print_res")
	done <<< "$out"
	"$ipt" -t mangle -F PREROUTING
	k=0
	for case in "${print_cases[@]}"; do
		[ -n "$rev1" ] && [[ $case == *-shift-mark* ]] && continue
		! $rev3 && [[ $case == *-dscpmark* ]] && continue
		nchecks=$((nchecks + 1))
		got=${lines[k]-}
		k=$((k + 1))
		[ "$got" = "${case#*|}" ] && continue
		fail "print: ${case%%|*}: want '${case#*|}', got '$got'"
	done
	[ "$nfails" -eq "$before" ] &&
		echo "PASS: $group print ($k rules)"
}

# Where rep: the error cases, in mangle PREROUTING; a case that is also a
# FAIL line there is read from memo_rc and memo_out.
check_errors()
{
	local case rule want args out rc got key before=$nfails
	local re='^[a-z0-9]* v[^ ]* \([^)]*\): (.*)$'

	$rep || return 0
	for case in "${error_cases[@]}"; do
		rule=${case%%|*}
		want=${case#*|}
		[ -n "$rev1" ] && [[ $rule == *-shift-mark* ]] && continue
		! $rev3 && [[ $rule =~ --set-dscpmark\ ([^ ]*) ]] &&
			want=$(no_rev3_error "${BASH_REMATCH[1]}")
		nchecks=$((nchecks + 1))
		key="mangle PREROUTING $rule"
		if [ -n "${memo_rc[$key]+set}" ]; then
			rc=${memo_rc[$key]}
			out=${memo_out[$key]}
		else
			read -r -a args <<< "$rule"
			out=$("$ipt" -t mangle -A PREROUTING "${args[@]}" 2>&1)
			rc=$?
		fi
		got=""
		[[ ${out%%$'\n'*} =~ $re ]] && got=${BASH_REMATCH[1]}
		[ "$rc" -eq 2 ] && [ "$got" = "$want" ] && continue
		fail "error: $rule: want exit 2 and '$want', got exit $rc" \
		     "and '${out//$'\n'/ }'"
		"$ipt" -t mangle -F PREROUTING
	done
	[ "$nfails" -eq "$before" ] &&
		echo "PASS: $group error messages"
}

# probe LIBDIR: iptables' help for the connmark match and the CONNMARK
# target with LIBDIR's plugins, which loads them and picks their revisions
# (asking the kernel). Sets probe_loaded, "so path" for each libxt_*.so
# loaded (from LD_DEBUG, on stderr), and probe_help, the help of the two
# extensions.
probe()
{
	local out line re='file=([^ ]*/(libxt_[^ /]*\.so)) '
	local hre='^(CONNMARK target|connmark match) options:'
	local help=false
	local -A seen=()

	probe_loaded=""
	probe_help=""
	out=$(XTABLES_LIBDIR=$1 LD_DEBUG=files "$ipt" -m connmark \
		-j CONNMARK -h 2>"$SYNTAX_WORK/ld_debug")
	while IFS= read -r line; do
		[[ $line =~ $hre ]] && help=true
		$help && probe_help+="$line"$'\n'
	done <<< "$out"
	while IFS= read -r line; do
		[[ $line =~ $re ]] || continue
		line="${BASH_REMATCH[2]} ${BASH_REMATCH[1]}"
		[ -n "${seen[$line]-}" ] && continue
		seen[$line]=1
		probe_loaded+="$line"$'\n'
	done < "$SYNTAX_WORK/ld_debug"
}

# check_loaded OURS THEIRS: the probe_loaded of our and Debian's plugins.
check_loaded()
{
	local so path line before=$nfails

	for so in libxt_CONNMARK.so libxt_connmark.so; do
		nchecks=$((nchecks + 2))
		path=""
		while read -r line; do
			[[ $line == "$so "* ]] && path+=${path:+$'\n'}${line#"$so "}
		done <<< "$1"
		[ "$path" -ef "$repo/libxt/$so" ] ||
			fail "want $repo/libxt/$so loaded, got '$path'"
		path=""
		while read -r line; do
			[[ $line == "$so "* ]] && path+=${path:+$'\n'}${line#"$so "}
		done <<< "$2"
		[ "$path" -ef "$distro_libdir/$so" ] ||
			fail "want $distro_libdir/$so loaded for the" \
			     "differential, got '$path'"
	done
	[ "$nfails" -eq "$before" ] &&
		echo "PASS: $group plugins loaded from $repo/libxt"
}

# differ WHAT I OURS THEIRS: compare one aspect of instance I.
differ()
{
	nchecks=$((nchecks + 1))
	[ "$3" = "$4" ] && return
	fail "differential: $(describe "$2"): $1 differs:" \
	     "ours '$3', Debian's '$4'"
}

run_differential()
{
	local i key out save list before=$nfails
	local -A s_ours=() s_theirs=() l_ours=() l_theirs=()

	theirs_reach=()
	if ! [ -e "$distro_libdir/libxt_CONNMARK.so" ]; then
		echo "SKIP: $group differential: no $distro_libdir/libxt_CONNMARK.so"
		return
	fi
	if [ -z "$ours_save" ]; then
		fail "differential: the OK lines did not restore with our plugins"
	elif ! out=$(restore "$distro_libdir" "$(batch A "${ok_list[@]}")"); then
		fail "differential: the OK lines do not restore with Debian's" \
		     "plugins: $out"
	else
		save_rules out "$ours_save"
		index_rules s_ours "$out"
		index_rules l_ours "$ours_list"
		save_all save "$distro_libdir"
		save_rules out "$save"
		index_rules s_theirs "$out"
		list_all list "$distro_libdir"
		index_rules l_theirs "$list"
		flush_all
		for i in "${ok_list[@]}"; do
			key="${i_table[i]} ${i_chain[i]} ${i_pos[i]}"
			differ save "$i" "${s_ours[$key]-}" "${s_theirs[$key]-}"
			differ print "$i" "${l_ours[$key]-}" "${l_theirs[$key]-}"
		done
	fi
	for i in "${run_fails[@]}"; do
		# Debian's plugins have no revision 3 (ours names it where the
		# kernel lacks it), and accept the OURS lines
		[ "${i_flag[i]}" = REV3 ] || [ "${i_flag[i]}" = OURS ] && continue
		run_fail "$distro_libdir" "$i"
		[ "$run_rc" -eq 2 ] || theirs_reach+=("$i")
		differ exit "$i" "${i_rc[i]-}" "$run_rc"
		differ error "$i" "${i_err[i]-}" "${run_out%%$'\n'*}"
	done

	[ "$nfails" -eq "$before" ] &&
		echo "PASS: $group differential vs $distro_libdir" \
		     "(${#ok_list[@]} OK, ${#run_fails[@]} FAIL rules)"
}

# The shim must make iptables fall back to revision 1, which has no shift.
check_rev1()
{
	local out want='unknown option "--left-shift-mark"'

	nchecks=$((nchecks + 1))
	out=$("$ipt" -t mangle -A PREROUTING -j CONNMARK --save-mark \
		--left-shift-mark 1 2>&1) && "$ipt" -t mangle -F PREROUTING
	if [[ $out == *"$want"* ]]; then
		echo "PASS: $group iptables uses revision 1"
	else
		fail "want revision 1 ($want), got '${out//$'\n'/ }'"
	fi
}

# check_rev3 HELP: does iptables use revision 3 (HELP, from probe, has
# --set-dscpmark)? It must where our module is loaded, unless a shim hides
# revision 3.
check_rev3()
{
	[[ $1 == *--set-dscpmark* ]] && rev3=true
	echo "# $group: iptables uses CONNMARK revision 3: $rev3"
	[ -z "$rev1" ] && ! $rev3 && [ -e /sys/module/xt_connmark/version ] &&
		fail "our xt_connmark $(cat /sys/module/xt_connmark/version)" \
		     "is loaded, but iptables does not use CONNMARK revision 3"
}

# rev2 CMD...: CMD with the shim hiding CONNMARK revision 3.
rev2()
{
	LD_PRELOAD=$SYNTAX_SHIM SYNTAX_MAX_REV=2 "$@"
}

# check_rev2_fallback: with the kernel's revision 3 hidden by the shim,
# iptables falls back to revision 2: a shifted save works, --set-dscpmark
# is an unknown option.
check_rev2_fallback()
{
	local out got before=$nfails
	local want='-A PREROUTING -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff --left-shift-mark 1'

	nchecks=$((nchecks + 3))
	out=$(rev2 "$ipt" -j CONNMARK -h 2>/dev/null)
	[[ $out == *--set-dscpmark* ]] &&
		fail "rev2 shim: iptables still uses revision 3"
	out=$(rev2 "$ipt" -t mangle -A PREROUTING -j CONNMARK \
		--save-mark --left-shift-mark 1 2>&1)
	# listed with the shim too: iptables 1.8.9 lists only blobs of the
	# revision it picked ("[unsupported revision]" for the others)
	rev2 state got mangle PREROUTING
	[ "${got##*$'\n'}" = "$want" ] ||
		fail "rev2 shim: want '$want', got" \
		     "'$(tail -n +2 <<< "$got")' ${out//$'\n'/ }"
	"$ipt" -t mangle -F PREROUTING
	out=$(rev2 "$ipt" -t mangle -A PREROUTING -j CONNMARK \
		--set-dscpmark 0xfc000000/0x1000000 2>&1) &&
		"$ipt" -t mangle -F PREROUTING
	[[ $out == *"$(no_rev3_error 0xfc000000/0x1000000)"* ]] ||
		fail "rev2 shim: want '$(no_rev3_error 0xfc000000/0x1000000)'," \
		     "got '${out//$'\n'/ }'"
	[ "$nfails" -eq "$before" ] &&
		echo "PASS: $group iptables falls back to revision 2 without revision 3"
}

# find_rep KEY: is there a record of a namespace with KEY (the revisions'
# helps) in SYNTAX_WORK? If so rep=false, rep_group is its group and
# run_fails the FAIL instances that did not exit 2 there; else rep_file
# is where record_rep writes ours, at the end of this namespace's checks.
find_rep()
{
	local n=0 key

	run_fails=("${fail_list[@]}")
	rep_file=""
	rep_key=$1
	[ -n "${SYNTAX_WORK-}" ] || return 0
	while [ -e "$SYNTAX_WORK/rep.$n.info" ]; do
		IFS= read -r -d '' key < "$SYNTAX_WORK/rep.$n.key"
		if [ "$key" = "$1" ]; then
			{ IFS= read -r rep_group; read -r -a run_fails; } \
				< "$SYNTAX_WORK/rep.$n.info"
			rep=false
			echo "# $group: same CONNMARK and connmark revisions as" \
			     "in $rep_group, where the ${#fail_list[@]} FAIL" \
			     "lines and ${#error_cases[@]} error cases failed in" \
			     "the parser (exit 2): here only the" \
			     "${#run_fails[@]} others"
			return 0
		fi
		n=$((n + 1))
	done
	rep_file=$SYNTAX_WORK/rep.$n
}

# record_rep: where rep, the FAIL instances that did not exit 2, with our
# or with Debian's plugins.
record_rep()
{
	local i reach=("${theirs_reach[@]}")

	[ -n "$rep_file" ] || return 0
	for i in "${fail_list[@]}"; do
		[ "${i_rc[i]-2}" -eq 2 ] || reach+=("$i")
	done
	printf '%s' "$rep_key" > "$rep_file.key"
	printf '%s\n%s\n' "$group" "${reach[*]}" > "$rep_file.info"
}

# run_group BACKEND FAMILY [rev1]: all checks of one namespace, run inside
# it; with rev1, of revision 1 (under the shim).
run_group()
{
	local ours_loaded ours_help theirs_loaded theirs_help key

	ipt=iptables-$1
	[ "$2" = ipv6 ] && ipt=ip6tables-$1
	ipt_restore=$ipt-restore
	ipt_save=$ipt-save
	group="$1 $2"
	if [ -n "${3-}" ]; then
		rev1=$SYNTAX_SHIM
		group+=" rev1"
		export LD_PRELOAD=$rev1 SYNTAX_MAX_REV=1
	fi

	# One CONNMARK rule kept for the whole run keeps conntrack on in the
	# namespace; else every add and delete turns it on and off (slow).
	# Every table the .t files use is made here, before the baseline.
	if ! "$ipt_restore" --noflush >/dev/null 2>&1 <<-EOF
		*raw
		COMMIT
		*filter
		COMMIT
		*mangle
		:ctkeep - [0:0]
		-A ctkeep -j CONNMARK --save-mark
		COMMIT
	EOF
	then
		if ! "$ipt" -t mangle -S >/dev/null 2>&1 ||
		   ! "$ipt" -t raw -S >/dev/null 2>&1; then
			echo "SKIP: $group: the kernel has no $1 $2 tables"
			return "$ksft_skip"
		fi
		fail "cannot add a CONNMARK rule at all"
	fi
	[ -z "$rev1" ] || check_rev1
	probe "$our_libdir"
	ours_loaded=$probe_loaded
	ours_help=$probe_help
	probe "$distro_libdir"
	theirs_loaded=$probe_loaded
	theirs_help=$probe_help
	check_rev3 "$ours_help"
	if $rev3 && [ "$1 $2" = "legacy ipv4" ] && [ -n "${SYNTAX_SHIM-}" ]; then
		check_rev2_fallback
	fi
	check_loaded "$ours_loaded" "$theirs_loaded"

	load_t_files
	save_all baseline
	nchecks=$((nchecks + 1))
	[[ $'\n'$baseline == *$'\nmangle -A ctkeep -j CONNMARK --save-mark'* ]] ||
		fail "iptables-save does not show the ctkeep rule: '$baseline'"
	key="${rev1:+rev1 }ours:"$'\n'"$ours_help"$'\n'"Debian's:"$'\n'"$theirs_help"
	find_rep "$key"
	check_t_files
	check_prints
	check_errors
	run_differential
	$rep && record_rep
	echo "# $group: $nchecks checks"
	return "$ret"
}

# The cases of connmark.txlate: the command's words, its table and rule
# ("-A CHAIN ...", empty when it takes another form), the expected text,
# and whether it is declared to differ from Debian's plugins.
x_args=()
x_table=()
x_rule=()
x_want=()
x_deliberate=()

# The iptables release, e.g. 1.8.9 ("iptables v1.8.9 (legacy)").
ipt_release=$(iptables --version | sed -n 's/^iptables v\([0-9.]*\).*/\1/p')
# iptables-translate quotes the rule from 1.8.8 on ("nft 'add rule ...'");
# 1.8.7 prints it bare. connmark.txlate has the quoted form.
xlate_quoted=true
[[ $(iptables-translate -A INPUT -j ACCEPT 2>&1) == "nft '"* ]] ||
	xlate_quoted=false

# xlate_form RULE: the rule in this iptables-translate's form.
xlate_form()
{
	if $xlate_quoted; then
		printf "nft '%s'" "$1"
	else
		printf 'nft %s' "$1"
	fi
}

# connmark.txlate's cases. "# differs from iptables:" before a case: every
# release's Debian plugin translates it otherwise (lossily); "# differs from
# iptables R:" only release R's.
load_txlate()
{
	local cmd want deliberate=false rest table

	while IFS= read -r cmd; do
		case $cmd in
		iptables-translate* | ip6tables-translate*) ;;
		"# differs from iptables:"*)
			deliberate=true
			continue ;;
		"# differs from iptables $ipt_release:"*)
			deliberate=true
			continue ;;
		*) continue ;;
		esac
		IFS= read -r want
		if ! $xlate_quoted && [[ $want == "nft '"*"'" ]]; then
			want=${want#"nft '"}
			want="nft ${want%\'}"
		fi
		rest=${cmd#* }
		table=filter
		if [[ $rest == "-t "* ]]; then
			rest=${rest#-t }
			table=${rest%% *}
			rest=${rest#* }
		fi
		[[ $rest == "-A "* ]] || rest=""
		x_args+=("$cmd")
		x_table+=("$table")
		x_rule+=("$rest")
		x_want+=("$want")
		x_deliberate+=("$deliberate")
		deliberate=false
	done < "$plugin_dir/connmark.txlate"
}

# xlate_cli LIBDIR K: case K with iptables-translate itself, in $xlate_res,
# without trailing blanks.
xlate_cli()
{
	local args

	read -r -a args <<< "${x_args[$2]}"
	xlate_res=$(XTABLES_LIBDIR=$1 "${args[@]}" 2>&1)
	xlate_res=${xlate_res%"${xlate_res##*[![:space:]]}"}
}

# xlate_batch ARRAY LIBDIR TOOL K...: ARRAY[K] = the translation of each
# case K (all of family TOOL: iptables, ip6tables) by TOOL-restore-translate
# in one process, in iptables-translate's form: "nft 'RULE'", or "nft #
# ARGS" for a refusal (that tool prints "RULE", resp. "# -t TABLE -A ...").
# Cases it cannot take, or all when it fails or does not give one line per
# case, go through iptables-translate one by one.
# shellcheck disable=SC2034 # xb_res is the caller's array
xlate_batch()
{
	local -n xb_res=$1
	local libdir=$2 tool=$3 table k text="" line n=0 ok=true
	local -a order=() tables_x=() lines=()
	shift 3

	for k in "$@"; do
		if [ -z "${x_rule[k]}" ]; then
			xlate_cli "$libdir" "$k"
			xb_res[k]=$xlate_res
			continue
		fi
		[[ " ${tables_x[*]} " == *" ${x_table[k]} "* ]] ||
			tables_x+=("${x_table[k]}")
	done
	for table in "${tables_x[@]}"; do
		text+="*$table"$'\n'
		for k in "$@"; do
			[ -z "${x_rule[k]}" ] && continue
			[ "${x_table[k]}" = "$table" ] || continue
			text+="${x_rule[k]}"$'\n'
			order+=("$k")
		done
		text+=COMMIT$'\n'
	done
	[ "${#order[@]}" -gt 0 ] || return 0
	printf '%s' "$text" > "$SYNTAX_WORK/txlate.rules"
	text=$(XTABLES_LIBDIR=$libdir "$tool-restore-translate" \
		-f "$SYNTAX_WORK/txlate.rules" 2>&1) || ok=false
	while IFS= read -r line; do
		case $line in
		"# Translated by "* | "# Completed on "* | "add table "*) continue ;;
		esac
		lines+=("${line%"${line##*[![:space:]]}"}")
	done <<< "$text"
	[ "${#lines[@]}" -eq "${#order[@]}" ] || ok=false
	for k in "${order[@]}"; do
		line=${lines[n]-}
		n=$((n + 1))
		if ! $ok; then
			xlate_cli "$libdir" "$k"
			xb_res[k]=$xlate_res
		elif [ "$line" = "# -t ${x_table[k]} ${x_rule[k]}" ]; then
			xb_res[k]="nft # ${x_args[k]#* }"
		elif [[ $line == "#"* ]]; then
			xb_res[k]="nft $line"
		else
			xb_res[k]=$(xlate_form "$line")
		fi
	done
}

# Compare the translations with connmark.txlate, ours and Debian's.
check_txlate()
{
	local k tool theirs_too=false ncases ndiffs=0 before=$nfails
	local -a ours=() theirs=() v4=() v6=()

	group=translate
	load_txlate
	ncases=${#x_args[@]}
	for k in "${!x_args[@]}"; do
		if [[ ${x_args[k]} == ip6tables-* ]]; then
			v6+=("$k")
		else
			v4+=("$k")
		fi
	done
	[ -e "$distro_libdir/libxt_CONNMARK.so" ] && theirs_too=true
	for tool in iptables ip6tables; do
		if [ "$tool" = iptables ]; then
			set -- "${v4[@]}"
		else
			set -- "${v6[@]}"
		fi
		[ "$#" -gt 0 ] || continue
		xlate_batch ours "$our_libdir" "$tool" "$@"
		! $theirs_too || xlate_batch theirs "$distro_libdir" "$tool" "$@"
		# the command itself, on the family's first case
		xlate_cli "$our_libdir" "$1"
		[ "$xlate_res" = "${x_want[$1]}" ] ||
			fail "${x_args[$1]}: want '${x_want[$1]}', got '$xlate_res'"
	done

	for k in "${!x_args[@]}"; do
		if [ "${ours[k]}" != "${x_want[k]}" ]; then
			# the batch's form may be to blame: the command decides
			xlate_cli "$our_libdir" "$k"
			if [ "$xlate_res" != "${x_want[k]}" ]; then
				fail "${x_args[k]}: want '${x_want[k]}', got '$xlate_res'"
				continue
			fi
			echo "# translate: ${x_args[k]}: the batch gave '${ours[k]}'"
		fi
		$theirs_too || continue
		if ${x_deliberate[k]}; then
			ndiffs=$((ndiffs + 1))
			[ "${theirs[k]}" != "${ours[k]}" ] && continue
			fail "${x_args[k]}: declared to differ from Debian's, both '${ours[k]}'"
		elif [ "${theirs[k]}" != "${ours[k]}" ]; then
			fail "differential: ${x_args[k]}: ours '${ours[k]}', Debian's '${theirs[k]}'"
		fi
	done

	$xlate_quoted ||
		echo "# translate: iptables-translate $ipt_release prints the rule unquoted: connmark.txlate's cases are compared in that form"
	echo "# translate: $ndiffs cases deliberately differ from iptables $ipt_release"
	if [ "$ncases" -eq 0 ]; then
		fail "connmark.txlate: no cases"
	elif [ "$nfails" -eq "$before" ]; then
		echo "PASS: translate connmark.txlate ($ncases cases, also vs Debian)"
	fi
}

# build_shim DIR: DIR/maxrev.so, an LD_PRELOAD library that tells
# iptables-legacy the kernel has no CONNMARK revision above
# $SYNTAX_MAX_REV (legacy asks the kernel through this libxtables
# function; iptables-nft does not).
build_shim()
{
	gcc -O2 -Wall -Werror -fPIC -shared -o "$1/maxrev.so" -x c - <<-'EOF'
	#define _GNU_SOURCE
	#include <dlfcn.h>
	#include <stdint.h>
	#include <stdlib.h>
	#include <string.h>

	int xtables_compatible_revision(const char *name, uint8_t revision,
					int opt)
	{
		const char *max = getenv("SYNTAX_MAX_REV");
		int (*real)(const char *, uint8_t, int);

		if (max && strcmp(name, "CONNMARK") == 0 &&
		    revision > atoi(max))
			return 0;
		real = (int (*)(const char *, uint8_t, int))dlsym(RTLD_NEXT,
			"xtables_compatible_revision");
		return real(name, revision, opt);
	}
	EOF
}

if [ "${1-}" = --group ]; then
	if [ "$#" -lt 4 ] || [ "$(ip netns identify)" != "$4" ]; then
		echo "FAIL: --group BACKEND FAMILY NS [rev1] runs only inside NS"
		exit "$ksft_fail"
	fi
	run_group "$2" "$3" "${5-}"
	exit $?
fi

checktool "ip -V" "run ip (iproute2)"
for tool in iptables-legacy ip6tables-legacy iptables-nft ip6tables-nft \
	    iptables-legacy-restore ip6tables-legacy-restore \
	    iptables-nft-restore ip6tables-nft-restore \
	    iptables-legacy-save ip6tables-legacy-save \
	    iptables-nft-save ip6tables-nft-save \
	    iptables-translate ip6tables-translate \
	    iptables-restore-translate ip6tables-restore-translate; do
	checktool "command -v $tool" "find $tool (package iptables)"
done

if ! [ -e "$repo/libxt/libxt_CONNMARK.so" ] ||
   ! [ -e "$repo/libxt/libxt_connmark.so" ]; then
	if ! make -s -C "$repo/libxt" >/dev/null; then
		echo "FAIL: cannot build the plugins in $repo/libxt"
		exit "$ksft_fail"
	fi
fi

SYNTAX_WORK=$(mktemp -d)
export SYNTAX_WORK
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	rm -rf "$SYNTAX_WORK"
}
trap cleanup EXIT

# run_ns BACKEND FAMILY [rev1]: one group in a fresh namespace.
run_ns()
{
	setup_ns nssyntax || exit "$ksft_fail"
	ip netns exec "$nssyntax" "$BASH" "$0" --group "$1" "$2" \
		"$nssyntax" "${3-}"
	case $? in
	0) nran=$((nran + 1)) ;;
	"$ksft_skip") ;;
	*) nran=$((nran + 1)); ret=$ksft_fail ;;
	esac
	ip netns del "$nssyntax"
}

nran=0
shim=false
if command -v gcc >/dev/null && build_shim "$SYNTAX_WORK"; then
	export SYNTAX_SHIM=$SYNTAX_WORK/maxrev.so
	shim=true
fi
for backend in legacy nft; do
	for family in ipv4 ipv6; do
		run_ns "$backend" "$family"
	done
done
if ! command -v gcc >/dev/null; then
	echo "SKIP: legacy ipv4 rev1: no gcc to build the LD_PRELOAD shim"
elif ! $shim; then
	echo "FAIL: cannot build the LD_PRELOAD shim"
	ret=$ksft_fail
else
	run_ns legacy ipv4 rev1
fi

check_txlate

if [ "$ret" -eq 0 ] && [ "$nran" -eq 0 ]; then
	echo "SKIP: no backend could run the rules"
	exit "$ksft_skip"
fi
[ "$ret" -eq 0 ] &&
	echo "PASS: plugin syntax in $nran namespaces and translation"
exit "$ret"
