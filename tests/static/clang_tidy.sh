#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# clang-tidy, with the checks of the top .clang-tidy (where each disabled
# check says why), on the iptables plugins (libxt/) and the fuzz harness
# (tests/fuzz/), each compiled as its Makefile compiles it. Any finding
# fails. Runs on the host (tests/run.sh).

set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
ret=0

if ! command -v clang-tidy >/dev/null; then
	echo "FAIL: clang-tidy is missing (tests/deps.sh installs it)"
	exit 1
fi
cd "$repo" || exit 1
read -ra xt_cflags <<<"$(make -s -C libxt print-XT_CFLAGS) $(make -s -C libxt print-XT_CPPFLAGS)"

# tidy FILE CFLAGS...: clang-tidy on FILE, one result line.
tidy()
{
	local file=$1 out
	shift

	if out=$(clang-tidy --quiet "$file" -- -Wall -Wextra "$@" 2>&1); then
		echo "PASS: clang-tidy $file"
	else
		echo "FAIL: clang-tidy $file:"
		echo "$out"
		ret=1
	fi
}

for file in libxt/libxt_*.c; do
	name=$(basename "$file" .c)
	tidy "$file" -I include -I kmod "${xt_cflags[@]}" -DXTABLES_INTERNAL \
		-D_INIT="${name}_init"
done
tidy tests/fuzz/plugin_fuzz.c "${xt_cflags[@]}"
exit "$ret"
