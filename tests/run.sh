#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The test suite. On the host: unit tests, plugin build, module build with
# W=1 and sparse against every kernel flavour, shellcheck. Then, for each
# kernel series, boot Debian's kernel under QEMU with our freshly built
# module and run tests/Makefile's TEST_PROGS inside (tests/vm/guest.sh); on
# the debug kernel, its DEBUG_CHECK_PROGS. The kernels run side by side.
# One TAP line per test and per kernel, then "N passed, N failed, N skipped".
# With CI=true a skipped test fails the run.
#
# Every test counts by its exit status: a host step, a unit test binary
# (which must also print its TAP plan and as many results), a script in the
# VM, the VM itself (it must finish), its kernel log.
#
# Usage: run.sh [--demo | --host-only] [TEST...]
#   --demo       boot the first series only and run tests/demo.sh (make demo)
#   --host-only  the host part alone, no VM (make check-host): unit tests,
#                builds, static analysis, the fuzz smoke run, the packages
#                and the module builds for each kernel
# Environment: XTCM_SERIES (default "6.1 6.12 debug"; "debug" is the KASAN
# kernel, see tests/vm/fetch-kernel.sh: XTCM_DEBUG_KERNEL_DIR, else
# ../shared/debug-kernel, else make debug-kernel's; with none, the debug
# lane is one skipped test), XTCM_FLAVOURS (build-only flavours, default
# "rt-amd64"), XTCM_TEST_TIMEOUT (s, default 1800), XTCM_UNIT_TIMEOUT (s
# per unit test binary, default 600), XTCM_OUT (results and module builds,
# default tests/out), XTCM_JOBS (VMs at once, default all of them).

set -u
set -o pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
series_list=${XTCM_SERIES:-6.1 6.12 debug}
build_flavours=${XTCM_FLAVOURS-rt-amd64}
test_timeout=${XTCM_TEST_TIMEOUT:-1800}
version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' dkms.conf)
outdir=${XTCM_OUT:-$repo/tests/out}
unit_timeout=${XTCM_UNIT_TIMEOUT:-600}
demo=false
host_only=false
iptables_deb=""
case ${1:-} in
--demo)
	demo=true
	shift
	;;
--host-only)
	host_only=true
	shift
	;;
-*)
	echo "usage: run.sh [--demo | --host-only] [TEST...]" >&2
	exit 2
	;;
esac
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
	read -ra tests <<<"$(make -s -C tests print-TEST_PROGS)"
	read -ra debug_tests <<<"$(make -s -C tests print-DEBUG_CHECK_PROGS)"
else
	debug_tests=("${tests[@]}")
fi
read -ra debug_env <<<"$(make -s -C tests print-DEBUG_ENV)"

count=0
passed=0
failed=0
skipped=0

# result RC NAME [LOG]: one TAP line; RC 0 pass, 4 skip, another number a
# failure with that exit status, a word (fail) a failure that has none. A
# failure shows the end of LOG.
result()
{
	local rc=$1 name=$2 log=${3:-}

	count=$((count + 1))
	case $rc in
	0)
		passed=$((passed + 1))
		echo "ok $count - $name"
		;;
	4)
		skipped=$((skipped + 1))
		echo "ok $count - $name # SKIP $(grep -m1 '^SKIP' "$log" 2>/dev/null)"
		;;
	*)
		failed=$((failed + 1))
		if [[ $rc =~ ^[0-9]+$ ]]; then
			echo "not ok $count - $name (exit $rc)"
		else
			echo "not ok $count - $name"
		fi
		[ -n "$log" ] && [ -f "$log" ] && tail -n 40 "$log" | sed 's/^/#   /'
		;;
	esac
}

# run_logged NAME CMD...: run CMD on the host, one result line for it.
run_logged()
{
	local name=$1 log rc
	shift

	log=$outdir/host/$(echo "$name" | tr -c 'A-Za-z0-9._-' _).log
	"$@" >"$log" 2>&1
	rc=$?
	result "$rc" "$name" "$log"
	return "$rc"
}

