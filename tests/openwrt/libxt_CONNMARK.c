// SPDX-License-Identifier: GPL-2.0
/*
 * OpenWrt's CONNMARK userland, as the kernel sees it: a test double.
 *
 * OpenWrt's iptables sends every CONNMARK rule as revision 3 (struct
 * xt_connmark_tginfo3, its --set-dscpmark ABI) whenever the kernel offers
 * revision 3. Its blobs differ from ours in one way the module has to
 * accept: --save-mark and --restore-mark leave func 0, only the set-type
 * options write XT_CONNMARK_VALUE and --set-dscpmark XT_CONNMARK_DSCP. The
 * tests load this plugin instead of ours (XTABLES_LIBDIR=tests/openwrt:
 * <distro xtlibdir>) to hand the module exactly those blobs.
 *
 * Written from the documented behaviour (docs: upstream-facts.md section
 * 6), not from OpenWrt's source, and kept apart from libxt/ on purpose: it
 * registers revision 3 alone (NFPROTO_UNSPEC), has no translation, and
 * prints and saves in upstream's words. Not installed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <xtables.h>
#include "xt_connmark.h"

/* The operations first: their ids index ops[]. */
enum {
	O_SET_XMARK = 0,
	O_SET_MARK,
	O_AND_MARK,
	O_OR_MARK,
	O_XOR_MARK,
	O_SAVE_MARK,
	O_RESTORE_MARK,
	O_SET_DSCPMARK,
	O_CTMASK,
	O_NFMASK,
	O_MASK,
	O_LEFT_SHIFT,
	O_RIGHT_SHIFT,
	F_OPS = (1 << (O_SET_DSCPMARK + 1)) - 1,
	F_DSCP = 1 << O_SET_DSCPMARK,
	F_CTMASK = 1 << O_CTMASK,
	F_NFMASK = 1 << O_NFMASK,
	F_MASK = 1 << O_MASK,
	F_SHIFTS = 1 << O_LEFT_SHIFT | 1 << O_RIGHT_SHIFT,
};

/* Where ctmark and ctmask come from: the option's value v, its mask m. */
enum src { ZERO, V, M, V_OR_M, NOT_V, KEEP };

static const struct {
	uint8_t mode, func;
	enum src ctmark, ctmask;
} ops[] = {
	[O_SET_XMARK]	 = { XT_CONNMARK_SET, XT_CONNMARK_VALUE, V, M },
	[O_SET_MARK]	 = { XT_CONNMARK_SET, XT_CONNMARK_VALUE, V, V_OR_M },
	[O_AND_MARK]	 = { XT_CONNMARK_SET, XT_CONNMARK_VALUE, ZERO, NOT_V },
	[O_OR_MARK]	 = { XT_CONNMARK_SET, XT_CONNMARK_VALUE, V, V },
	[O_XOR_MARK]	 = { XT_CONNMARK_SET, XT_CONNMARK_VALUE, V, ZERO },
	/* OpenWrt's save and restore do not touch func. */
	[O_SAVE_MARK]	 = { XT_CONNMARK_SAVE, 0, KEEP, KEEP },
	[O_RESTORE_MARK] = { XT_CONNMARK_RESTORE, 0, KEEP, KEEP },
	[O_SET_DSCPMARK] = { XT_CONNMARK_SET, XT_CONNMARK_DSCP, V, M },
};

