/* SPDX-License-Identifier: GPL-2.0+ WITH Linux-syscall-note */
/*
 * xt_connmark ABI shared by the kernel module and the iptables plugins.
 *
 * The layout is byte-identical to the kernel's
 * include/uapi/linux/netfilter/xt_connmark.h: a new field needs a new
 * struct and a new revision.
 */
#ifndef _XT_CONNMARK_H
#define _XT_CONNMARK_H

#include <linux/types.h>

enum {
	XT_CONNMARK_SET = 0,
	XT_CONNMARK_SAVE,
	XT_CONNMARK_RESTORE,
};

enum {
	D_SHIFT_LEFT = 0,
	D_SHIFT_RIGHT,
};

/* CONNMARK target, revision 1 */
struct xt_connmark_tginfo1 {
	__u32 ctmark, ctmask, nfmask;
	__u8 mode;
};

/* CONNMARK target, revision 2: revision 1 plus a shift of the result */
struct xt_connmark_tginfo2 {
	__u32 ctmark, ctmask, nfmask;
	__u8 shift_dir, shift_bits, mode;
};

/* connmark match, revision 1 */
struct xt_connmark_mtinfo1 {
	__u32 mark, mask;
	__u8 invert;
};

#endif /* _XT_CONNMARK_H */
