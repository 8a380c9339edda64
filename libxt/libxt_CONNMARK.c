// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libxt_CONNMARK: iptables plugin for the CONNMARK target, revisions 1 and 2.
 * Sets the connection mark, or copies it from or to the packet mark, with
 * masks and (revision 2) a shift.
 */
#include <stdint.h>
#include <stdio.h>
#include <xtables.h>
#include "xt_connmark.h"
#include "connmark_math.h"

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
	F_OP_ANY	= F_SET_XMARK | F_SET_MARK | F_AND_MARK | F_OR_MARK |
			  F_XOR_MARK | F_SAVE_MARK | F_RESTORE_MARK,
};

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
"  --left-shift-mark bits        Shift the result left by 0-32 bits\n"
"  --right-shift-mark bits       Shift the result right by 0-32 bits\n");
}

/*
 * Revision 1 takes this table from its third entry on: the shift options
 * come first because only revision 2 has them.
 */
static const struct xt_option_entry connmark_tg_opts_v2[] = {
	{.name = "left-shift-mark", .id = O_LEFT_SHIFT_MARK,
	 .type = XTTYPE_UINT8, .min = 0, .max = 32},
	{.name = "right-shift-mark", .id = O_RIGHT_SHIFT_MARK,
	 .type = XTTYPE_UINT8, .min = 0, .max = 32},
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
	 .excl = F_MASK},
	{.name = "nfmask", .id = O_NFMASK, .type = XTTYPE_UINT32,
	 .excl = F_MASK},
	{.name = "mask", .id = O_MASK, .type = XTTYPE_UINT32,
	 .excl = F_CTMASK | F_NFMASK},
	XTOPT_TABLEEND,
};

#define connmark_tg_opts (&connmark_tg_opts_v2[2])

/* Revision 1 is revision 2 without a shift: the helpers work on the latter. */
static struct xt_connmark_tginfo2
connmark_tg_widen(const struct xt_connmark_tginfo1 *info)
{
	return (struct xt_connmark_tginfo2){
		.ctmark = info->ctmark,
		.ctmask = info->ctmask,
		.nfmask = info->nfmask,
		.mode   = info->mode,
	};
}

static void connmark_tg_narrow(struct xt_connmark_tginfo1 *info,
			       const struct xt_connmark_tginfo2 *info2)
{
	info->ctmark = info2->ctmark;
	info->ctmask = info2->ctmask;
	info->nfmask = info2->nfmask;
	info->mode   = info2->mode;
}

/*
 * Without --mask, --ctmask or --nfmask, save and restore copy the whole
 * mark: the masks start with all bits set, not with the zeroes of calloc.
 */
static void connmark_tg_init(struct xt_entry_target *target)
{
	struct xt_connmark_tginfo1 *info = (void *)target->data;

	info->ctmask = UINT32_MAX;
	info->nfmask = UINT32_MAX;
}

static void connmark_tg_init_v2(struct xt_entry_target *target)
{
	struct xt_connmark_tginfo2 *info = (void *)target->data;

	info->ctmask = UINT32_MAX;
	info->nfmask = UINT32_MAX;
}