#define s struct xt_connmark_tginfo3
static const struct xt_option_entry owrt_opts[] = {
	{.name = "set-xmark", .id = O_SET_XMARK, .type = XTTYPE_MARKMASK32,
	 .excl = F_OPS},
	{.name = "set-mark", .id = O_SET_MARK, .type = XTTYPE_MARKMASK32,
	 .excl = F_OPS},
	{.name = "and-mark", .id = O_AND_MARK, .type = XTTYPE_UINT32,
	 .excl = F_OPS},
	{.name = "or-mark", .id = O_OR_MARK, .type = XTTYPE_UINT32,
	 .excl = F_OPS},
	{.name = "xor-mark", .id = O_XOR_MARK, .type = XTTYPE_UINT32,
	 .excl = F_OPS},
	{.name = "save-mark", .id = O_SAVE_MARK, .type = XTTYPE_NONE,
	 .excl = F_OPS},
	{.name = "restore-mark", .id = O_RESTORE_MARK, .type = XTTYPE_NONE,
	 .excl = F_OPS},
	/* dscpmask/statemask and the dscpmask's position: nothing else. */
	{.name = "set-dscpmark", .id = O_SET_DSCPMARK,
	 .type = XTTYPE_MARKMASK32,
	 .excl = F_OPS | F_CTMASK | F_NFMASK | F_MASK | F_SHIFTS},
	{.name = "ctmask", .id = O_CTMASK, .type = XTTYPE_UINT32,
	 .excl = F_MASK | F_DSCP, .flags = XTOPT_PUT,
	 XTOPT_POINTER(s, ctmask)},
	{.name = "nfmask", .id = O_NFMASK, .type = XTTYPE_UINT32,
	 .excl = F_MASK | F_DSCP, .flags = XTOPT_PUT,
	 XTOPT_POINTER(s, nfmask)},
	{.name = "mask", .id = O_MASK, .type = XTTYPE_UINT32,
	 .excl = F_CTMASK | F_NFMASK | F_DSCP},
	{.name = "left-shift-mark", .id = O_LEFT_SHIFT, .type = XTTYPE_UINT8,
	 .min = 0, .max = 32, .excl = F_SHIFTS | F_DSCP, .flags = XTOPT_PUT,
	 XTOPT_POINTER(s, shift_bits)},
	{.name = "right-shift-mark", .id = O_RIGHT_SHIFT, .type = XTTYPE_UINT8,
	 .min = 0, .max = 32, .excl = F_SHIFTS | F_DSCP, .flags = XTOPT_PUT,
	 XTOPT_POINTER(s, shift_bits)},
	XTOPT_TABLEEND,
};
#undef s

static void owrt_help(void)
{
	printf(
"CONNMARK target options (OpenWrt's revision 3, test double):\n"
"  --set-xmark value[/ctmask]    ctmark = (ctmark & ~ctmask) ^ value\n"
"  --set-mark value[/mask]       ctmark = (ctmark & ~mask) | value\n"
"  --and-mark bits               ctmark &= bits\n"
"  --or-mark bits                ctmark |= bits\n"
"  --xor-mark bits               ctmark ^= bits\n"
"  --save-mark [--ctmask mask] [--nfmask mask]\n"
"                                copy the packet mark to the ct mark\n"
"  --restore-mark [--ctmask mask] [--nfmask mask]\n"
"                                copy the ct mark to the packet mark\n"
"  --mask mask                   --ctmask and --nfmask at once\n"
"  --left-shift-mark n, --right-shift-mark n\n"
"                                shift the copied or set mark (0-32)\n"
"  --set-dscpmark dscpmask/statemask\n"
"                                store the DSCP in dscpmask (6 contiguous\n"
"                                bits), set statemask\n");
}

static void owrt_init(struct xt_entry_target *t)
{
	struct xt_connmark_tginfo3 *info = (void *)t->data;

	/* OpenWrt's defaults: all bits, no shift, func 0 until an option. */
	info->ctmask = UINT32_MAX;
	info->nfmask = UINT32_MAX;
	info->shift_dir = D_SHIFT_LEFT;
	info->shift_bits = 0;
	info->func = 0;
}

static uint32_t pick(enum src from, uint32_t keep, uint32_t v, uint32_t m)
{
	switch (from) {
	case V:
		return v;
	case M:
		return m;
	case V_OR_M:
		return v | m;
	case NOT_V:
		return ~v;
	case KEEP:
		return keep;
	default:
		return 0;
	}
}

static void owrt_dscp_check(uint32_t dscpmask, uint32_t statemask)
{
	if (!dscpmask || dscpmask >> __builtin_ctz(dscpmask) != 0x3f)
		xtables_error(PARAMETER_PROBLEM,
			      "CONNMARK: need 6 contiguous dscpmask bits");
	if (dscpmask & statemask)
		xtables_error(PARAMETER_PROBLEM,
			      "CONNMARK: dscpmask and statemask overlap");
}

static void owrt_parse(struct xt_option_call *cb)
{
	struct xt_connmark_tginfo3 *info = cb->data;
	unsigned int id;
	uint32_t v, m;

	xtables_option_parse(cb);
	id = cb->entry->id;
	if (id < ARRAY_SIZE(ops)) {
		bool pair = cb->entry->type == XTTYPE_MARKMASK32;

		v = pair ? cb->val.mark : cb->val.u32;
		m = pair ? cb->val.mask : 0;
		if (id == O_SET_DSCPMARK) {
			owrt_dscp_check(v, m);
			info->shift_bits = __builtin_ctz(v);
		}
		info->mode = ops[id].mode;
		info->func = ops[id].func;
		info->ctmark = pick(ops[id].ctmark, info->ctmark, v, m);
		info->ctmask = pick(ops[id].ctmask, info->ctmask, v, m);
	} else if (id == O_MASK) {
		info->ctmask = info->nfmask = cb->val.u32;
	} else if (id == O_RIGHT_SHIFT) {
		info->shift_dir = D_SHIFT_RIGHT;
	}
}

