#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Syntax of the CONNMARK target and connmark match plugins in libxt/, as
# iptables' own extension tests check theirs. For each backend (legacy, nft)
# and family (ipv4, ipv6), in a fresh network namespace:
#  - every line of plugin/libxt_CONNMARK.t and plugin/libxt_connmark.t
#    ("rule;expected-save-or-=;OK|FAIL"), in every chain of its section:
#    OK rules are added, "-S" shows the expected save text, and they are
#    deleted by that text (it parses back to the same blob); a FAIL rule
#    exits non-zero and leaves the chains unchanged;
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
# legacy ipv4 namespace a second shim hides revision 3 from iptables.
# Then plugin/connmark.txlate with iptables-translate and ip6tables-translate,
# also against Debian's plugins.
#
# Topology: one namespace per backend and family, no traffic. The checks of
# a namespace run in one "ip netns exec" of this script (--group), and the
# OK rules go in with one iptables-restore: process start-up is what costs
# under emulation.

set -u

repo=$(cd "$(dirname "$0")/.." && pwd)
distro_libdir=$(pkg-config --variable=xtlibdir xtables 2>/dev/null) ||
	distro_libdir=/usr/lib/x86_64-linux-gnu/xtables
: "${XTABLES_LIBDIR:=$repo/libxt:$distro_libdir}"
export XTABLES_LIBDIR

# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

