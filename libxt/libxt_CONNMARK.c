// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libxt_CONNMARK: iptables plugin for the CONNMARK target, revisions 1 to 3.
 * Sets the connection mark, or copies it from or to the packet mark, with
 * masks and (revision 2) a shift; revision 3 (OpenWrt's ABI) adds
 * --set-dscpmark, which stores the packet's DSCP in the connection mark.
 */
#include <stdint.h>
#include <stdio.h>
#include <xtables.h>
#include "xtables_compat.h"
#include "xt_connmark.h"
#include "connmark_math.h"
#include "connmark_tginfo.h"

enum {
	O_SET_XMARK = 0,
	O_SET_MARK,
	O_AND_MARK,
	O_OR_MARK,
	O_XOR_MARK,
	O_SAVE_MARK,
	O_RESTORE_MARK,
	O_CTMASK,
	O_NFMASK,
	O_MASK,
	O_LEFT_SHIFT_MARK,
	O_RIGHT_SHIFT_MARK,
	O_SET_DSCPMARK,
	F_SET_XMARK	= 1 << O_SET_XMARK,
	F_SET_MARK	= 1 << O_SET_MARK,
	F_AND_MARK	= 1 << O_AND_MARK,
	F_OR_MARK	= 1 << O_OR_MARK,
	F_XOR_MARK	= 1 << O_XOR_MARK,
	F_SAVE_MARK	= 1 << O_SAVE_MARK,
	F_RESTORE_MARK	= 1 << O_RESTORE_MARK,
	F_CTMASK	= 1 << O_CTMASK,
	F_NFMASK	= 1 << O_NFMASK,
	F_MASK		= 1 << O_MASK,
	F_LEFT_SHIFT_MARK = 1 << O_LEFT_SHIFT_MARK,
	F_RIGHT_SHIFT_MARK = 1 << O_RIGHT_SHIFT_MARK,
	F_SET_DSCPMARK	= 1 << O_SET_DSCPMARK,
	F_OP_ANY	= F_SET_XMARK | F_SET_MARK | F_AND_MARK | F_OR_MARK |
			  F_XOR_MARK | F_SAVE_MARK | F_RESTORE_MARK |
			  F_SET_DSCPMARK,
	/* what --set-dscpmark has no use for */
	F_NOT_DSCP	= F_CTMASK | F_NFMASK | F_MASK | F_LEFT_SHIFT_MARK |
			  F_RIGHT_SHIFT_MARK,
};

/* The kernel has revision 3 (our module): see _init(). */
static bool connmark_kernel_has_v3;

static void connmark_tg_help(void)
{
	printf(
"CONNMARK target options:\n"
"  --set-xmark value[/ctmask]    Zero the ctmask bits of ctmark, then XOR value\n"
"  --set-mark value[/mask]       Set the mask bits of ctmark to value\n"
"  --and-mark bits               Binary AND ctmark with bits\n"
"  --or-mark bits                Binary OR ctmark with bits\n"
"  --xor-mark bits               Binary XOR ctmark with bits\n"
"  --save-mark [--ctmask mask] [--nfmask mask]\n"
"                                Copy nfmark & nfmask into ctmark & ctmask\n"
"  --restore-mark [--ctmask mask] [--nfmask mask]\n"
"                                Copy ctmark & ctmask into nfmark & nfmask\n"
"  --mask mask                   Same as --ctmask mask --nfmask mask\n");
}

static void connmark_tg_help_v2(void)
{
	connmark_tg_help();
	printf(
"  --left-shift-mark bits        Shift the result left by 0-31 bits\n"
"  --right-shift-mark bits       Shift the result right by 0-31 bits\n");
	if (!connmark_kernel_has_v3)
		return;
	printf(
"  --set-dscpmark dscpmask/statemask\n"
"                                Store the packet's DSCP in the dscpmask bits\n"
"                                (6 contiguous) of ctmark, set the statemask\n"
"                                bits\n");
}

/*
 * Revision 1 takes this table from its third entry on: it lacks the shift
 * options. Every revision knows --set-dscpmark, so that a revision that
 * cannot express it (the kernel has no revision 3) says so by name instead
 * of "unknown option". --set-dscpmark excludes the masks and shifts both
 * ways round. A shift of 32 bits is refused, as the kernel refuses it.
 */
static const struct xt_option_entry connmark_tg_opts_v2[] = {
	{.name = "left-shift-mark", .id = O_LEFT_SHIFT_MARK,
	 .type = XTTYPE_UINT8, .min = 0, .max = 31, .excl = F_SET_DSCPMARK},
	{.name = "right-shift-mark", .id = O_RIGHT_SHIFT_MARK,
	 .type = XTTYPE_UINT8, .min = 0, .max = 31, .excl = F_SET_DSCPMARK},
	{.name = "set-dscpmark", .id = O_SET_DSCPMARK,
	 .type = XTTYPE_MARKMASK32, .excl = F_OP_ANY | F_NOT_DSCP},
	{.name = "set-xmark", .id = O_SET_XMARK, .type = XTTYPE_MARKMASK32,
	 .excl = F_OP_ANY},
	{.name = "set-mark", .id = O_SET_MARK, .type = XTTYPE_MARKMASK32,
	 .excl = F_OP_ANY},
	{.name = "and-mark", .id = O_AND_MARK, .type = XTTYPE_UINT32,
	 .excl = F_OP_ANY},
	{.name = "or-mark", .id = O_OR_MARK, .type = XTTYPE_UINT32,
	 .excl = F_OP_ANY},
	{.name = "xor-mark", .id = O_XOR_MARK, .type = XTTYPE_UINT32,
	 .excl = F_OP_ANY},
	{.name = "save-mark", .id = O_SAVE_MARK, .type = XTTYPE_NONE,
	 .excl = F_OP_ANY},
	{.name = "restore-mark", .id = O_RESTORE_MARK, .type = XTTYPE_NONE,
	 .excl = F_OP_ANY},
	{.name = "ctmask", .id = O_CTMASK, .type = XTTYPE_UINT32,
	 .excl = F_MASK | F_SET_DSCPMARK},
	{.name = "nfmask", .id = O_NFMASK, .type = XTTYPE_UINT32,
	 .excl = F_MASK | F_SET_DSCPMARK},
	{.name = "mask", .id = O_MASK, .type = XTTYPE_UINT32,
	 .excl = F_CTMASK | F_NFMASK | F_SET_DSCPMARK},
	XTOPT_TABLEEND,
};

#define connmark_tg_opts (&connmark_tg_opts_v2[2])

/*
 * The helpers work on the revision 3 form (connmark_tginfo_widen()); the
 * parser narrows it back into the blob of the rule's revision.
 *
 * Revisions 2 and 3 are one parser: every rule without --set-dscpmark goes
 * to the kernel as the revision 2 blob that Debian's stock plugin sends for
 * it (func, revision 2's padding, stays 0), so that every other iptables on
 * the host reads the rule; --set-dscpmark alone needs revision 3. While the
 * rule is parsed, its blob is thus a revision 2 one unless func says
 * --set-dscpmark.
 */
static unsigned int connmark_tg_blob_revision(const void *data,
					      unsigned int revision)
{
	const struct xt_connmark_tginfo3 *info = data;

	if (revision == 1)
		return 1;
	return info->func == XT_CONNMARK_DSCP ? 3 : 2;
}

static void connmark_tg_narrow(void *data, unsigned int revision,
			       const struct xt_connmark_tginfo3 *info)
{
	struct xt_connmark_tginfo1 *info1 = data;
	struct xt_connmark_tginfo2 *info2 = data;

	info1->ctmark = info->ctmark;
	info1->ctmask = info->ctmask;
	info1->nfmask = info->nfmask;
	switch (revision) {
	case 1:
		info1->mode = info->mode;
		break;
	case 2:
		info2->shift_dir  = info->shift_dir;
		info2->shift_bits = info->shift_bits;
		info2->mode       = info->mode;
		break;
	default:
		*(struct xt_connmark_tginfo3 *)data = *info;
		break;
	}
}

/*
 * Without --mask, --ctmask or --nfmask, save and restore copy the whole
 * mark: the masks start with all bits set, not with the zeroes of calloc.
 * They are at the same place in every revision.
 */
static void connmark_tg_init(struct xt_entry_target *target)
{
	struct xt_connmark_tginfo1 *info = (void *)target->data;

	info->ctmask = UINT32_MAX;
	info->nfmask = UINT32_MAX;
}

/*
 * --set-dscpmark dscpmask/statemask: ctmark = dscpmask, ctmask = statemask,
 * shift_bits = position of the dscpmask's lowest bit. The final check
 * (connmark_tginfo_check()) refuses a dscpmask that has none.
 */
static void connmark_tg_dscpmark(const struct xt_option_call *cb,
				 struct xt_connmark_tginfo3 *info)
{
	int shift = connmark_dscpmask_shift(cb->val.mark);

	info->func       = XT_CONNMARK_DSCP;
	info->mode       = XT_CONNMARK_SET;
	info->ctmark     = cb->val.mark;
	info->ctmask     = cb->val.mask;
	info->shift_dir  = D_SHIFT_LEFT;
	info->shift_bits = shift < 0 ? 0 : shift;
}

static void connmark_tg_apply(const struct xt_option_call *cb,
			      struct xt_connmark_tginfo3 *info)
{
	switch (cb->entry->id) {
	case O_SET_DSCPMARK:
		connmark_tg_dscpmark(cb, info);
		break;
	case O_SET_XMARK:
		info->mode   = XT_CONNMARK_SET;
		info->ctmark = cb->val.mark;
		info->ctmask = cb->val.mask;
		break;
	case O_SET_MARK:
		info->mode   = XT_CONNMARK_SET;
		info->ctmark = cb->val.mark;
		info->ctmask = cb->val.mark | cb->val.mask;
		break;
	case O_AND_MARK:
		info->mode   = XT_CONNMARK_SET;
		info->ctmark = 0;
		info->ctmask = ~cb->val.u32;
		break;
	case O_OR_MARK:
		info->mode   = XT_CONNMARK_SET;
		info->ctmark = cb->val.u32;
		info->ctmask = cb->val.u32;
		break;
	case O_XOR_MARK:
		info->mode   = XT_CONNMARK_SET;
		info->ctmark = cb->val.u32;
		info->ctmask = 0;
		break;
	case O_SAVE_MARK:
		info->mode = XT_CONNMARK_SAVE;
		break;
	case O_RESTORE_MARK:
		info->mode = XT_CONNMARK_RESTORE;
		break;
	case O_CTMASK:
		info->ctmask = cb->val.u32;
		break;
	case O_NFMASK:
		info->nfmask = cb->val.u32;
		break;
	case O_MASK:
		info->ctmask = cb->val.u32;
		info->nfmask = cb->val.u32;
		break;
	case O_LEFT_SHIFT_MARK:
		info->shift_dir  = D_SHIFT_LEFT;
		info->shift_bits = cb->val.u8;
		break;
	case O_RIGHT_SHIFT_MARK:
		info->shift_dir  = D_SHIFT_RIGHT;
		info->shift_bits = cb->val.u8;
		break;
	}
}

/* The blob of a revision of ours in the revision 3 form. libxtables hands
 * these callbacks only rules of the revisions registered below.
 */
static struct xt_connmark_tginfo3 connmark_tg_widen(const void *data,
						    unsigned int revision)
{
	struct xt_connmark_tginfo3 info;

	if (!connmark_tginfo_widen(data, revision, &info))
		xtables_error(OTHER_PROBLEM,
			      "CONNMARK target: unknown revision %u", revision);
	return info;
}

/*
 * The rule's revision is decided after each option (the final check cannot:
 * it is not handed the rule): 3 for --set-dscpmark, which excludes every
 * other option, else 2; revision 1 is used only where the kernel lacks 2.
 */
static void connmark_tg_parse_rev(struct xt_option_call *cb,
				  unsigned int revision)
{
	struct xt_connmark_tginfo3 info = connmark_tg_widen(cb->data,
		connmark_tg_blob_revision(cb->data, revision));

	xtables_option_parse(cb);
	if (cb->entry->id == O_SET_DSCPMARK && !connmark_kernel_has_v3)
		xtables_error(PARAMETER_PROBLEM,
			      "CONNMARK target: --set-dscpmark %s needs CONNMARK revision 3, which the kernel lacks: load the xt_connmark module of xt-connmark-dkms",
			      cb->arg);
	connmark_tg_apply(cb, &info);
	if (revision != 1) {
		revision = info.func == XT_CONNMARK_DSCP ? 3 : 2;
		(*cb->target)->u.user.revision = revision;
	}
	connmark_tg_narrow(cb->data, revision, &info);
}

static void connmark_tg_parse(struct xt_option_call *cb)
{
	connmark_tg_parse_rev(cb, 1);
}

static void connmark_tg_parse_v2(struct xt_option_call *cb)
{
	connmark_tg_parse_rev(cb, 2);
}

/*
 * Check that there is an operation, and make the blob equal to the one the
 * save text parses back to (so that -D and -C find the rule): SET (and
 * --set-dscpmark) does not use nfmask, and a shift by 0 bits has no
 * direction. Then refuse what the kernel would refuse, by its own rules.
 */
static void connmark_tg_finish(unsigned int xflags,
			       struct xt_connmark_tginfo3 *info)
{
	enum connmark_tginfo_field bad;

	if (!(xflags & F_OP_ANY))
		xtables_error(PARAMETER_PROBLEM,
			      "CONNMARK target: No operation specified");
	if (info->mode == XT_CONNMARK_SET)
		info->nfmask = UINT32_MAX;
	if (info->shift_bits == 0)
		info->shift_dir = D_SHIFT_LEFT;

	bad = connmark_tginfo_check(info);
	if (bad == CONNMARK_TGINFO_DSCPMASK)
		xtables_error(PARAMETER_PROBLEM,
			      "CONNMARK target: need 6 contiguous dscpmask bits");
	if (bad == CONNMARK_TGINFO_STATEMASK)
		xtables_error(PARAMETER_PROBLEM,
			      "CONNMARK target: dscpmask and statemask overlap");
	if (bad != CONNMARK_TGINFO_VALID)
		xtables_error(PARAMETER_PROBLEM, "CONNMARK target: invalid %s",
			      connmark_tginfo_field_name(bad));
}

static void connmark_tg_check_rev(struct xt_fcheck_call *cb,
				  unsigned int revision)
{
	struct xt_connmark_tginfo3 info;

	revision = connmark_tg_blob_revision(cb->data, revision);
	info = connmark_tg_widen(cb->data, revision);
	connmark_tg_finish(cb->xflags, &info);
	connmark_tg_narrow(cb->data, revision, &info);
}

static void connmark_tg_check(struct xt_fcheck_call *cb)
{
	connmark_tg_check_rev(cb, 1);
}

static void connmark_tg_check_v2(struct xt_fcheck_call *cb)
{
	connmark_tg_check_rev(cb, 2);
}

static const char *connmark_shift_dir(const struct xt_connmark_tginfo3 *info)
{
	return info->shift_dir == D_SHIFT_RIGHT ? "right" : "left";
}

/* OpenWrt's print and save texts of --set-dscpmark. */
static void connmark_tg_show(const struct xt_connmark_tginfo3 *info)
{
	if (info->func == XT_CONNMARK_DSCP) {
		printf(" CONNMARK DSCP 0x%x/0x%x", info->ctmark, info->ctmask);
		return;
	}
	switch (info->mode) {
	case XT_CONNMARK_SET:
		if (info->ctmark == 0)
			printf(" CONNMARK and 0x%x", ~info->ctmask);
		else if (info->ctmark == info->ctmask)
			printf(" CONNMARK or 0x%x", info->ctmark);
		else if (info->ctmask == 0)
			printf(" CONNMARK xor 0x%x", info->ctmark);
		else if (info->ctmask == UINT32_MAX)
			printf(" CONNMARK set 0x%x", info->ctmark);
		else
			printf(" CONNMARK xset 0x%x/0x%x",
			       info->ctmark, info->ctmask);
		break;
	case XT_CONNMARK_SAVE:
		if (info->nfmask == UINT32_MAX && info->ctmask == UINT32_MAX)
			printf(" CONNMARK save");
		else if (info->nfmask == info->ctmask)
			printf(" CONNMARK save mask 0x%x", info->nfmask);
		else
			printf(" CONNMARK save nfmask 0x%x ctmask ~0x%x",
			       info->nfmask, info->ctmask);
		break;
	case XT_CONNMARK_RESTORE:
		if (info->ctmask == UINT32_MAX && info->nfmask == UINT32_MAX)
			printf(" CONNMARK restore");
		else if (info->ctmask == info->nfmask)
			printf(" CONNMARK restore mask 0x%x", info->ctmask);
		else
			printf(" CONNMARK restore ctmask 0x%x nfmask ~0x%x",
			       info->ctmask, info->nfmask);
		break;
	default:
		printf(" ERROR: UNKNOWN CONNMARK MODE");
		return;
	}
	if (info->shift_bits != 0)
		printf(" %s-shift-mark %u",
		       connmark_shift_dir(info), info->shift_bits);
}

/*
 * Print, save and translate read the blob as the rule's revision says: one
 * function serves every revision (under iptables-nft, libxtables hands every
 * rule to the best revision's callbacks).
 */
static struct xt_connmark_tginfo3
connmark_tg_rule_info(const struct xt_entry_target *target)
{
	return connmark_tg_widen(target->data, target->u.user.revision);
}

static void connmark_tg_print(const void *ip,
			      const struct xt_entry_target *target, int numeric)
{
	const struct xt_connmark_tginfo3 info = connmark_tg_rule_info(target);

	connmark_tg_show(&info);
}

static void connmark_tg_put(const struct xt_connmark_tginfo3 *info)
{
	if (info->func == XT_CONNMARK_DSCP) {
		printf(" --set-dscpmark 0x%x/0x%x", info->ctmark, info->ctmask);
		return;
	}
	switch (info->mode) {
	case XT_CONNMARK_SET:
		printf(" --set-xmark 0x%x/0x%x", info->ctmark, info->ctmask);
		break;
	case XT_CONNMARK_SAVE:
		printf(" --save-mark --nfmask 0x%x --ctmask 0x%x",
		       info->nfmask, info->ctmask);
		break;
	case XT_CONNMARK_RESTORE:
		printf(" --restore-mark --nfmask 0x%x --ctmask 0x%x",
		       info->nfmask, info->ctmask);
		break;
	default:
		return;
	}
	if (info->shift_bits != 0)
		printf(" --%s-shift-mark %u",
		       connmark_shift_dir(info), info->shift_bits);
}

static void connmark_tg_save(const void *ip,
			     const struct xt_entry_target *target)
{
	const struct xt_connmark_tginfo3 info = connmark_tg_rule_info(target);

	connmark_tg_put(&info);
}

/*
 * The bits of a value that the rule's shift keeps: a left shift keeps the
 * low bits, a right shift the high ones.
 */
static uint32_t connmark_tg_shift_kept(const struct xt_connmark_tginfo3 *info)
{
	return connmark_shift(UINT32_MAX, info->shift_dir == D_SHIFT_RIGHT ?
			      D_SHIFT_LEFT : D_SHIFT_RIGHT, info->shift_bits);
}

/* The end of a shifted expression, which began with "( ". */
static void connmark_tg_xlate_shift(struct xt_xlate *xl,
				    const struct xt_connmark_tginfo3 *info)
{
	if (info->shift_bits != 0)
		xt_xlate_add(xl, " ) %s %u",
			     info->shift_dir == D_SHIFT_RIGHT ? ">>" : "<<",
			     info->shift_bits);
}

/*
 * A set: ct mark and ~ctmask xor ctmark, shifted; nft's "and" binds before
 * "xor", as in C. Where the shift moves out every bit that the ct mark
 * keeps, the result is a constant, folded (nft cannot shift one).
 */
static void connmark_tg_xlate_set(struct xt_xlate *xl,
				  const struct xt_connmark_tginfo3 *info)
{
	if (!(~info->ctmask & connmark_tg_shift_kept(info))) {
		xt_xlate_add(xl, "ct mark set 0x%x",
			     connmark_shift(info->ctmark, info->shift_dir,
					    info->shift_bits));
		return;
	}
	xt_xlate_add(xl, "ct mark set %s", info->shift_bits ? "( " : "");
	if (info->ctmark == 0)
		xt_xlate_add(xl, "ct mark and 0x%x", ~info->ctmask);
	else if (info->ctmark == info->ctmask)
		xt_xlate_add(xl, "ct mark or 0x%x", info->ctmark);
	else if (info->ctmask == 0)
		xt_xlate_add(xl, "ct mark xor 0x%x", info->ctmark);
	else
		xt_xlate_add(xl, "ct mark and 0x%x xor 0x%x",
			     ~info->ctmask, info->ctmark);
	connmark_tg_xlate_shift(xl, info);
}

/*
 * A save (DEST "ct mark", SRC "mark") or a restore (the other way):
 * DEST and ~DEST_MASK xor (SRC and SRC_MASK) shifted. Where the shift
 * moves out every bit of SRC_MASK, the copied part is 0 and what DEST
 * keeps remains (or 0); SRC_MASK is left out where it holds every bit that
 * the shift keeps. When the destination keeps some of its bits and the
 * source gives some, the expression combines two runtime values
 * (register-to-register bitwise: nftables 1.1.2 with Linux 6.13); an older
 * nft or kernel rejects the rule, loudly. Every other form has one runtime
 * value at most, which every nft loads.
 */
static void connmark_tg_xlate_copy(struct xt_xlate *xl, const char *dest,
				   uint32_t dest_mask, const char *src,
				   uint32_t src_mask,
				   const struct xt_connmark_tginfo3 *info)
{
	uint32_t kept = connmark_tg_shift_kept(info);

	if (!(src_mask & kept)) {
		if (dest_mask == UINT32_MAX)
			xt_xlate_add(xl, "0x0");
		else if (dest_mask == 0)
			xt_xlate_add(xl, "%s", dest);
		else
			xt_xlate_add(xl, "%s and 0x%x", dest, ~dest_mask);
		return;
	}
	if (dest_mask == 0)
		xt_xlate_add(xl, "%s xor ", dest);
	else if (dest_mask != UINT32_MAX)
		xt_xlate_add(xl, "%s and 0x%x xor ", dest, ~dest_mask);
	xt_xlate_add(xl, "%s%s", info->shift_bits ? "( " : "", src);
	if ((src_mask & kept) != kept)
		xt_xlate_add(xl, " and 0x%x", src_mask);
	connmark_tg_xlate_shift(xl, info);
}

/*
 * A --set-dscpmark whose statemask holds every bit outside the dscpmask:
 * the ct mark keeps none of its own, and the DSCP is the one runtime
 * value. nft 1.0.6 shifts no 8-bit DSCP by 8 bits or more, and converts
 * raw payload to host byte order only for a shift: so the DSCP is read as
 * the 32 header bits RAW, which hold it from bit RAW_SHIFT up, shifted
 * down to bit 0 and up into the dscpmask.
 */
static void connmark_tg_xlate_dscp_only(struct xt_xlate *xl,
					const struct xt_connmark_tginfo3 *info,
					const char *raw, unsigned int raw_shift)
{
	xt_xlate_add(xl, "ct mark set ( %s and 0x%x ) >> %u", raw,
		     0x3fU << raw_shift, raw_shift);
	if (info->shift_bits != 0)
		xt_xlate_add(xl, " << %u", info->shift_bits);
	xt_xlate_add(xl, " or 0x%x", info->ctmask);
}

/*
 * --set-dscpmark: the ct mark without its dscpmask bits, or the statemask,
 * or the header's DSCP shifted into the dscpmask: register-to-register
 * bitwise again, unless the statemask leaves the ct mark no bit. The
 * header is the family's (afinfo: iptables-translate or
 * ip6tables-translate).
 */
static int connmark_tg_xlate_dscp(struct xt_xlate *xl,
				  const struct xt_connmark_tginfo3 *info)
{
	const char *l3, *raw;
	unsigned int raw_shift;

	switch (afinfo->family) {
	case NFPROTO_IPV4:
		l3 = "ip";
		raw = "@nh,8,32";	/* TOS, total length, ID's 1st byte */
		raw_shift = 26;
		break;
	case NFPROTO_IPV6:
		l3 = "ip6";
		raw = "@nh,0,32";	/* version, traffic class, flow label */
		raw_shift = 22;
		break;
	default:
		return 0;
	}
	if ((info->ctmark | info->ctmask) == UINT32_MAX) {
		connmark_tg_xlate_dscp_only(xl, info, raw, raw_shift);
		return 1;
	}
	xt_xlate_add(xl, "ct mark set ct mark and 0x%x", ~info->ctmark);
	if (info->ctmask != 0)
		xt_xlate_add(xl, " or 0x%x", info->ctmask);
	xt_xlate_add(xl, " or %s dscp", l3);
	if (info->shift_bits != 0)
		xt_xlate_add(xl, " << %u", info->shift_bits);
	return 1;
}

/*
 * Translate exactly or not at all (return 0). Constants are folded (nft
 * cannot shift one), and so is what the shift moves out.
 */
static int connmark_tg_xl(struct xt_xlate *xl,
			  const struct xt_connmark_tginfo3 *info)
{
	if (info->shift_bits >= 32)
		return 0;
	if (info->func == XT_CONNMARK_DSCP)
		return connmark_tg_xlate_dscp(xl, info);
	switch (info->mode) {
	case XT_CONNMARK_SET:
		connmark_tg_xlate_set(xl, info);
		return 1;
	case XT_CONNMARK_SAVE:
		xt_xlate_add(xl, "ct mark set ");
		connmark_tg_xlate_copy(xl, "ct mark", info->ctmask, "mark",
				       info->nfmask, info);
		return 1;
	case XT_CONNMARK_RESTORE:
		xt_xlate_add(xl, "meta mark set ");
		connmark_tg_xlate_copy(xl, "mark", info->nfmask, "ct mark",
				       info->ctmask, info);
		return 1;
	default:
		return 0;
	}
}

static int connmark_tg_xlate(struct xt_xlate *xl,
			     const struct xt_xlate_tg_params *params)
{
	const struct xt_connmark_tginfo3 info =
		connmark_tg_rule_info(params->target);

	return connmark_tg_xl(xl, &info);
}

/*
 * Revision 3 shares revision 2's parser (which sends revision 2 unless the
 * rule is a --set-dscpmark); it is registered only where the kernel has it.
 */
static struct xtables_target connmark_tg_reg[] = {
	{
		.family        = NFPROTO_UNSPEC,
		.name          = "CONNMARK",
		.revision      = 1,
		.version       = XTABLES_VERSION,
		.size          = XT_ALIGN(sizeof(struct xt_connmark_tginfo1)),
		.userspacesize = XT_ALIGN(sizeof(struct xt_connmark_tginfo1)),
		.help          = connmark_tg_help,
		.init          = connmark_tg_init,
		.x6_parse      = connmark_tg_parse,
		.x6_fcheck     = connmark_tg_check,
		.print         = connmark_tg_print,
		.save          = connmark_tg_save,
		.xlate         = connmark_tg_xlate,
		.x6_options    = connmark_tg_opts,
	},
	{
		.family        = NFPROTO_UNSPEC,
		.name          = "CONNMARK",
		.revision      = 2,
		.version       = XTABLES_VERSION,
		.size          = XT_ALIGN(sizeof(struct xt_connmark_tginfo2)),
		.userspacesize = XT_ALIGN(sizeof(struct xt_connmark_tginfo2)),
		.help          = connmark_tg_help_v2,
		.init          = connmark_tg_init,
		.x6_parse      = connmark_tg_parse_v2,
		.x6_fcheck     = connmark_tg_check_v2,
		.print         = connmark_tg_print,
		.save          = connmark_tg_save,
		.xlate         = connmark_tg_xlate,
		.x6_options    = connmark_tg_opts_v2,
	},
	{
		.family        = NFPROTO_UNSPEC,
		.name          = "CONNMARK",
		.revision      = 3,
		.version       = XTABLES_VERSION,
		.size          = XT_ALIGN(sizeof(struct xt_connmark_tginfo3)),
		.userspacesize = XT_ALIGN(sizeof(struct xt_connmark_tginfo3)),
		.help          = connmark_tg_help_v2,
		.init          = connmark_tg_init,
		.x6_parse      = connmark_tg_parse_v2,
		.x6_fcheck     = connmark_tg_check_v2,
		.print         = connmark_tg_print,
		.save          = connmark_tg_save,
		.xlate         = connmark_tg_xlate,
		.x6_options    = connmark_tg_opts_v2,
	},
};

/*
 * Which revision libxtables hands out first, the head of its list, is the
 * one registered last (xtables_find_target() makes each a full
 * registration at once); both stay findable.
 *  - iptables-legacy lists a rule with the plugin of the rule's own
 *    revision ("[unsupported revision]" otherwise), but with -v, when it
 *    prints the rule it adds or deletes, its search for that revision
 *    starts from a copy of the head that links to itself and never ends
 *    unless the head is the rule's revision (1.8.7 to 1.8.13). Revision 2,
 *    the revision of every rule but --set-dscpmark, goes last.
 *  - iptables-nft 1.8.10 and later hand every rule they list to the head
 *    with u.user.revision set to the head's revision, whatever the kernel
 *    holds. A revision 3 blob is a revision 2 blob whose padding byte is
 *    func, and iptables writes that byte 0 in every revision 2 rule, so
 *    reading each rule as revision 3 is right for both: revision 3 goes
 *    last. Older iptables-nft pass the kernel's revision; -v works.
 * iptables-legacy is the one that asks the kernel through libxtables' own
 * xtables_compatible_revision(). Where the kernel lacks revision 3, it is
 * not registered at all.
 */
void _init(void)
{
	struct xtables_target *v3 = &connmark_tg_reg[2];

	connmark_kernel_has_v3 = xt_params->compat_rev &&
		xt_params->compat_rev(v3->name, v3->revision,
				      afinfo->so_rev_target);
	if (!connmark_kernel_has_v3) {
		xtables_register_targets(connmark_tg_reg, 2);
	} else if (xt_params->compat_rev == xtables_compatible_revision) {
		xtables_register_targets(v3, 1);
		xtables_find_target(v3->name, XTF_DONT_LOAD);
		xtables_register_targets(connmark_tg_reg, 2);
	} else {
		xtables_register_targets(connmark_tg_reg, 2);
		xtables_find_target(v3->name, XTF_DONT_LOAD);
		xtables_register_targets(v3, 1);
		xtables_find_target(v3->name, XTF_DONT_LOAD);
	}
}
