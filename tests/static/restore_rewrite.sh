#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# libxt/xtables-connmark-restore's revision 2 form of a --set-dscpmark rule
# sets the ct mark that revision 3 sets: XTCM_REWRITE_RULES random rules
# (default 200; every shift of the dscpmask, a full-width random statemask
# outside it, some 0), each in an iptables-save file between other tables,
# are rewritten by the tool against an iptables-restore stand-in whose
# --test refuses revision 3 and which records each table it is given. For
# each rule, on 16 random (ct mark, DSCP) pairs, the rule of the chain that
# matches the DSCP is applied with revision 2's --set-xmark arithmetic, and
# the result must be revision 3's, both from tests/xlate/kernel_ref (the
# module's connmark_math.h). Also: each of the 64 DSCP values has exactly
# one rule, the jump keeps the rule's own matches, every table is handed
# over once, in the file's order, and one that fails does not stop the next.
#
# Usage: restore_rewrite.sh (make -C tests tools first, for kernel_ref)
# Environment: XTCM_REWRITE_RULES, XTCM_REWRITE_SEED (random unless given;
# printed), XTCM_REWRITE_TOOL (default libxt/xtables-connmark-restore: point
# it at a copy with a planted bug to see the check fail).

set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
kref=$repo/tests/xlate/kernel_ref
tool=${XTCM_REWRITE_TOOL:-$repo/libxt/xtables-connmark-restore}
rules=${XTCM_REWRITE_RULES:-200}
seed=${XTCM_REWRITE_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$seed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "seed $seed, $rules rules"
if [ ! -x "$kref" ]; then
	echo "FAIL: no $kref: make -C tests tools"
	exit 1
fi

# A stand-in for iptables-restore: --test refuses (no revision 3); a table
# is written to the next numbered file, and one with -j FAIL_ME fails.
mkdir "$work/bin"
cat >"$work/bin/iptables-restore" <<'EOF'
#!/bin/sh
if [ "$1" = --test ]; then
	cat >/dev/null
	exit 1
fi
n=$(find "$STANDIN_OUT" -name 'table.*' | wc -l)
cat >"$STANDIN_OUT/table.$n"
! grep -q -- '-j FAIL_ME' "$STANDIN_OUT/table.$n" || {
	echo "iptables-restore: line 2 failed" >&2
	exit 1
}
EOF
chmod +x "$work/bin/iptables-restore"

rand32()
{
	echo $(((RANDOM << 17 ^ RANDOM << 2 ^ RANDOM) & 0xffffffff))
}

fail=0
kref_in=$work/kref.in
: >"$kref_in"
expected=$work/expected
: >"$expected"
for ((i = 0; i < rules; i++)); do
	shift_bits=$((i % 27))
	dscpmask=$((0x3f << shift_bits))
	statemask=$(($(rand32) & ~dscpmask & 0xffffffff))
	[ $((i % 9)) -eq 0 ] && statemask=0
	matches="-A FORWARD -i lan$i -p udp -m udp --dport $((RANDOM % 65536))"
	out=$work/out.$i
	mkdir "$out"
	printf '%s\n' '*raw' ':PREROUTING ACCEPT [0:0]' '-A PREROUTING -j FAIL_ME' \
		'COMMIT' '*mangle' ':FORWARD ACCEPT [0:0]' \
		"$(printf '%s -j CONNMARK --set-dscpmark 0x%x/0x%x' "$matches" \
			"$dscpmask" "$statemask")" 'COMMIT' '*filter' \
		':INPUT DROP [0:0]' '-A INPUT -j ACCEPT' 'COMMIT' >"$work/rules.$i"
	STANDIN_OUT=$out PATH=$work/bin:$PATH "$tool" "$work/rules.$i" \
		>/dev/null 2>"$work/err.$i"
	rc=$?
	if [ "$rc" -ne 1 ] || [ "$(find "$out" -name 'table.*' | wc -l)" -ne 3 ] ||
		! grep -qx -- '-A INPUT -j ACCEPT' "$out/table.2" ||
		! grep -q 'table raw not loaded' "$work/err.$i"; then
		echo "FAIL: rule $i: want exit 1, 3 tables in order, raw's failure named; got exit $rc:"
		cat "$work/err.$i"
		fail=1
		continue
	fi
	chain=$(sed -n "s/^$matches -j \(CONNMARK-DSCP-[0-9]*\)$/\1/p" "$out/table.1")
	if [ -z "$chain" ] || ! grep -qx ":$chain - \[0:0\]" "$out/table.1"; then
		echo "FAIL: rule $i: no declared chain and jump with the rule's matches in:"
		cat "$out/table.1"
		fail=1
		continue
	fi
	declare -A xmark=()
	while read -r dscp value mask; do
		xmark[$((dscp))]+="$value $mask;"
	done < <(sed -n "s/^-A $chain -m dscp --dscp \(0x[0-9a-f]*\) -j CONNMARK --set-xmark \(0x[0-9a-f]*\)\/\(0x[0-9a-f]*\)$/\1 \2 \3/p" \
		"$out/table.1")
	for ((dscp = 0; dscp < 64; dscp++)); do
		if [[ ${xmark[$dscp]:-} != *\;* ]] || [[ ${xmark[$dscp]#*;} == *\;* ]]; then
			echo "FAIL: rule $i: DSCP $dscp has rules '${xmark[$dscp]:-}', want one"
			fail=1
		fi
	done
	for ((k = 0; k < 16; k++)); do
		ct=$(rand32)
		dscp=$((RANDOM % 64))
		read -r value mask <<<"${xmark[$dscp]%;}"
		# revision 3 (mode SET, func DSCP), then revision 2's --set-xmark
		printf 't 0 2 %x %x 0 0 %x %x 0 %x\n' "$dscpmask" "$statemask" \
			"$shift_bits" "$ct" $((dscp << 2)) >>"$kref_in"
		printf 't 0 1 %x %x 0 0 0 %x 0 0\n' "$((value))" "$((mask))" \
			"$ct" >>"$kref_in"
		printf 'rule %d: ct 0x%x DSCP %d: --set-dscpmark 0x%x/0x%x against --set-xmark %s/%s\n' \
			"$i" "$ct" "$dscp" "$dscpmask" "$statemask" "$value" "$mask" >>"$expected"
	done
	unset xmark
done
if ! "$kref" <"$kref_in" >"$work/kref.out"; then
	echo "FAIL: kernel_ref"
	exit 1
fi
wrong=$(paste -d ' ' - - <"$work/kref.out" | paste -d ' ' - "$expected" |
	awk '$1 != $3 { print "FAIL: " substr($0, index($0, "rule")) ": ct 0x" $1 " against 0x" $3; n++ }
	END { exit n > 0 }') || fail=1
[ -n "$wrong" ] && head -n 20 <<<"$wrong"
checked=$(wc -l <"$expected")
if [ "$fail" -eq 0 ]; then
	echo "PASS: $rules --set-dscpmark rules, $checked (ct mark, DSCP) pairs: the revision 2 form sets revision 3's ct mark"
fi
exit "$fail"
