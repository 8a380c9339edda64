/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * compat.h - kernel version compatibility for xt_connmark
 *
 * The only file that tests LINUX_VERSION_CODE. Supported kernels are 4.19
 * and later. Every kernel API the module uses (x_tables registration and
 * parameters, nf_ct_get, nf_ct_is_template, nf_ct_netns_get/put,
 * nf_conntrack_event_cache, READ_ONCE/WRITE_ONCE) is unchanged from 4.19
 * to 7.2 (built and tested on Debian's 5.10, 6.1, 6.12 and 7.2, see
 * tests/vm/lane.sh), so no shim is needed. Should one become necessary, it
 * goes here as an "#if LINUX_VERSION_CODE < KERNEL_VERSION(a, b, c)" that
 * maps the newest API onto the older one, so the module always calls the
 * newest API.
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#ifndef _XT_CONNMARK_COMPAT_H
#define _XT_CONNMARK_COMPAT_H

#include <linux/version.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 19, 0)
#warning "xt_connmark supports Linux 4.19 and later; this kernel is older"
#endif

#endif /* _XT_CONNMARK_COMPAT_H */
