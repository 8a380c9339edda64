/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xtables_compat.h - libxtables version compatibility for the plugins
 *
 * The only file that tests XTCM_XTABLES_VERSION, libxtables' release as
 * pkg-config reports it (1.8.7 is 10807, see xtables.mk): the soname and
 * XTABLES_VERSION_CODE stay 12 across every release the plugins build
 * against (Debian 11's 1.8.7 to sid's 1.8.13).
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#ifndef _XTABLES_CONNMARK_COMPAT_H
#define _XTABLES_CONNMARK_COMPAT_H

#include <stdint.h>
#include <xtables.h>

#ifndef XTCM_XTABLES_VERSION
#error "XTCM_XTABLES_VERSION is not set: build with libxt/xtables.mk"
#endif

#if XTCM_XTABLES_VERSION < 10808
/*
 * Before 1.8.8 libxtables exports afinfo but keeps its type in iptables'
 * private xshared.h. The layout has not changed since it was introduced.
 */
struct xtables_afinfo {
	const char *kmod;
	const char *proc_exists;
	const char *libprefix;
	uint8_t family;
	uint8_t ipproto;
	int so_rev_match;
	int so_rev_target;
};

extern const struct xtables_afinfo *afinfo;
#endif

#endif /* _XTABLES_CONNMARK_COMPAT_H */
