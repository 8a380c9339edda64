// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * libxt_connmark: iptables plugin for the connmark match, revision 1.
 * Matches packets whose connection mark, masked, equals a value.
 */
#include <stdint.h>
#include <stdio.h>
#include <xtables.h>
#include "xt_connmark.h"

enum {
	O_MARK = 0,
};

static void connmark_mt_help(void)
{
	printf(
"connmark match options:\n"
"[!] --mark value[/mask]    Match (ctmark & mask) == value\n");
}

static const struct xt_option_entry connmark_mt_opts[] = {
	{.name = "mark", .id = O_MARK, .type = XTTYPE_MARKMASK32,
	 .flags = XTOPT_MAND | XTOPT_INVERT},
	XTOPT_TABLEEND,
};

static void connmark_mt_parse(struct xt_option_call *cb)
{
	struct xt_connmark_mtinfo1 *info = cb->data;

	xtables_option_parse(cb);
	switch (cb->entry->id) {
	case O_MARK:
		info->mark   = cb->val.mark;
		info->mask   = cb->val.mask;
		info->invert = cb->invert;
		break;
	}
}

static void connmark_mt_print(const void *ip,
			      const struct xt_entry_match *match, int numeric)
{
	const struct xt_connmark_mtinfo1 *info = (const void *)match->data;

	/* Byte for byte as iptables prints it: the value follows a blank. */
	printf(" connmark match %s", info->invert ? "!" : "");
	xtables_print_mark_mask(info->mark, info->mask);
}

static void connmark_mt_save(const void *ip,
			     const struct xt_entry_match *match)
{
	const struct xt_connmark_mtinfo1 *info = (const void *)match->data;

	if (info->invert)
		printf(" !");
	printf(" --mark");
	xtables_print_mark_mask(info->mark, info->mask);
}

static int connmark_mt_xlate(struct xt_xlate *xl,
			     const struct xt_xlate_mt_params *params)
{
	const struct xt_connmark_mtinfo1 *info =
		(const void *)params->match->data;

	if (info->mask == UINT32_MAX)
		xt_xlate_add(xl, "ct mark %s0x%x",
			     info->invert ? "!= " : "", info->mark);
	else
		xt_xlate_add(xl, "ct mark and 0x%x %s 0x%x", info->mask,
			     info->invert ? "!=" : "==", info->mark);
	return 1;
}

static struct xtables_match connmark_mt_reg = {
	.family        = NFPROTO_UNSPEC,
	.name          = "connmark",
	.revision      = 1,
	.version       = XTABLES_VERSION,
	.size          = XT_ALIGN(sizeof(struct xt_connmark_mtinfo1)),
	.userspacesize = XT_ALIGN(sizeof(struct xt_connmark_mtinfo1)),
	.help          = connmark_mt_help,
	.x6_parse      = connmark_mt_parse,
	.print         = connmark_mt_print,
	.save          = connmark_mt_save,
	.xlate         = connmark_mt_xlate,
	.x6_options    = connmark_mt_opts,
};

void _init(void)
{
	xtables_register_match(&connmark_mt_reg);
}
