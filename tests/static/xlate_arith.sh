#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Every nft translation of our plugins computes what the module computes:
# tests/xlate/xlate_arith.py on XTCM_XLATE_RULES random rules (default
# 3000) of seed XTCM_XLATE_SEED (random unless given; printed), with this
# root's iptables-restore-translate and nft (nft -c, hence root: the
# kernel checks the bytecode too) against tests/xlate/kernel_ref. Ours
# must be exact; only a rule that combines two runtime values may be
# rejected, by an nft or kernel without register-to-register bitwise.
# Debian's plugins (this root's xtlibdir) are reported beside them.
# Runs on the host or in a lane's root (tests/run.sh), from a tree whose
# plugins were built against this root's libxtables (make -C libxt) and
# whose tools were built (make -C tests tools).
#
# Usage: xlate_arith.sh [LABEL]
#   LABEL  names the root in the output (default: host)
# Environment: XTCM_XLATE_RULES, XTCM_XLATE_SEED, XTCM_XLATE_INPUTS (inputs
# per rule, default 64); XTCM_XLATE_OURS, the directory of the plugins to
# judge (default: the tree's libxt: point it at a copy with a planted bug
# to see the check fail); XTCM_XLATE_DISTRO, Debian's (default: pkg-config's
# xtlibdir; ours take libxt_comment from there too).

set -u

repo=$(cd "$(dirname "$0")/../.." && pwd)
label=${1:-host}
ksft_skip=4
ours=${XTCM_XLATE_OURS:-$repo/libxt}
distro=${XTCM_XLATE_DISTRO:-$(pkg-config --variable=xtlibdir xtables 2>/dev/null)}
kref=$repo/tests/xlate/kernel_ref

for tool in nft iptables-restore-translate ip6tables-restore-translate \
	python3; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $label: no $tool"
		exit "$ksft_skip"
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: $label: nft -c needs root"
	exit "$ksft_skip"
fi
if [ ! -x "$kref" ]; then
	echo "FAIL: $label: no $kref (make -C tests tools)"
	exit 1
fi
if [ ! -e "$ours/libxt_CONNMARK.so" ] || [ ! -e "$ours/libxt_connmark.so" ]; then
	echo "FAIL: $label: no plugins in $ours (make -C libxt)"
	exit 1
fi
if [ -z "$distro" ] || [ ! -d "$distro" ]; then
	echo "FAIL: $label: no xtables directory (pkg-config xtables)"
	exit 1
fi

ipt=$(iptables-restore-translate --version 2>&1 | head -n 1)
echo "# $label: $(nft --version), $ipt, Linux $(uname -r)"
# nft -c in a network namespace of its own: no other ruleset or
# transaction in the way.
netns=()
unshare --net true 2>/dev/null && netns=(unshare --net)
exec "${netns[@]}" python3 "$repo/tests/xlate/xlate_arith.py" \
	--kernel-ref "$kref" --plugin "ours:$ours:$distro" \
	--plugin "debian:$distro"
