#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The full forwarding benchmark (make bench, bench/run.sh; not part of make
# check, which runs bench_smoke.sh): bench/harness.sh with the parameters
# below. Its log is the raw data bench/report.py turns into
# bench/results/<kernel>.md. bench/run.sh boots the guest with QEMU's
# -icount, so the durations below are instruction-time (1 ns per guest
# instruction), not host time; XTCM_BENCH_* override them (short trial
# runs).

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR/.. source=bench/harness.sh
source "$REPO_DIR/bench/harness.sh"

bench_require_tools

trap bench_cleanup EXIT

# flows, sweep flows, rule counts, rounds, ms, warm-up ms, memory flows
# and configurations
bench_run "${XTCM_BENCH_FLOWS:-1000 100000}" "${XTCM_BENCH_SWEEP_FLOWS:-1000}" \
	"${XTCM_BENCH_SWEEP_N:-1 10 50 200}" "${XTCM_BENCH_REPS:-5}" \
	"${XTCM_BENCH_MS:-200}" "${XTCM_BENCH_WARM_MS:-20}" \
	"${XTCM_BENCH_MEM_FLOWS:-100000}" \
	"${XTCM_BENCH_MEM_CONFIGS-ct ours-sc-3 intree-sc-3 nft-sc-3}"
bench_check || exit "$ksft_fail"
echo "PASS: benchmark complete"
exit "$ksft_pass"
