#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench: build the sender, the iptables plugins and our module (for a
# lane of another release than the host's, tests/vm/lane.sh, in that
# release's root, whose userland the guest then runs), then for each lane
# boot Debian's kernel (tests/vm/run-vm.sh, the job
# format of tests/run.sh, without its host checks) and run tests/bench.sh
# inside; turn its log into bench/results/<kernel>.md and <kernel>.png
# (bench/report.py). One kernel at a time.
#
# Method: the guest runs under QEMU's -icount shift=0,align=off,sleep=off
# (BENCH_QEMU_OPTS). Its clock then advances by 1 ns per executed guest
# instruction, whatever the host does, and jumps over idle time to the next
# timer (sleep=off). A sample of 200 "ms" is 2*10^8 guest instructions, and
# packets per second are packets per 10^9 instructions: the per-packet
# instruction cost of the whole path (sender, router, server) under TCG.
# The numbers repeat to within a few percent on a loaded host, where
# wall-clock rates under TCG swung tenfold. They are meaningful as ratios
# between configurations, not as hardware throughput: TCG counts
# instructions, not cycles (no caches, no branch prediction, every
# instruction costs the same). -icount also makes TCG single-threaded
# (run-vm.sh uses one thread anyway). The guest gets one vCPU
# (BENCH_CPUS): under -icount Debian's 6.1 kernel hangs bringing up a
# second one, and with one TCG thread a second vCPU adds no capacity.
#
# Environment: XTCM_SERIES (the lanes, default "6.1 6.12 sid"), XTCM_OUT (module builds
# and raw logs, default bench/out), BENCH_RESULTS (default bench/results),
# BENCH_TIMEOUT (host seconds per kernel, default 2400), BENCH_QEMU_OPTS
# (default the -icount above; empty: wall-clock time), BENCH_CPUS (guest
# vCPUs, default 1), XTCM_BENCH_* (the parameters of tests/bench.sh, for
# trial runs).

set -u
set -o pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
# shellcheck source-path=SCRIPTDIR/.. source=tests/vm/lane.sh
source tests/vm/lane.sh
series_list=${XTCM_SERIES:-6.1 6.12 sid}
out=${XTCM_OUT:-$repo/bench/out}
results=${BENCH_RESULTS:-$repo/bench/results}
qemu_opts=${BENCH_QEMU_OPTS-"-icount shift=0,align=off,sleep=off"}
timeout_s=${BENCH_TIMEOUT:-2400}
cpus=${BENCH_CPUS:-1}
version=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"$/\1/p' dkms.conf)
ret=0

# write_job KREL DIR: tests/vm/guest.sh's job: tests/bench.sh with our
# freshly built module, the XTCM_* variables of the environment.
write_job()
{
	echo bench.sh >"$2/tests"
	{
		tests/vm/job-env.sh "$out/build/$1/kmod/xt_connmark.ko" "$version"
		# Guest seconds: under -icount the guest's clock jumps over
		# every idle wait and runs ahead of the host's; the host's
		# timeout (run-vm.sh) is the one that counts.
		printf 'XTCM_TEST_TIMEOUT=%q\n' "$((timeout_s * 100))"
		printf 'job()\n{\n\trun_test bench.sh bash bench.sh\n}\n'
	} >"$2/job.sh"
}

make -s -C bench sender || exit 1
make -s -C libxt >/dev/null || exit 1
mkdir -p "$out" "$results"
for series in $series_list; do
	# A lane of another release: its root, and a tree built there.
	root=$(lane_root "$series") || {
		echo "bench: unknown lane $series (tests/vm/lane.sh)"
		exit 1
	}
	src=$repo
	if [ "$root" != / ]; then
		src=$out/lanes/$(lane_release "$series")/src
		if ! tests/vm/mkroot.sh "$(lane_release "$series")" >/dev/null ||
			! lane_tree "$series" "$src" >"$out/lane-$series.log" 2>&1; then
			cat "$out/lane-$series.log"
			exit 1
		fi
	fi
	krel=$(tests/vm/fetch-kernel.sh "$series" amd64) || exit 1
	cmd="XTCM_SERIES=$series make bench"
	load_start=$(cut -d' ' -f1-3 /proc/loadavg)
	vms_start=$(pgrep -c qemu-system)
	start=$(date +%s)
	rm -rf "${out:?}/$krel" "$out/build/$krel"
	mkdir -p "$out/$krel"
	if ! lane_run --user "$root" make -s -C "$src" module \
		KDIR="$repo/.cache/kernels/$krel/root/usr/src/linux-headers-$krel" \
		MODULE_DIR="$out/build/$krel" >"$out/$krel/build.log" 2>&1; then
		cat "$out/$krel/build.log"
		ret=1
		continue
	fi
	write_job "$krel" "$out/$krel"
	echo "bench: $krel under QEMU ${qemu_opts:-(wall clock)}, log in $out/$krel"
	lane_vm_env "$root" "$src" "$out"
	VM_QEMU_OPTS=$qemu_opts VM_CPUS=$cpus tests/vm/run-vm.sh "$krel" \
		"$out/$krel" "$timeout_s" >"$out/$krel/console.log" 2>&1
	log=$out/$krel/bench.sh.log
	cat "$out/$krel/results" 2>/dev/null
	grep -E '^(FAIL|SKIP)' "$log" 2>/dev/null
	if ! grep -qx '0 bench.sh' "$out/$krel/results" 2>/dev/null; then
		echo "bench: $krel: bench.sh did not pass"
		ret=1
	fi
	if ! grep -q '^SAMPLE' "$log" 2>/dev/null; then
		echo "bench: no samples in $log"
		tail -n 20 "$out/$krel/console.log"
		ret=1
		continue
	fi
	method="guest clock: QEMU ${qemu_opts:-without -icount (wall clock)}"
	[ -n "$qemu_opts" ] && cmd="$cmd    # bench/run.sh: $qemu_opts"
	conditions="host $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' \
/proc/cpuinfo | head -n 1)), shared: load average (1/5/15 min) \
$load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; \
other QEMU processes: $vms_start at the start, $(pgrep -c qemu-system) at \
the end; guest $cpus vCPU(s) on one TCG thread, 2 GiB; $method; wall \
time $(($(date +%s) - start)) s (build, boot, benchmark), \
$(date -u +%Y-%m-%dT%H:%MZ)."
	python3 bench/report.py "$log" "$krel" "$results" "$cmd" \
		"$conditions" "$qemu_opts" || ret=1
	cp "$log" "$results/$krel.log"
	echo "bench: $results/$krel.md"
done
exit "$ret"
