#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# nft translations proven by execution: every case of plugin/connmark.txlate
# and XTCM_XLATE_PROGRAMS random programs of the differential generator run
# twice on the same kernel with our module, once as iptables rules
# (iptables-restore, the program's backend and plugins) and once as their
# translation (iptables-restore-translate with the same plugins, loaded by
# nft), with the same traffic; the rule counters, the final ct mark of
# every flow (conntrack -L) and the packet and ct marks that each packet
# carried out of each hook (differential.sh's observer table) must agree.
#
# A case runs in its hook's mangle chain (the filter table's cases too),
# after rules that give every packet a packet mark and every new connection
# a ct mark: the complement of one of the case's numbers, one of them with
# random other bits, or random full-width values (3 variants, seeded by
# XTCM_DIFF_SEED), with our plugins and Debian's.
#
# Ours must be exact: a translation that behaves otherwise fails; so does a
# refusal, and a rejection by nft, except of a translation that combines
# two runtime values (a mark or the DSCP with a mark: register-to-register
# bitwise) where this nft or kernel lacks it (nftables 1.1.2, Linux 6.13:
# probed). Debian's translations are reported, one line per case: exact,
# wrong (with the first difference), refused or rejected.
#
# Environment: XTCM_XLATE_PROGRAMS (random programs, default 30), and
# differential.sh's (XTCM_DIFF_SEED, XTCM_DIFF_BATCH, ...).

set -u
XTCM_DIFF_PROGRAMS=${XTCM_XLATE_PROGRAMS:-30} XTCM_DIFF_REFERENCE=translation \
	exec bash "$(dirname "$0")/differential.sh"
