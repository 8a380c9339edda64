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

/* What a revision 3 rule does (OpenWrt's "func" flags): exactly one. */
enum {
	XT_CONNMARK_VALUE = 1 << 0,	/* the mode of revision 1 and 2 */
	XT_CONNMARK_DSCP  = 1 << 1,	/* --set-dscpmark */
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

/*
 * CONNMARK target, revision 3: revision 2 plus func, OpenWrt's ABI (never
 * merged upstream). With XT_CONNMARK_DSCP, ctmark holds the dscpmask (6
 * contiguous bits), ctmask the statemask and shift_bits the position of the
 * dscpmask's lowest bit; mode, nfmask and shift_dir are unused.
 */
struct xt_connmark_tginfo3 {
	__u32 ctmark, ctmask, nfmask;
	__u8 shift_dir, shift_bits, mode, func;
};

/* connmark match, revision 1 */
struct xt_connmark_mtinfo1 {
	__u32 mark, mask;
	__u8 invert;
};

#endif /* _XT_CONNMARK_H */