static void owrt_fcheck(struct xt_fcheck_call *cb)
{
	if (!(cb->xflags & F_OPS))
		xtables_error(PARAMETER_PROBLEM,
			      "CONNMARK target: No operation specified");
}

/* -L words of the copying modes: SAVE shows nfmask first, RESTORE ctmask. */
static const struct {
	const char *word;
	bool ct_first;
} copies[] = {
	[XT_CONNMARK_SAVE] = { "save", false },
	[XT_CONNMARK_RESTORE] = { "restore", true },
};

static void owrt_print_set(const struct xt_connmark_tginfo3 *info)
{
	if (info->ctmark == 0)
		printf(" CONNMARK and 0x%x", ~info->ctmask);
	else if (info->ctmark == info->ctmask)
		printf(" CONNMARK or 0x%x", info->ctmark);
	else if (info->ctmask == 0)
		printf(" CONNMARK xor 0x%x", info->ctmark);
	else if (info->ctmask == UINT32_MAX)
		printf(" CONNMARK set 0x%x", info->ctmark);
	else
		printf(" CONNMARK xset 0x%x/0x%x", info->ctmark, info->ctmask);
}

static void owrt_print_copy(const struct xt_connmark_tginfo3 *info)
{
	const char *word = copies[info->mode].word;
	bool ct = copies[info->mode].ct_first;

	if (info->ctmask == UINT32_MAX && info->nfmask == UINT32_MAX)
		printf(" CONNMARK %s", word);
	else if (info->ctmask == info->nfmask)
		printf(" CONNMARK %s mask 0x%x", word, info->ctmask);
	else
		printf(" CONNMARK %s %s 0x%x %s ~0x%x", word,
		       ct ? "ctmask" : "nfmask",
		       ct ? info->ctmask : info->nfmask,
		       ct ? "nfmask" : "ctmask",
		       ct ? info->nfmask : info->ctmask);
}

static void owrt_shift(const struct xt_connmark_tginfo3 *info, bool save)
{
	if (info->shift_bits)
		printf(" %s%s-shift-mark %u", save ? "--" : "",
		       info->shift_dir == D_SHIFT_RIGHT ? "right" : "left",
		       info->shift_bits);
}

static void owrt_print(const void *ip, const struct xt_entry_target *t,
		       int numeric)
{
	const struct xt_connmark_tginfo3 *info = (const void *)t->data;

	if (info->func == XT_CONNMARK_DSCP) {
		printf(" CONNMARK DSCP 0x%x/0x%x", info->ctmark, info->ctmask);
		return;
	}
	if (info->mode == XT_CONNMARK_SET)
		owrt_print_set(info);
	else if (info->mode < ARRAY_SIZE(copies))
		owrt_print_copy(info);
	else
		printf(" CONNMARK [mode %u]", info->mode);
	owrt_shift(info, false);
}

static void owrt_save(const void *ip, const struct xt_entry_target *t)
{
	const struct xt_connmark_tginfo3 *info = (const void *)t->data;

	if (info->func == XT_CONNMARK_DSCP) {
		printf(" --set-dscpmark 0x%x/0x%x", info->ctmark, info->ctmask);
		return;
	}
	if (info->mode == XT_CONNMARK_SET)
		printf(" --set-xmark 0x%x/0x%x", info->ctmark, info->ctmask);
	else if (info->mode < ARRAY_SIZE(copies))
		printf(" --%s-mark --nfmask 0x%x --ctmask 0x%x",
		       copies[info->mode].word, info->nfmask, info->ctmask);
	owrt_shift(info, true);
}

static struct xtables_target owrt_reg = {
	.family		= NFPROTO_UNSPEC,
	.name		= "CONNMARK",
	.revision	= 3,
	.version	= XTABLES_VERSION,
	.size		= XT_ALIGN(sizeof(struct xt_connmark_tginfo3)),
	.userspacesize	= XT_ALIGN(sizeof(struct xt_connmark_tginfo3)),
	.help		= owrt_help,
	.init		= owrt_init,
	.x6_parse	= owrt_parse,
	.x6_fcheck	= owrt_fcheck,
	.print		= owrt_print,
	.save		= owrt_save,
	.x6_options	= owrt_opts,
};

void _init(void)
{
	xtables_register_target(&owrt_reg);
}