our_libdir=$XTABLES_LIBDIR
plugin_dir=$repo/tests/plugin
t_files=(libxt_CONNMARK.t libxt_connmark.t)
ret=0
group=""
ipt=""
ipt_restore=""
nchecks=0
nfails=0
nssyntax=""
rev1=""		# the LD_PRELOAD shim when testing revision 1
rev3=false	# iptables uses CONNMARK revision 3 (the kernel has it)

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
kernel_list=()	# OK instances that a kernel may refuse, one by one
fail_list=()	# FAIL instances
ours_save=""	# save_all and list_all with the OK batch in place
ours_list=""

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
	'-j CONNMARK --save-mark --left-shift-mark 33|CONNMARK: bad value for option "--left-shift-mark", or out of range (0-32).'
	'-j CONNMARK --restore-mark --right-shift-mark 33|CONNMARK: bad value for option "--right-shift-mark", or out of range (0-32).'
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
# Without revision 3 in the kernel, what every --set-dscpmark case gets.
no_rev3_error='unknown option "--set-dscpmark"'

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
				elif [ "$flag" = KERNEL ]; then
					kernel_list+=($((${#i_rule[@]} - 1)))
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

# save_all [LIBDIR]: "-S" of every table the .t files use, lines prefixed
# with the table. The listings drop stderr: under the revision 1 shim,
# iptables warns there that CONNMARK "is not supported".
save_all()
{
	local table libdir=${1:-$our_libdir}

	for table in "${tables[@]}"; do
		XTABLES_LIBDIR=$libdir "$ipt" -t "$table" -S 2>/dev/null |
			sed "/^#/d; s/^/$table /"
	done
}

# save_rules SAVE_ALL: its rules as "table chain rule".
save_rules()
{
	sed -n 's/^\([^ ]*\) -A \([^ ]*\) /\1 \2 /p' <<< "$1"
}

# list_all [LIBDIR]: "-L -n" of every table the .t files use, as
# "table chain print", without the columns before the print.
list_all()
{
	local table libdir=${1:-$our_libdir}

	for table in "${tables[@]}"; do
		XTABLES_LIBDIR=$libdir "$ipt" -t "$table" -L -n 2>/dev/null |
			awk -v t="$table" '/^Chain /{ c = $2; next }
				/^target |^$|^#/{ next } { print t, c, $0 }' |
			sed -E 's/^([^ ]+ [^ ]+ ).*(0\.0\.0\.0\/0|::\/0) +/\1/'
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
	restore "$our_libdir" "$(batch F "${ok_list[@]}" "${kernel_list[@]}" \
		"${rev3_list[@]}" "${fail_list[@]}")" >/dev/null
}

# Diagnostic dump after a failure.
dump()
{
	local table

	for table in "${tables[@]}"; do
		"$ipt" -t "$table" -v -S 2>&1 | sed "/^# Warning/d; s/^/# $table /"
	done
}

# state TABLE CHAIN: the chain's save text.
state()
{
	"$ipt" -t "$1" -S "$2" 2>/dev/null | sed '/^#/d'
}

# check_one I: one OK instance on its own, for KERNEL lines and to find
# the culprit when the batch fails.
check_one()
{
	local i=$1 table=${i_table[$1]} chain=${i_chain[$1]} args out rc
	local empty got want

	nchecks=$((nchecks + 1))
	empty=$(state "$table" "$chain")
	read -r -a args <<< "${i_rule[i]}"
	out=$("$ipt" -t "$table" -A "$chain" "${args[@]}" 2>&1)
	rc=$?
	got=$(state "$table" "$chain")
	# A kernel may refuse what userspace accepts (shift by 32): that is
	# not a parse error (exit 2), and it changes nothing.
	if [ "$rc" -ne 0 ] && [ "${i_flag[i]}" = KERNEL ] &&
	   [ "$rc" -ne 2 ] && [ "$got" = "$empty" ]; then
		echo "# $group: kernel refused: $(describe "$i"): ${out%%$'\n'*}"
		return 0
	fi
	want="-A $chain ${i_exp[i]}"
	if [ "$rc" -ne 0 ] || [ "$got" != "$empty"$'\n'"$want" ]; then
		fail "$(describe "$i"): want exit 0 and '$want', got exit" \
		     "$rc and '${got#"$empty"$'\n'}' ${out//$'\n'/ }"
		dump
		"$ipt" -t "$table" -F "$chain"
		return 1
	fi
	read -r -a args <<< "${i_exp[i]}"
	if ! out=$("$ipt" -t "$table" -D "$chain" "${args[@]}" 2>&1) ||
	   [ "$(state "$table" "$chain")" != "$empty" ]; then
		fail "$(describe "$i"): want deletion by its save text," \
		     "got: ${out//$'\n'/ }"
		dump
		"$ipt" -t "$table" -F "$chain"
		return 1
	fi
}

# check_ok_batch LIST: all OK lines of LIST (ok_list or rev3_list) in one
# restore; -S must show each expected save text in its place; one restore
# deletes them all by their save text.
check_ok_batch()
{
	local -n list=$1
	local baseline text out i key save
	local -A got=()

	[ "${#list[@]}" -gt 0 ] || return
	baseline=$(save_all)
	text=$(batch A "${list[@]}")
	if ! out=$(restore "$our_libdir" "$text"); then
		fail "the OK lines ($1) do not restore: $out; one by one:"
		flush_all
		for i in "${list[@]}"; do
			check_one "$i"
		done
		return
	fi
	save=$(save_all)
	if [ "$1" = ok_list ]; then
		ours_save=$save
		ours_list=$(list_all)
	fi
	index_rules got "$(save_rules "$save")"
	for i in "${list[@]}"; do
		nchecks=$((nchecks + 1))
		key="${i_table[i]} ${i_chain[i]} ${i_pos[i]}"
		[ "${got[$key]-}" = "${i_exp[i]}" ] && continue
		fail "$(describe "$i"): want '-A ${i_chain[i]} ${i_exp[i]}'," \
		     "got '-A ${i_chain[i]} ${got[$key]-}'"
	done
	if [ "$(save_rules "$save" | wc -l)" -ne \
	     $((${#list[@]} + $(save_rules "$baseline" | wc -l))) ]; then
		fail "want ${#list[@]} more rules after the OK lines ($1), got:"
		dump
	fi

	nchecks=$((nchecks + 1))
	if ! out=$(restore "$our_libdir" "$(batch D "${list[@]}")"); then
		fail "deletion of the OK lines ($1) by their save text: $out"
	elif [ "$(save_all)" != "$baseline" ]; then
		fail "rules left after deletion by their save text ($1):"
		dump
	fi
	flush_all
}

check_ok_lines()
{
	local i

	check_ok_batch ok_list
	check_ok_batch rev3_list
	for i in "${kernel_list[@]}"; do
		check_one "$i"
	done
}

# Every FAIL line fails; together they leave the chains as they were
# (else each is tried again on its own to find the culprit).
check_fail_lines()
{
	local baseline i table chain args out empty

	baseline=$(save_all)
	for i in "${fail_list[@]}"; do
		nchecks=$((nchecks + 1))
		table=${i_table[i]}
		chain=${i_chain[i]}
		read -r -a args <<< "${i_rule[i]}"
		out=$("$ipt" -t "$table" -A "$chain" "${args[@]}" 2>&1)
		i_rc[i]=$?
		i_err[i]=${out%%$'\n'*}
		if [ "${i_rc[i]}" -eq 0 ]; then
			fail "$(describe "$i"): want failure, got exit 0 and" \
			     "'$(state "$table" "$chain" | tail -n +2)'"
			"$ipt" -t "$table" -F "$chain"
		fi
	done
	nchecks=$((nchecks + 1))
	[ "$(save_all)" = "$baseline" ] && return
	fail "the FAIL lines changed the chains:"
	dump
	flush_all
	for i in "${fail_list[@]}"; do
		empty=$(state "${i_table[i]}" "${i_chain[i]}")
		read -r -a args <<< "${i_rule[i]}"
		"$ipt" -t "${i_table[i]}" -A "${i_chain[i]}" "${args[@]}" \
			>/dev/null 2>&1
		[ "$(state "${i_table[i]}" "${i_chain[i]}")" = "$empty" ] &&
			continue
		fail "$(describe "$i"): failed but changed the chain"
		"$ipt" -t "${i_table[i]}" -F "${i_chain[i]}"
	done
}

check_t_files()
{
	local before=$nfails file

	load_t_files
	check_ok_lines
	check_fail_lines
	[ "$nfails" -eq "$before" ] || return
	for file in "${t_files[@]}"; do
		if [ "${n_lines[$file]}" -eq 0 ]; then
			fail "$file: no rule lines"
		else
			echo "PASS: $group $file (${n_lines[$file]} lines)"
		fi
	done
}

# listing TABLE CHAIN: the print of the chain's rules, one per line.
listing()
{
	"$ipt" -t "$1" -L "$2" -n 2>/dev/null |
		sed -n -E '3,$s/^.*(0\.0\.0\.0\/0|::\/0) +//p'
}

check_prints()
{
	local case text out got k=0 before=$nfails
	local -a lines

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
	mapfile -t lines < <(listing mangle PREROUTING)
	"$ipt" -t mangle -F PREROUTING
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

check_errors()
{
	local case rule want args out rc got before=$nfails

	for case in "${error_cases[@]}"; do
		rule=${case%%|*}
		want=${case#*|}
		[ -n "$rev1" ] && [[ $rule == *-shift-mark* ]] && continue
		! $rev3 && [[ $rule == *-dscpmark* ]] && want=$no_rev3_error
		nchecks=$((nchecks + 1))
		read -r -a args <<< "$rule"
		out=$("$ipt" -t mangle -A PREROUTING "${args[@]}" 2>&1)
		rc=$?
		got=$(sed -n '1s/^[a-z0-9]* v[^ ]* ([^)]*): //p' <<< "$out")
		[ "$rc" -eq 2 ] && [ "$got" = "$want" ] && continue
		fail "error: $rule: want exit 2 and '$want', got exit $rc" \
		     "and '${out//$'\n'/ }'"
		"$ipt" -t mangle -F PREROUTING
	done
	[ "$nfails" -eq "$before" ] &&
		echo "PASS: $group error messages"
}

# loaded LIBDIR: "so path" for each libxt_*.so iptables loads with LIBDIR.
loaded()
{
	XTABLES_LIBDIR=$1 LD_DEBUG=files "$ipt" -t mangle -A PREROUTING \
		-m connmark --mark 0x1 -j CONNMARK --save-mark 2>&1 |
		sed -n 's/.*file=\([^ ]*\/\(libxt_[^ /]*\.so\)\) .*/\2 \1/p' |
		sort -u
	"$ipt" -t mangle -F PREROUTING
}

check_loaded()
{
	local ours theirs so path before=$nfails

	ours=$(loaded "$our_libdir")
	theirs=$(loaded "$distro_libdir")
	for so in libxt_CONNMARK.so libxt_connmark.so; do
		nchecks=$((nchecks + 2))
		path=$(sed -n "s/^$so //p" <<< "$ours")
		[ "$path" -ef "$repo/libxt/$so" ] ||
			fail "want $repo/libxt/$so loaded, got '$path'"
		path=$(sed -n "s/^$so //p" <<< "$theirs")
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
	local i key out rc args before=$nfails
	local -A s_ours=() s_theirs=() l_ours=() l_theirs=()

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
		index_rules s_ours "$(save_rules "$ours_save")"
		index_rules l_ours "$ours_list"
		out=$(save_all "$distro_libdir")
		index_rules s_theirs "$(save_rules "$out")"
		index_rules l_theirs "$(list_all "$distro_libdir")"
		flush_all
		for i in "${ok_list[@]}"; do
			key="${i_table[i]} ${i_chain[i]} ${i_pos[i]}"
			differ save "$i" "${s_ours[$key]-}" "${s_theirs[$key]-}"
			differ print "$i" "${l_ours[$key]-}" "${l_theirs[$key]-}"
		done
	fi
	for i in "${fail_list[@]}"; do
		# Debian's plugins have no revision 3
		$rev3 && [ "${i_flag[i]}" = REV3 ] && continue
		read -r -a args <<< "${i_rule[i]}"
		out=$(XTABLES_LIBDIR=$distro_libdir "$ipt" -t "${i_table[i]}" \
			-A "${i_chain[i]}" "${args[@]}" 2>&1)
		rc=$?
		[ "$rc" -eq 0 ] && "$ipt" -t "${i_table[i]}" -F "${i_chain[i]}"
		differ exit "$i" "${i_rc[i]-}" "$rc"
		differ error "$i" "${i_err[i]-}" "${out%%$'\n'*}"
	done

	[ "$nfails" -eq "$before" ] &&
		echo "PASS: $group differential vs $distro_libdir" \
		     "(${#ok_list[@]} OK, ${#fail_list[@]} FAIL rules)"
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

# check_rev3: does iptables use revision 3 (its help has --set-dscpmark)?
# It must where our module is loaded, unless a shim hides revision 3.
check_rev3()
{
	if "$ipt" -j CONNMARK -h 2>/dev/null | grep -q -e --set-dscpmark; then
		rev3=true
	fi
	echo "# $group: iptables uses CONNMARK revision 3: $rev3"
	[ -z "$rev1" ] && ! $rev3 && [ -e /sys/module/xt_connmark/version ] &&
		fail "our xt_connmark $(cat /sys/module/xt_connmark/version)" \
		     "is loaded, but iptables does not use CONNMARK revision 3"
}

# check_rev2_fallback SHIM: with the kernel's revision 3 hidden by SHIM,
# iptables falls back to revision 2: a shifted save works, --set-dscpmark
# is an unknown option.
check_rev2_fallback()
{
	local out before=$nfails
	local want='-A PREROUTING -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff --left-shift-mark 1'

	nchecks=$((nchecks + 3))
	if LD_PRELOAD=$1 "$ipt" -j CONNMARK -h 2>/dev/null |
	   grep -q -e --set-dscpmark; then
		fail "rev2 shim: iptables still uses revision 3"
	fi
	out=$(LD_PRELOAD=$1 "$ipt" -t mangle -A PREROUTING -j CONNMARK \
		--save-mark --left-shift-mark 1 2>&1)
	# listed with the shim too: iptables 1.8.9 lists only blobs of the
	# revision it picked ("[unsupported revision]" for the others)
	[ "$(LD_PRELOAD=$1 state mangle PREROUTING | tail -n 1)" = "$want" ] ||
		fail "rev2 shim: want '$want', got" \
		     "'$(LD_PRELOAD=$1 state mangle PREROUTING | tail -n +2)'" \
		     "${out//$'\n'/ }"
	"$ipt" -t mangle -F PREROUTING
	out=$(LD_PRELOAD=$1 "$ipt" -t mangle -A PREROUTING -j CONNMARK \
		--set-dscpmark 0xfc000000/0x1000000 2>&1) &&
		"$ipt" -t mangle -F PREROUTING
	[[ $out == *"$no_rev3_error"* ]] ||
		fail "rev2 shim: want '$no_rev3_error', got '${out//$'\n'/ }'"
	[ "$nfails" -eq "$before" ] &&
		echo "PASS: $group iptables falls back to revision 2 without revision 3"
}

# run_group BACKEND FAMILY [SHIM]: all checks of one namespace, run inside
# it; with SHIM, of revision 1.
run_group()
{
	ipt=iptables-$1
	[ "$2" = ipv6 ] && ipt=ip6tables-$1
	ipt_restore=$ipt-restore
	group="$1 $2"
	if [ -n "${3-}" ]; then
		rev1=$3
		group+=" rev1"
		export LD_PRELOAD=$rev1
	fi

	if ! "$ipt" -t mangle -S >/dev/null 2>&1 ||
	   ! "$ipt" -t raw -S >/dev/null 2>&1; then
		echo "SKIP: $group: the kernel has no $1 $2 tables"
		return "$ksft_skip"
	fi
	# One CONNMARK rule kept for the whole run keeps conntrack on in the
	# namespace; else every add and delete turns it on and off (slow).
	if ! "$ipt" -t mangle -N ctkeep ||
	   ! "$ipt" -t mangle -A ctkeep -j CONNMARK --save-mark; then
		fail "cannot add a CONNMARK rule at all"
	fi
	[ -z "$rev1" ] || check_rev1
	check_rev3
	if $rev3 && [ "$1 $2" = "legacy ipv4" ] && [ -n "${REV2_SHIM-}" ]; then
		check_rev2_fallback "$REV2_SHIM"
	fi
	check_loaded
	check_t_files
	check_prints
	check_errors
	run_differential
	echo "# $group: $nchecks checks"
	return "$ret"
}

# Compare iptables-translate output with connmark.txlate, ours and Debian's.
check_txlate()
{
	local cmd want args got theirs ncases=0 ndiffs=0 before=$nfails
	local deliberate=false

	group=translate
	while IFS= read -r cmd; do
		case $cmd in
		iptables-translate* | ip6tables-translate*) ;;
		"# differs from iptables:"*)
			deliberate=true
			continue ;;
		*) continue ;;
		esac
		IFS= read -r want
		ncases=$((ncases + 1))
		read -r -a args <<< "$cmd"
		got=$(XTABLES_LIBDIR=$our_libdir "${args[@]}" 2>&1 |
		      sed 's/[[:space:]]*$//')
		if [ "$got" != "$want" ]; then
			fail "$cmd: want '$want', got '$got'"
			continue
		fi
		[ -e "$distro_libdir/libxt_CONNMARK.so" ] || continue
		theirs=$(XTABLES_LIBDIR=$distro_libdir "${args[@]}" 2>&1 |
			 sed 's/[[:space:]]*$//')
		if $deliberate; then
			deliberate=false
			ndiffs=$((ndiffs + 1))
			[ "$theirs" != "$got" ] && continue
			fail "$cmd: declared to differ from Debian's, both '$got'"
		elif [ "$theirs" != "$got" ]; then
			fail "differential: $cmd: ours '$got', Debian's '$theirs'"
		fi
	done < "$plugin_dir/connmark.txlate"

	echo "# translate: $ndiffs cases deliberately differ from iptables 1.8.9"
	if [ "$ncases" -eq 0 ]; then
		fail "connmark.txlate: no cases"
	elif [ "$nfails" -eq "$before" ]; then
		echo "PASS: translate connmark.txlate ($ncases cases, also vs Debian)"
	fi
}

# build_shim DIR N: DIR/revN.so, an LD_PRELOAD library that tells
# iptables-legacy the kernel has no CONNMARK revision above N (legacy asks
# the kernel through this libxtables function; iptables-nft does not).
build_shim()
{
	gcc -O2 -Wall -Werror -fPIC -shared -DMAX_REV="$2" -o "$1/rev$2.so" \
		-x c - <<-'EOF'
	#define _GNU_SOURCE
	#include <dlfcn.h>
	#include <stdint.h>
	#include <string.h>

	int xtables_compatible_revision(const char *name, uint8_t revision,
					int opt)
	{
		int (*real)(const char *, uint8_t, int);

		if (strcmp(name, "CONNMARK") == 0 && revision > MAX_REV)
			return 0;
		real = (int (*)(const char *, uint8_t, int))dlsym(RTLD_NEXT,
			"xtables_compatible_revision");
		return real(name, revision, opt);
	}
	EOF
}

if [ "${1-}" = --group ]; then
	if [ "$#" -lt 4 ] || [ "$(ip netns identify)" != "$4" ]; then
		echo "FAIL: --group BACKEND FAMILY NS [SHIM] runs only inside NS"
		exit "$ksft_fail"
	fi
	run_group "$2" "$3" "${5-}"
	exit $?
fi

checktool "ip -V" "run ip (iproute2)"
for tool in iptables-legacy ip6tables-legacy iptables-nft ip6tables-nft \
	    iptables-legacy-restore ip6tables-legacy-restore \
	    iptables-nft-restore ip6tables-nft-restore \
	    iptables-translate ip6tables-translate; do
	checktool "command -v $tool" "find $tool (package iptables)"
done

if ! [ -e "$repo/libxt/libxt_CONNMARK.so" ] ||
   ! [ -e "$repo/libxt/libxt_connmark.so" ]; then
	if ! make -s -C "$repo/libxt" >/dev/null; then
		echo "FAIL: cannot build the plugins in $repo/libxt"
		exit "$ksft_fail"
	fi
fi

shim_dir=$(mktemp -d)
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	cleanup_all_ns
	rm -rf "$shim_dir"
}
trap cleanup EXIT

# run_ns BACKEND FAMILY [SHIM]: one group in a fresh namespace.
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
if command -v gcc >/dev/null && build_shim "$shim_dir" 2; then
	export REV2_SHIM=$shim_dir/rev2.so
fi
for backend in legacy nft; do
	for family in ipv4 ipv6; do
		run_ns "$backend" "$family"
	done
done
if ! command -v gcc >/dev/null; then
	echo "SKIP: legacy ipv4 rev1: no gcc to build the LD_PRELOAD shim"
elif ! build_shim "$shim_dir" 1; then
	echo "FAIL: cannot build the revision 1 LD_PRELOAD shim"
	ret=$ksft_fail
else
	run_ns legacy ipv4 "$shim_dir/rev1.so"
fi

check_txlate

if [ "$ret" -eq 0 ] && [ "$nran" -eq 0 ]; then
	echo "SKIP: no backend could run the rules"
	exit "$ksft_skip"
fi
[ "$ret" -eq 0 ] &&
	echo "PASS: plugin syntax in $nran namespaces and translation"
exit "$ret"