# unit_tests: every binary of tests/Makefile's UNIT_TESTS, each under
# a timeout: every TAP result line counts, and one more line per binary
# checks the binary itself: its plan ("1..N"), as many results as planned,
# and exit status 0. A crash (an ASan report), an abort
# or a non-zero exit fails that line, whatever the lines before it said.
unit_tests()
{
	local bin name log rc line plan n why
	local -a bins lines

	run_logged "unit: build" make -C tests unit || return
	read -ra bins <<<"$(make -s -C tests print-UNIT_TESTS)"
	if [ ${#bins[@]} -eq 0 ]; then
		result fail "unit: tests/Makefile lists no UNIT_TESTS"
		return
	fi
	for bin in "${bins[@]}"; do
		name=${bin##*/}
		log=$outdir/host/$name.log
		# A subshell: bash's "Aborted" for a crash goes to the log.
		(timeout "$unit_timeout" "tests/$bin"; exit $?) >"$log" 2>&1
		rc=$?
		mapfile -t lines <"$log"
		plan=""
		n=0
		for line in "${lines[@]}"; do
			case $line in
			"ok "*)
				n=$((n + 1))
				result 0 "unit: $name: ${line#ok * - }"
				;;
			"not ok "*)
				n=$((n + 1))
				result fail "unit: $name: ${line#not ok * - }" "$log"
				;;
			1..*)
				[ -z "$plan" ] && [[ ${line#1..} =~ ^[0-9]+$ ]] &&
					plan=${line#1..}
				;;
			esac
		done
		why=""
		if [ "$rc" -eq 124 ]; then
			why="timed out after $unit_timeout s"
		elif [ "$rc" -gt 128 ]; then
			why="killed by SIG$(kill -l "$((rc - 128))")"
		elif [ "$rc" -ne 0 ]; then
			why="exit $rc"
		fi
		if [ -z "$plan" ]; then
			why+="${why:+, }no TAP plan (1..N)"
		elif [ "$n" -ne "$plan" ]; then
			why+="${why:+, }$n results, plan 1..$plan"
		fi
		if [ -z "$why" ]; then
			result 0 "unit: $name: exit 0, $n of $n planned results"
		else
			result fail "unit: $name: $why" "$log"
		fi
	done
}

# build_module SERIES FLAVOUR: fetch the kernel and build our module with W=1
# and sparse; a warning fails. Sets krel.
build_module()
{
	local log=$outdir/host/fetch-$1-$2.log name="fetch Debian $1 $2 kernel"
	local rc

	[ "$1" = debug ] && name="fetch the debug kernel (KASAN, lockdep, kmemleak, UBSAN)"
	krel=$(tests/vm/fetch-kernel.sh "$1" "$2" 2>"$log")
	rc=$?
	if [ "$rc" -ne 0 ] || [ -z "$krel" ]; then
		# 4: no debug kernel anywhere, a skip that says how to get one.
		[ "$rc" -eq 4 ] || rc=1
		result "$rc" "$name" "$log"
		return 1
	fi
	log=$outdir/host/build-$krel.log
	name="build: module for $krel, W=1 C=1, no warnings"
	rm -rf "$outdir/build/$krel"
	if ! make module KDIR="$repo/.cache/kernels/$krel/root/usr/src/linux-headers-$krel" \
		MODULE_DIR="$outdir/build/$krel" W=1 C=1 >"$log" 2>&1; then
		result 1 "$name" "$log"
		return 1
	fi
	grep 'warning:' "$log" >"$log.warnings"
	result "$([ ! -s "$log.warnings" ]; echo $?)" "$name" "$log.warnings"
}

# selected TEST: TEST is among the tests to run.
selected()
{
	local t

	for t in "${tests[@]}"; do
		[ "$t" = "$1" ] && return 0
	done
	return 1
}

# deb_packages: "make deb" into $outdir/deb, which the VM's install_deb.sh
# installs, and lintian on the result.
deb_packages()
{
	rm -rf "$outdir/deb"
	run_logged "deb: make deb (xt-connmark-dkms, xtables-connmark-plugins)" \
		make deb DEB_OUT="$outdir/deb" || return
	run_logged "deb: lintian --pedantic, no error, warning or info" \
		lintian --pedantic --display-info --fail-on error,warning,info \
		"$outdir"/deb/*.changes
}

# fetch_iptables_deb: the package of the installed iptables, which the
# install tests reinstall in the VM (an iptables upgrade must keep our
# plugins). Sets iptables_deb.
# shellcheck disable=SC2317 # called through run_logged
fetch_iptables_deb()
{
	local ver arch

	ver=$(dpkg-query -W -f '${Version}' iptables) || return
	arch=$(dpkg-query -W -f '${Architecture}' iptables)
	iptables_deb=$repo/.cache/debs/iptables_${ver//:/%3a}_$arch.deb
	[ -f "$iptables_deb" ] && return
	mkdir -p "$repo/.cache/debs"
	(cd "$repo/.cache/debs" && apt-get download "iptables=$ver") &&
		[ -f "$iptables_deb" ]
}

# write_job SERIES DIR: the job for tests/vm/guest.sh, and the list of its
# tests in DIR/tests. The tests' knobs (XTCM_LIFECYCLE_CYCLES and the like)
# reach the guest from the host's environment; on the debug kernel,
# tests/Makefile's DEBUG_ENV gives the shortened defaults.
write_job()
{
	local t assignment
	local -a job_tests=("${tests[@]}")

	[ "$1" = debug ] && job_tests=("${debug_tests[@]}")
	printf '%s\n' "${job_tests[@]}" >"$2/tests"
	{
		if [ "$1" = debug ]; then
			for assignment in "${debug_env[@]}"; do
				printf 'export %s\n' "$assignment"
			done
		fi
		tests/vm/job-env.sh "$outdir/build/$krel/kmod/xt_connmark.ko" \
			"$version"
		printf 'export XTCM_DEB_DIR=%q\n' "$outdir/deb"
		printf 'export XTCM_IPTABLES_DEB=%q\n' "$iptables_deb"
		printf 'XTCM_TEST_TIMEOUT=%q\n' "$test_timeout"
		echo 'job()'
		echo '{'
		for t in "${job_tests[@]}"; do
			printf '\trun_test %q bash %q\n' "$t" "$t"
		done
		echo '}'
	} >"$2/job.sh"
}

# vm_boot SERIES KREL: boot the kernel with the job; no output (the VMs of
# several kernels run at once, their results are read afterwards).
vm_boot()
{
	local dir=$outdir/$2 vm_timeout

	vm_timeout=$(($(wc -l <"$dir/tests") * test_timeout + 120))
	if [ "$1" = debug ]; then
		# KASAN needs memory; ACPI's PCI routing times out under TCG.
		# 4-level paging: with -cpu max's LA57, 6.1's KASAN once reported
		# a wild access on an irq_desc lock taken by an interrupt during
		# identify_cpu(), long before any module (see README).
		VM_MEM=3072 VM_APPEND="pci=noacpi no5lvl" tests/vm/run-vm.sh "$2" \
			"$dir" "$vm_timeout" >"$dir/console.log" 2>&1
	else
		tests/vm/run-vm.sh "$2" "$dir" "$vm_timeout" \
			>"$dir/console.log" 2>&1
	fi
}

# vm_report KREL: turn the guest's results into lines.
vm_report()
{
	local krel=$1 dir=$outdir/$1 rc name t

	result "$([ -f "$dir/finished" ]; echo $?)" "$krel: VM booted and finished" \
		"$dir/console.log"
	while read -r rc name; do
		result "$rc" "$krel: $name" "$dir/$name.log"
		$demo && [ "$name" != load_module ] && cat "$dir/$name.log"
	done < <(cat "$dir/results" 2>/dev/null)
	while read -r t; do
		grep -q " $t\$" "$dir/results" 2>/dev/null ||
			result 1 "$krel: $t (no result: the VM stopped early)" "$dir/console.log"
	done <"$dir/tests"
	# A subshell: lib.sh is the tests' library, only its pattern is wanted.
	(source tests/lib.sh && grep -E "$KERNEL_SPLATS" "$dir/dmesg.txt") \
		>"$dir/splats.txt" 2>/dev/null
	[ -f "$dir/dmesg.txt" ] && [ ! -s "$dir/splats.txt" ]
	result $? "$krel: kernel log has no WARNING/BUG/Oops/Call Trace" "$dir/splats.txt"
	if [ -f "$dir/kmemleak.txt" ]; then
		[ ! -s "$dir/kmemleak.txt" ]
		result $? "$krel: kmemleak found no leak" "$dir/kmemleak.txt"
	fi
	$demo || sed "s/^/# $krel: /" "$dir/timing" 2>/dev/null
}

mkdir -p "$outdir/host"
if ! $demo; then
	echo "TAP version 13"
	unit_tests
	run_logged "build: iptables plugins" make -C libxt
	run_logged "build: test tools (tests/hostile)" make -C tests tools
	run_logged "cppcheck: libxt/" cppcheck --enable=warning,style \
		--error-exitcode=1 --quiet -I include -I kmod libxt/
	run_logged "clang-tidy: libxt/ tests/fuzz/" tests/static/clang_tidy.sh
	run_logged "fuzz: plugins, 20000 runs under libFuzzer, ASan, UBSan" \
		tests/static/fuzz.sh 20000
	run_logged "checkpatch --strict: kmod/ include/" tests/static/checkpatch.sh
	run_logged "shellcheck: tests" shellcheck -x tests/*.sh tests/*/*.sh .ci/run
	run_logged "shellcheck: initramfs init (busybox sh)" \
		shellcheck -s sh tests/vm/initramfs-init
	# Only for the VM tests that use them.
	selected install_deb.sh && deb_packages
	if selected install_plugins.sh || selected install_deb.sh; then
		run_logged "fetch: the installed iptables package (for the VM)" \
			fetch_iptables_deb
	fi
else
	make -s -C libxt >"$outdir/host/plugins.log" 2>&1 ||
		result 1 "build: iptables plugins" "$outdir/host/plugins.log"
	series_list=${series_list%% *}
	tests=(demo.sh)
	debug_tests=(demo.sh)
fi

# Build and check on the host, then boot the kernels, up to XTCM_JOBS VMs
# at once (each VM's TCG runs in one host thread).
vm_series=()
vm_krels=()
for series in $series_list; do
	if ! $demo && [ "$series" != debug ]; then
		for flavour in $build_flavours; do
			build_module "$series" "$flavour"
		done
	fi
	build_module "$series" amd64 || continue
	$demo || run_logged "refusals: $krel without CONFIG_NF_CONNTRACK_MARK, with CONNMARK built in" \
		tests/static/kernel_refusals.sh "$krel"
	$host_only && continue
	rm -rf "${outdir:?}/$krel"
	mkdir -p "$outdir/$krel"
	write_job "$series" "$outdir/$krel"
	vm_series+=("$series")
	vm_krels+=("$krel")
done
jobs_max=${XTCM_JOBS:-${#vm_krels[@]}}
for i in "${!vm_krels[@]}"; do
	while [ "$(jobs -pr | wc -l)" -ge "$jobs_max" ]; do
		wait -n
	done
	vm_boot "${vm_series[$i]}" "${vm_krels[$i]}" &
done
wait
for krel in "${vm_krels[@]}"; do
	vm_report "$krel"
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || exit 1
if [ "$skipped" -gt 0 ] && [ "${CI:-}" = true ]; then
	echo "CI: skipped tests count as failures"
	exit 1
fi
exit 0
