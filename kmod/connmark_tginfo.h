/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * connmark_tginfo.h - what a CONNMARK target blob means, and when it is valid
 *
 * Pure functions shared by the kernel module (target and checkentry), the
 * iptables plugin (its final check and its print, save and translation) and
 * the host unit test, so that the module and the plugin cannot disagree on
 * which rules exist. Every revision is handled in the revision 3 form.
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#ifndef _CONNMARK_TGINFO_H
#define _CONNMARK_TGINFO_H

#include <linux/types.h>
#ifndef __KERNEL__
#include <stdbool.h>
#endif
#include "xt_connmark.h"
#include "connmark_math.h"

/* The field that makes a target blob invalid, or CONNMARK_TGINFO_VALID. */
enum connmark_tginfo_field {
	CONNMARK_TGINFO_VALID = 0,
	CONNMARK_TGINFO_FUNC,
	CONNMARK_TGINFO_MODE,
	CONNMARK_TGINFO_SHIFT_DIR,
	CONNMARK_TGINFO_SHIFT_BITS,
	CONNMARK_TGINFO_DSCPMASK,
	CONNMARK_TGINFO_STATEMASK,
	CONNMARK_TGINFO_FIELDS,	/* the number of values above */
};

/**
 * connmark_tginfo_widen() - Read a target blob of revision 1, 2 or 3.
 * @data: the blob, a struct xt_connmark_tginfo1, 2 or 3 as @revision says
 * @revision: the rule's revision
 *
 * Revision 2 is revision 3 doing %XT_CONNMARK_VALUE, and revision 1 is
 * revision 2 without a shift. A revision 3 blob is returned as it is: its
 * func 0 (OpenWrt's save and restore) is judged by connmark_tginfo_check().
 *
 * @info: the blob in the revision 3 form
 *
 * Return: false, and @info untouched, for a revision other than 1, 2 or 3
 * (a blob of unknown size is not read).
 */
static inline bool connmark_tginfo_widen(const void *data,
					 unsigned int revision,
					 struct xt_connmark_tginfo3 *info)
{
	const struct xt_connmark_tginfo1 *info1 = data;
	const struct xt_connmark_tginfo2 *info2 = data;

	switch (revision) {
	case 1:
		*info = (struct xt_connmark_tginfo3) {
			.ctmark	= info1->ctmark,
			.ctmask	= info1->ctmask,
			.nfmask	= info1->nfmask,
			.mode	= info1->mode,
			.func	= XT_CONNMARK_VALUE,
		};
		return true;
	case 2:
		*info = (struct xt_connmark_tginfo3) {
			.ctmark		= info2->ctmark,
			.ctmask		= info2->ctmask,
			.nfmask		= info2->nfmask,
			.shift_dir	= info2->shift_dir,
			.shift_bits	= info2->shift_bits,
			.mode		= info2->mode,
			.func		= XT_CONNMARK_VALUE,
		};
		return true;
	case 3:
		*info = *(const struct xt_connmark_tginfo3 *)data;
		return true;
	default:
		return false;
	}
}

/* --set-dscpmark: ctmark is the dscpmask, ctmask the statemask. */
static inline enum connmark_tginfo_field
connmark_tginfo_check_dscp(const struct xt_connmark_tginfo3 *info)
{
	int shift = connmark_dscpmask_shift(info->ctmark);

	if (info->mode != XT_CONNMARK_SET)
		return CONNMARK_TGINFO_MODE;
	if (shift < 0)
		return CONNMARK_TGINFO_DSCPMASK;
	if (info->shift_bits != shift)
		return CONNMARK_TGINFO_SHIFT_BITS;
	if (info->ctmark & info->ctmask)
		return CONNMARK_TGINFO_STATEMASK;
	return CONNMARK_TGINFO_VALID;
}

/**
 * connmark_tginfo_check() - Find the invalid field of a target blob.
 * @info: a blob in the revision 3 form (connmark_tginfo_widen())
 *
 * func is %XT_CONNMARK_VALUE or %XT_CONNMARK_DSCP, or 0 in SAVE and RESTORE
 * mode, where OpenWrt's userspace leaves it and which then means
 * %XT_CONNMARK_VALUE; func 0 in SET mode would do nothing (OpenWrt's
 * kernel) and is refused. A shift of 32 bits or more is undefined on a u32,
 * and is refused as upstream does since 2026. --set-dscpmark is a SET whose
 * dscpmask (ctmark) is 6 contiguous bits starting at bit shift_bits, and
 * whose statemask (ctmask) does not overlap it.
 *
 * Return: %CONNMARK_TGINFO_VALID, or the first invalid field.
 */
static inline enum connmark_tginfo_field
connmark_tginfo_check(const struct xt_connmark_tginfo3 *info)
{
	if (info->func != 0 && info->func != XT_CONNMARK_VALUE &&
	    info->func != XT_CONNMARK_DSCP)
		return CONNMARK_TGINFO_FUNC;
	if (info->mode > XT_CONNMARK_RESTORE)
		return CONNMARK_TGINFO_MODE;
	if (info->func == 0 && info->mode == XT_CONNMARK_SET)
		return CONNMARK_TGINFO_FUNC;
	if (info->shift_dir > D_SHIFT_RIGHT)
		return CONNMARK_TGINFO_SHIFT_DIR;
	if (info->shift_bits >= 32)
		return CONNMARK_TGINFO_SHIFT_BITS;
	if (info->func == XT_CONNMARK_DSCP)
		return connmark_tginfo_check_dscp(info);
	return CONNMARK_TGINFO_VALID;
}

/**
 * connmark_tginfo_field_name() - Name a field for a message.
 * @field: what connmark_tginfo_check() returned
 *
 * Return: the field's name in struct xt_connmark_tginfo3, or the name that
 * --set-dscpmark gives ctmark (dscpmask) and ctmask (statemask).
 */
static inline const char *
connmark_tginfo_field_name(enum connmark_tginfo_field field)
{
	switch (field) {
	case CONNMARK_TGINFO_FUNC:
		return "func";
	case CONNMARK_TGINFO_MODE:
		return "mode";
	case CONNMARK_TGINFO_SHIFT_DIR:
		return "shift_dir";
	case CONNMARK_TGINFO_SHIFT_BITS:
		return "shift_bits";
	case CONNMARK_TGINFO_DSCPMASK:
		return "dscpmask";
	case CONNMARK_TGINFO_STATEMASK:
		return "statemask";
	default:
		return "none";
	}
}

#endif /* _CONNMARK_TGINFO_H */
