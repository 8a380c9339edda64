#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The iptables plugins under libFuzzer, ASan and UBSan (tests/fuzz). First
# the harness must reach the same verdict as tests/plugin/*.t on every rule
# there (accepted with the expected save text, or refused), with CONNMARK
# revisions 2 and 3 (one parser; the harness says the kernel has revision
# 3, so --set-dscpmark is accepted by both), IPv4 and IPv6: the fuzzing then
# really goes through the plugins' parsers. Then a fuzzing run must end
# without a crash, leak or round-trip mismatch. Runs on the host (tests/run.sh); "make fuzz" runs a
# long one.
#
# Usage: fuzz.sh [RUNS [SECONDS]]   (default 20000 executions, at most 60 s;
# 0 seconds: no limit). libFuzzer's output goes to build/fuzz/fuzz.log, a
# crashing input to build/fuzz/crash-*.

set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-20000}
secs=${2:-60}
out=$repo/build/fuzz
fuzzer=$out/plugin_fuzz
tmp=$(mktemp -d)
ret=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup()
{
	rm -rf "$tmp"
}
trap cleanup EXIT

if ! command -v clang >/dev/null; then
	echo "FAIL: clang is missing (tests/deps.sh installs it)"
	exit 1
fi
if ! make -s -C "$repo/tests/fuzz" all seeds >"$tmp/build.log" 2>&1; then
	echo "FAIL: cannot build the fuzzer:"
	cat "$tmp/build.log"
	exit 1
fi

# One file per rule of the .t files, and what the .t expects of it.
declare -A want result flag
n=0
while IFS= read -r line; do
	case $line in
	-*) ;;
	*) continue ;;
	esac
	IFS=';' read -r r w res f <<<"$line"
	n=$((n + 1))
	printf '%s' "$r" >"$tmp/rule-$n"
	[ "$w" = "=" ] && w=$r
	want[$n]=$w
	result[$n]=$res
	flag[$n]=${f:-}
done < <(cat "$repo"/tests/plugin/libxt_CONNMARK.t \
	"$repo"/tests/plugin/libxt_connmark.t)

# What the harness made of each: "rule-N REV FAMILY" -> accepted: TEXT |
# refused: MESSAGE.
declare -A got
file=
while IFS= read -r line; do
	case $line in
	"Running: "*)
		file=${line##*/}
		;;
	"CONNMARK rev "*)
		rev=${line#CONNMARK rev }
		rev=${rev%%,*}
		fam=${line#*family }
		fam=${fam%%:*}
		got["$file $rev $fam"]=${line#*: }
		;;
	esac
done < <(XTCM_FUZZ_VERBOSE=1 "$fuzzer" "$tmp"/rule-* 2>&1)

bad=0
for i in $(seq 1 "$n"); do
	rule=$(cat "$tmp/rule-$i")
	for rev in 2 3; do
		for fam in 2 10; do
			v=${got["rule-$i $rev $fam"]:-nothing}
			case ${result[$i]}:${flag[$i]}:$rev in
			FAIL:*)
				[ "${v%%:*}" = refused ] && continue
				;;
			OK:*)
				[ "$v" = "accepted: ${want[$i]}" ] && continue
				;;
			esac
			echo "FAIL: \"$rule\" (${result[$i]}${flag[$i]:+ ${flag[$i]}}) with CONNMARK rev $rev, family $fam: $v"
			bad=$((bad + 1))
		done
	done
done
if [ "$n" -lt 100 ] || [ "$bad" -ne 0 ]; then
	echo "FAIL: the harness disagrees with tests/plugin/*.t on $bad of $((n * 4)) verdicts"
	ret=1
else
	echo "PASS: the harness agrees with tests/plugin/*.t on $n rules (CONNMARK rev 2 and 3, IPv4 and IPv6)"
fi

log=$out/fuzz.log
echo "fuzzing: $runs executions (log: ${log#"$repo"/})"
make -C "$repo/tests/fuzz" run FUZZ_RUNS="$runs" FUZZ_TIME="$secs" \
	>"$log" 2>&1
rc=$?
grep -E '^(Done|stat::)|^seeds' "$log"
done_line=$(grep -m1 '^Done [0-9]* runs' "$log")
crash=$(find "$out" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 \
	-name 'leak-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 \
	-name 'oom-*' | head -n 1)
if [ "$rc" -ne 0 ] || [ -n "$crash" ] || [ -z "$done_line" ]; then
	echo "FAIL: fuzzing ended with exit $rc${crash:+, input $crash}:"
	grep -A 40 -m1 -E '^==[0-9]+==|runtime error|^(match|CONNMARK|rev) ' \
		"$log"
	if [ -n "$crash" ]; then
		echo "input (od -c):"
		od -c "$crash" | head -n 20
	fi
	ret=1
else
	echo "PASS: fuzzing: $done_line, no crash"
fi
exit "$ret"