static void connmark_tg_apply(const struct xt_option_call *cb,
			      struct xt_connmark_tginfo2 *info)
{
	switch (cb->entry->id) {
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

static void connmark_tg_parse(struct xt_option_call *cb)
{
	struct xt_connmark_tginfo1 *info = cb->data;
	struct xt_connmark_tginfo2 info2 = connmark_tg_widen(info);

	xtables_option_parse(cb);
	connmark_tg_apply(cb, &info2);
	connmark_tg_narrow(info, &info2);
}

static void connmark_tg_parse_v2(struct xt_option_call *cb)
{
	xtables_option_parse(cb);
	connmark_tg_apply(cb, cb->data);
}

/*
 * Check that there is an operation, and make the blob equal to the one the
 * save text parses back to (so that -D and -C find the rule): SET does not
 * use nfmask, and a shift by 0 bits has no direction.
 */
static void connmark_tg_finish(unsigned int xflags,
			       struct xt_connmark_tginfo2 *info)
{
	if (!(xflags & F_OP_ANY))
		xtables_error(PARAMETER_PROBLEM,
			      "CONNMARK target: No operation specified");
	if (info->mode == XT_CONNMARK_SET)
		info->nfmask = UINT32_MAX;
	if (info->shift_bits == 0)
		info->shift_dir = D_SHIFT_LEFT;
}

static void connmark_tg_check(struct xt_fcheck_call *cb)
{
	struct xt_connmark_tginfo1 *info = cb->data;
	struct xt_connmark_tginfo2 info2 = connmark_tg_widen(info);

	connmark_tg_finish(cb->xflags, &info2);
	connmark_tg_narrow(info, &info2);
}

static void connmark_tg_check_v2(struct xt_fcheck_call *cb)
{
	connmark_tg_finish(cb->xflags, cb->data);
}

static const char *connmark_shift_dir(const struct xt_connmark_tginfo2 *info)
{
	return info->shift_dir == D_SHIFT_RIGHT ? "right" : "left";
}

static void connmark_tg_show(const struct xt_connmark_tginfo2 *info)
{
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

static void connmark_tg_print(const void *ip,
			      const struct xt_entry_target *target, int numeric)
{
	const struct xt_connmark_tginfo2 info2 =
		connmark_tg_widen((const void *)target->data);

	connmark_tg_show(&info2);
}

static void connmark_tg_print_v2(const void *ip,
				 const struct xt_entry_target *target,
				 int numeric)
{
	connmark_tg_show((const void *)target->data);
}

static void connmark_tg_put(const struct xt_connmark_tginfo2 *info)
{
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
	const struct xt_connmark_tginfo2 info2 =
		connmark_tg_widen((const void *)target->data);

	connmark_tg_put(&info2);
}

static void connmark_tg_save_v2(const void *ip,
				const struct xt_entry_target *target)
{
	connmark_tg_put((const void *)target->data);
}

/* The value that SET, SAVE or RESTORE assigns, before the shift. */
static void connmark_tg_xlate_value(struct xt_xlate *xl,
				    const struct xt_connmark_tginfo2 *info)
{
	switch (info->mode) {
	case XT_CONNMARK_SET:
		/* nft's "and" binds before "xor", as in C. */
		if (info->ctmark == 0)
			xt_xlate_add(xl, "ct mark and 0x%x", ~info->ctmask);
		else if (info->ctmark == info->ctmask)
			xt_xlate_add(xl, "ct mark or 0x%x", info->ctmark);
		else if (info->ctmask == 0)
			xt_xlate_add(xl, "ct mark xor 0x%x", info->ctmark);
		else
			xt_xlate_add(xl, "ct mark and 0x%x xor 0x%x",
				     ~info->ctmask, info->ctmark);
		break;
	case XT_CONNMARK_SAVE:
		xt_xlate_add(xl, "mark");
		if (info->nfmask != UINT32_MAX)
			xt_xlate_add(xl, " and 0x%x", info->nfmask);
		break;
	case XT_CONNMARK_RESTORE:
		xt_xlate_add(xl, "ct mark");
		if (info->ctmask != UINT32_MAX)
			xt_xlate_add(xl, " and 0x%x", info->ctmask);
		break;
	}
}

/*
 * Translate exactly or not at all (return 0). A save or restore keeps the
 * destination's bits outside its mask, which takes two runtime values in one
 * expression: nft cannot say that, so only a copy that replaces the whole
 * destination mark is translated. A shifted constant is folded, as nft
 * cannot shift one.
 */
static int connmark_tg_xl(struct xt_xlate *xl,
			  const struct xt_connmark_tginfo2 *info)
{
	const char *dest;

	if (info->shift_bits >= 32)
		return 0;
	switch (info->mode) {
	case XT_CONNMARK_SET:
		if (info->ctmask == UINT32_MAX) {
			xt_xlate_add(xl, "ct mark set 0x%x",
				     connmark_shift(info->ctmark,
						    info->shift_dir,
						    info->shift_bits));
			return 1;
		}
		dest = "ct";
		break;
	case XT_CONNMARK_SAVE:
		if (info->ctmask != UINT32_MAX)
			return 0;
		dest = "ct";
		break;
	case XT_CONNMARK_RESTORE:
		if (info->nfmask != UINT32_MAX)
			return 0;
		dest = "meta";
		break;
	default:
		return 0;
	}
	xt_xlate_add(xl, "%s mark set %s", dest, info->shift_bits ? "( " : "");
	connmark_tg_xlate_value(xl, info);
	if (info->shift_bits != 0)
		xt_xlate_add(xl, " ) %s %u",
			     info->shift_dir == D_SHIFT_RIGHT ? ">>" : "<<",
			     info->shift_bits);
	return 1;
}

static int connmark_tg_xlate(struct xt_xlate *xl,
			     const struct xt_xlate_tg_params *params)
{
	const struct xt_connmark_tginfo2 info2 =
		connmark_tg_widen((const void *)params->target->data);

	return connmark_tg_xl(xl, &info2);
}

static int connmark_tg_xlate_v2(struct xt_xlate *xl,
				const struct xt_xlate_tg_params *params)
{
	return connmark_tg_xl(xl, (const void *)params->target->data);
}

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
		.init          = connmark_tg_init_v2,
		.x6_parse      = connmark_tg_parse_v2,
		.x6_fcheck     = connmark_tg_check_v2,
		.print         = connmark_tg_print_v2,
		.save          = connmark_tg_save_v2,
		.xlate         = connmark_tg_xlate_v2,
		.x6_options    = connmark_tg_opts_v2,
	},
};

void _init(void)
{
	xtables_register_targets(connmark_tg_reg, ARRAY_SIZE(connmark_tg_reg));
}
