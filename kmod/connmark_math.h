/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * connmark_math.h - the mark arithmetic of the CONNMARK target
 *
 * Pure functions of their arguments, shared by the kernel module and the
 * host unit test (tests/unit/connmark_math_test.c); they use only __u32
 * from <linux/types.h>, which exists in both environments.
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#ifndef _CONNMARK_MATH_H
#define _CONNMARK_MATH_H

#include <linux/types.h>
#include "xt_connmark.h"

/**
 * connmark_shift() - Shift a mark left or right.
 * @val: value to shift
 * @shift_dir: %D_SHIFT_RIGHT shifts right; any other value shifts left
 * @shift_bits: number of bit positions to shift
 *
 * Shifting a u32 by 32 or more is undefined in C, yet userspace accepts a
 * shift of 32, so such a shift is defined here: every bit is shifted out.
 *
 * Return: @val shifted by @shift_bits, or 0 when @shift_bits >= 32.
 */
static inline __u32 connmark_shift(__u32 val, unsigned int shift_dir,
				   unsigned int shift_bits)
{
	if (shift_dir == D_SHIFT_RIGHT)
		return val >> shift_bits;
	return val << shift_bits;
}

/**
 * connmark_set() - Compute the new conntrack mark for %XT_CONNMARK_SET.
 * @ct_mark: current conntrack mark
 * @ctmark: value XORed in after clearing @ctmask
 * @ctmask: bits of @ct_mark to clear
 * @shift_dir: %D_SHIFT_LEFT or %D_SHIFT_RIGHT
 * @shift_bits: shift applied to the whole result, preserved bits included
 *
 * Return: ((@ct_mark & ~@ctmask) ^ @ctmark), shifted.
 */
static inline __u32 connmark_set(__u32 ct_mark, __u32 ctmark, __u32 ctmask,
				 unsigned int shift_dir,
				 unsigned int shift_bits)
{
	return connmark_shift((ct_mark & ~ctmask) ^ ctmark, shift_dir,
			      shift_bits);
}

/**
 * connmark_save() - Compute the new conntrack mark for %XT_CONNMARK_SAVE.
 * @ct_mark: current conntrack mark
 * @nf_mark: current packet mark (skb->mark)
 * @ctmask: bits of @ct_mark to clear
 * @nfmask: bits of @nf_mark to copy
 * @shift_dir: %D_SHIFT_LEFT or %D_SHIFT_RIGHT
 * @shift_bits: shift applied to the copied packet bits only
 *
 * Return: (@ct_mark & ~@ctmask) ^ ((@nf_mark & @nfmask), shifted).
 */
static inline __u32 connmark_save(__u32 ct_mark, __u32 nf_mark, __u32 ctmask,
				  __u32 nfmask, unsigned int shift_dir,
				  unsigned int shift_bits)
{
	return (ct_mark & ~ctmask) ^
	       connmark_shift(nf_mark & nfmask, shift_dir, shift_bits);
}

/**
 * connmark_restore() - Compute the new packet mark for %XT_CONNMARK_RESTORE.
 * @nf_mark: current packet mark (skb->mark)
 * @ct_mark: current conntrack mark
 * @ctmask: bits of @ct_mark to copy
 * @nfmask: bits of @nf_mark to clear
 * @shift_dir: %D_SHIFT_LEFT or %D_SHIFT_RIGHT
 * @shift_bits: shift applied to the copied conntrack bits only
 *
 * Return: (@nf_mark & ~@nfmask) ^ ((@ct_mark & @ctmask), shifted).
 */
static inline __u32 connmark_restore(__u32 nf_mark, __u32 ct_mark,
				     __u32 ctmask, __u32 nfmask,
				     unsigned int shift_dir,
				     unsigned int shift_bits)
{
	return (nf_mark & ~nfmask) ^
	       connmark_shift(ct_mark & ctmask, shift_dir, shift_bits);
}

/**
 * connmark_dscpmask_shift() - Check a --set-dscpmark dscpmask.
 * @dscpmask: mask of the conntrack mark bits that receive the DSCP
 *
 * A DSCP has 6 bits, so a dscpmask must be exactly 6 contiguous set bits.
 *
 * Return: the position of the lowest bit of @dscpmask (0 to 26), or -1
 * when @dscpmask is not 6 contiguous set bits.
 */
static inline int connmark_dscpmask_shift(__u32 dscpmask)
{
	int shift = 0;

	if (dscpmask == 0)
		return -1;
	while (!(dscpmask & (1U << shift)))
		shift++;
	return dscpmask >> shift == 0x3f ? shift : -1;
}

/**
 * connmark_dscp() - Compute the new conntrack mark for --set-dscpmark.
 * @ct_mark: current conntrack mark
 * @dscp: DSCP of the packet (the DS field without its 2 ECN bits, 0-63)
 * @dscpmask: bits of @ct_mark that receive the DSCP
 * @statemask: bits set to record that a DSCP was stored
 * @shift_bits: position of the lowest bit of @dscpmask
 *
 * Bits of @ct_mark outside both masks are kept. Only the 6 low bits of
 * @dscp count, and no bit of it lands outside @dscpmask.
 *
 * Return: (@ct_mark & ~@dscpmask) | @statemask | (@dscp << @shift_bits).
 */
static inline __u32 connmark_dscp(__u32 ct_mark, __u32 dscp, __u32 dscpmask,
				  __u32 statemask, unsigned int shift_bits)
{
	return (ct_mark & ~dscpmask) | statemask |
	       (connmark_shift(dscp & 0x3f, D_SHIFT_LEFT, shift_bits) &
		dscpmask);
}

#endif /* _CONNMARK_MATH_H */
