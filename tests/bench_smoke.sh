#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Smoke run of the forwarding benchmark (bench/harness.sh, make bench): the
# same code with tiny durations, one round, 1000 flows, 3 classification
# rules with and without the shortcut. No timing is asserted. In each
# configuration at least half of the datagrams sent must have reached the
# server (its veth0 counter); the CONNMARK configurations must have run with
# the module they name (ours, then Debian's in-tree one); the memory
# measurement (conntrack only, ours) must have made one conntrack entry per
# flow; and our module must be loaded again at the end.
#
#   nsclient veth0 -- veth0 nsrouter veth1 -- veth0 nsserver

set -u
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR/.. source=bench/harness.sh
source "$REPO_DIR/bench/harness.sh"

bench_require_tools

trap bench_cleanup EXIT

# flows, sweep flows, rule counts, rounds, ms, warm-up ms, memory flows
# and configurations
bench_run 1000 1000 3 1 100 0 1000 "ct ours-sc-3"
if bench_check; then
	echo "PASS: bench harness smoke run"
	exit "$ksft_pass"
fi
exit "$ksft_fail"
