// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * kernel_ref: what the module computes for a CONNMARK target or a connmark
 * match (kmod/connmark_math.h, dispatched as kmod/xt_connmark.c does), the
 * reference of tests/xlate/xlate_arith.py.
 *
 * One computation per line of stdin, every number in hexadecimal:
 *   t MODE FUNC CTMARK CTMASK NFMASK SHIFT_DIR SHIFT_BITS CT NF DS
 *	the target (struct xt_connmark_tginfo3's fields) on a packet with
 *	packet mark NF and DS field DS (IPv4 TOS, IPv6 traffic class) of a
 *	connection with mark CT; prints "CT NF", the marks afterwards
 *   m MARK MASK INVERT CT
 *	the match (struct xt_connmark_mtinfo1's fields) on a connection with
 *	mark CT; prints 1 when it matches, else 0
 * A malformed line ends the program with exit status 1.
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#include <stdio.h>
#include <string.h>
#include <linux/types.h>

#include "xt_connmark.h"
#include "connmark_math.h"

/* The marks a packet and its connection carry. */
struct marks {
	__u32 ct;
	__u32 nf;
};

/* The module's target path (connmark_tg_apply()) on a tracked packet. */
static void target(const struct xt_connmark_tginfo3 *info, struct marks *m,
		   __u32 ds)
{
	if (info->func == XT_CONNMARK_DSCP)
		m->ct = connmark_dscp(m->ct, ds >> 2, info->ctmark,
				      info->ctmask, info->shift_bits);
	else if (info->mode == XT_CONNMARK_SET)
		m->ct = connmark_set(m->ct, info->ctmark, info->ctmask,
				     info->shift_dir, info->shift_bits);
	else if (info->mode == XT_CONNMARK_SAVE)
		m->ct = connmark_save(m->ct, m->nf, info->ctmask,
				      info->nfmask, info->shift_dir,
				      info->shift_bits);
	else
		m->nf = connmark_restore(m->nf, m->ct, info->ctmask,
					 info->nfmask, info->shift_dir,
					 info->shift_bits);
}

static int line_target(const char *line)
{
	struct xt_connmark_tginfo3 info;
	unsigned int mode, func, dir, bits, ds;
	struct marks m;

	if (sscanf(line, "t %x %x %x %x %x %x %x %x %x %x", &mode, &func,
		   &info.ctmark, &info.ctmask, &info.nfmask, &dir, &bits,
		   &m.ct, &m.nf, &ds) != 10 ||
	    mode > XT_CONNMARK_RESTORE || dir > D_SHIFT_RIGHT || bits > 31 ||
	    ds > 0xff)
		return -1;
	info.mode = mode;
	info.func = func;
	info.shift_dir = dir;
	info.shift_bits = bits;
	target(&info, &m, ds);
	printf("%x %x\n", m.ct, m.nf);
	return 0;
}

static int line_match(const char *line)
{
	struct xt_connmark_mtinfo1 info;
	unsigned int invert;
	__u32 ct;

	if (sscanf(line, "m %x %x %x %x", &info.mark, &info.mask, &invert,
		   &ct) != 4 || invert > 1)
		return -1;
	info.invert = invert;
	printf("%d\n", ((ct & info.mask) == info.mark) ^ info.invert);
	return 0;
}

int main(void)
{
	char line[256];
	unsigned long n = 0;
	int ret;

	while (fgets(line, sizeof(line), stdin)) {
		n++;
		if (line[0] == 't')
			ret = line_target(line);
		else if (line[0] == 'm')
			ret = line_match(line);
		else
			ret = -1;
		if (ret < 0 || !strchr(line, '\n')) {
			fprintf(stderr, "kernel_ref: line %lu: malformed: %s\n",
				n, line);
			return 1;
		}
	}
	return ferror(stdin) || fflush(stdout) ? 1 : 0;
}
