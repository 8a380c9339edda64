// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Host unit test of kmod/connmark_tginfo.h
 *
 * connmark_tginfo_widen() must read each revision's layout (checked on
 * blobs built byte by byte, not through the structs), and
 * connmark_tginfo_check() must accept exactly the blobs that an independent
 * statement of the rules accepts, for every func and mode byte, every
 * shift direction and a spread of shifts and masks, and name the field a
 * hand-made bad blob gets wrong. Output is TAP; the exit status is
 * non-zero if any test fails.
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <linux/types.h>

#include "tap.h"
#include "xt_connmark.h"
#include "connmark_tginfo.h"

#define MAX_REPORTS 5


static void expect_eq(const char *what, unsigned long got, unsigned long want)
{
	if (got == want)
		return;
	if (++failures <= MAX_REPORTS)
		printf("# %s: got 0x%lx, want 0x%lx\n", what, got, want);
}

static void put32(unsigned char *p, __u32 v)
{
	memcpy(p, &v, sizeof(v));	/* host-endian, as the ABI */
}

/* A blob as bytes: ctmark, ctmask, nfmask, then the trailing bytes. */
static void blob(unsigned char *b, __u32 ctmark, __u32 ctmask, __u32 nfmask,
		 const unsigned char *tail, size_t ntail)
{
	memset(b, 0xee, 16);
	put32(b, ctmark);
	put32(b + 4, ctmask);
	put32(b + 8, nfmask);
	memcpy(b + 12, tail, ntail);
}

static void expect_info(const char *what, const struct xt_connmark_tginfo3 *i,
			__u32 ctmark, __u32 ctmask, __u32 nfmask,
			unsigned int shift_dir, unsigned int shift_bits,
			unsigned int mode, unsigned int func)
{
	char name[96];

	snprintf(name, sizeof(name), "%s: ctmark", what);
	expect_eq(name, i->ctmark, ctmark);
	snprintf(name, sizeof(name), "%s: ctmask", what);
	expect_eq(name, i->ctmask, ctmask);
	snprintf(name, sizeof(name), "%s: nfmask", what);
	expect_eq(name, i->nfmask, nfmask);
	snprintf(name, sizeof(name), "%s: shift_dir", what);
	expect_eq(name, i->shift_dir, shift_dir);
	snprintf(name, sizeof(name), "%s: shift_bits", what);
	expect_eq(name, i->shift_bits, shift_bits);
	snprintf(name, sizeof(name), "%s: mode", what);
	expect_eq(name, i->mode, mode);
	snprintf(name, sizeof(name), "%s: func", what);
	expect_eq(name, i->func, func);
}

/* Revision 1: mode is byte 12, the rest of the blob is padding. */
static void test_widen_v1(void)
{
	static const unsigned char tail[] = { 2, 7, 9, 0xaa };
	struct xt_connmark_tginfo3 info;
	unsigned char b[16];

	blob(b, 0x11223344, 0x55667788, 0x99aabbcc, tail, sizeof(tail));
	expect_eq("rev 1: widened", connmark_tginfo_widen(b, 1, &info), 1);
	expect_info("rev 1", &info, 0x11223344, 0x55667788, 0x99aabbcc,
		    D_SHIFT_LEFT, 0, 2, XT_CONNMARK_VALUE);
}

/* Revision 2: shift_dir, shift_bits, mode; byte 15 is padding. */
static void test_widen_v2(void)
{
	static const unsigned char tail[] = { 1, 31, 0, 0xaa };
	struct xt_connmark_tginfo3 info;
	unsigned char b[16];

	blob(b, 1, 2, 3, tail, sizeof(tail));
	expect_eq("rev 2: widened", connmark_tginfo_widen(b, 2, &info), 1);
	expect_info("rev 2", &info, 1, 2, 3, D_SHIFT_RIGHT, 31,
		    XT_CONNMARK_SET, XT_CONNMARK_VALUE);
}

/* Revision 3 is read as it is, func 0 included. */
static void test_widen_v3(void)
{
	static const unsigned char tail[] = { 0, 26, 2, 0 };
	struct xt_connmark_tginfo3 info;
	unsigned char b[16];

	blob(b, 0xfc000000, 0x01000000, 0xffffffff, tail, sizeof(tail));
	expect_eq("rev 3: widened", connmark_tginfo_widen(b, 3, &info), 1);
	expect_info("rev 3", &info, 0xfc000000, 0x01000000, 0xffffffff,
		    D_SHIFT_LEFT, 26, XT_CONNMARK_RESTORE, 0);
}

/* Any other revision is refused, and the output is left alone. */
static void test_widen_unknown(void)
{
	static const unsigned int revs[] = { 0, 4, 5, 255, 256, ~0U };
	struct xt_connmark_tginfo3 info, before;
	unsigned char b[16];
	size_t i;

	memset(b, 0x5a, sizeof(b));
	memset(&before, 0xa5, sizeof(before));
	for (i = 0; i < ARRAY_SIZE(revs); i++) {
		info = before;
		expect_eq("unknown revision refused",
			  connmark_tginfo_widen(b, revs[i], &info), 0);
		expect_eq("unknown revision: info untouched",
			  memcmp(&info, &before, sizeof(info)), 0);
	}
}

/* The lowest set bit of m, or -1. */
static int lowest_bit(__u32 m)
{
	int i;

	for (i = 0; i < 32; i++)
		if (m & (1U << i))
			return i;
	return -1;
}

static int popcount(__u32 m)
{
	int n = 0;

	for (; m; m &= m - 1)
		n++;
	return n;
}

/*
 * The rules, stated independently of the header: OpenWrt's func 0 is a
 * save or restore; a value rule has a known mode and a shift of 0-31 bits;
 * a --set-dscpmark rule is a SET whose dscpmask is 6 contiguous bits at
 * shift_bits and whose statemask lies outside them.
 */
static int ref_valid(const struct xt_connmark_tginfo3 *i)
{
	int low = lowest_bit(i->ctmark);

	if (i->shift_dir > 1 || i->shift_bits > 31)
		return 0;
	switch (i->func) {
	case 0:
		return i->mode == XT_CONNMARK_SAVE ||
		       i->mode == XT_CONNMARK_RESTORE;
	case XT_CONNMARK_VALUE:
		return i->mode <= XT_CONNMARK_RESTORE;
	case XT_CONNMARK_DSCP:
		return i->mode == XT_CONNMARK_SET && popcount(i->ctmark) == 6 &&
		       i->ctmark >> low == 0x3f && i->shift_bits == low &&
		       !(i->ctmark & i->ctmask);
	default:
		return 0;
	}
}

static const __u32 dscpmasks[] = {
	0xfc000000, 0x0000003f, 0x000fc000, 0xfc000001, 0x7c000000,
	0x0000007f, 0, 0xffffffff,
};

static const __u32 statemasks[] = { 0, 0x01000000, 0x04000000, 0xffffffff };

static const unsigned int shifts[] = { 0, 1, 14, 26, 31, 32, 33, 255 };

/* Every func and mode byte, shift_dir 0-3, the shifts and masks above. */
static void test_check_exhaustive(void)
{
	struct xt_connmark_tginfo3 i = { .nfmask = 0xffffffff };
	unsigned int func, mode, dir, s, m, k, valid = 0;
	char what[128];

	for (func = 0; func < 256; func++)
	for (mode = 0; mode < 256; mode++)
	for (dir = 0; dir < 4; dir++)
	for (s = 0; s < ARRAY_SIZE(shifts); s++)
	for (m = 0; m < ARRAY_SIZE(dscpmasks); m++)
	for (k = 0; k < ARRAY_SIZE(statemasks); k++) {
		int want, got;

		i.func = func;
		i.mode = mode;
		i.shift_dir = dir;
		i.shift_bits = shifts[s];
		i.ctmark = dscpmasks[m];
		i.ctmask = statemasks[k];
		want = ref_valid(&i);
		got = connmark_tginfo_check(&i) == CONNMARK_TGINFO_VALID;
		valid += got;
		if (got == want)
			continue;
		snprintf(what, sizeof(what),
			 "valid? func %u mode %u dir %u bits %u ctmark 0x%x ctmask 0x%x",
			 func, mode, dir, shifts[s], i.ctmark, i.ctmask);
		expect_eq(what, got, want);
	}
	/* Sanity of the enumeration: value rules and DSCP rules both occur. */
	expect_eq("some valid, not all", valid > 1000 && valid < 100000, 1);
}

/* connmark_tginfo_check() of a blob of revision rev: valid or not. */
static int widened_valid(const unsigned char *b, unsigned int rev)
{
	struct xt_connmark_tginfo3 info;

	return connmark_tginfo_widen(b, rev, &info) &&
	       connmark_tginfo_check(&info) == CONNMARK_TGINFO_VALID;
}

/* Every revision 1 and 2 blob is checked as revision 2 of its bytes. */
static void test_check_widened(void)
{
	unsigned int mode, dir, s;
	unsigned char b[16], tail[4];
	char what[64];

	for (mode = 0; mode < 256; mode++) {
		tail[0] = mode;
		blob(b, 1, 2, 3, tail, 1);
		snprintf(what, sizeof(what), "rev 1 mode %u", mode);
		expect_eq(what, widened_valid(b, 1),
			  mode <= XT_CONNMARK_RESTORE);
		for (dir = 0; dir < 256; dir += 51)
		for (s = 0; s < ARRAY_SIZE(shifts); s++) {
			tail[0] = dir;
			tail[1] = shifts[s];
			tail[2] = mode;
			blob(b, 1, 2, 3, tail, 3);
			snprintf(what, sizeof(what), "rev 2 dir %u bits %u mode %u",
				 dir, shifts[s], mode);
			expect_eq(what, widened_valid(b, 2),
				  mode <= 2 && dir <= 1 && shifts[s] < 32);
		}
	}
}

/* Each bad blob names the field it gets wrong. */
static void test_check_fields(void)
{
	static const struct {
		struct xt_connmark_tginfo3 info;
		enum connmark_tginfo_field want;
		const char *what;
	} vecs[] = {
		{ { 0, 0, ~0U, 0, 0, XT_CONNMARK_SET, 0 }, CONNMARK_TGINFO_FUNC,
		  "func 0 in SET mode does nothing" },
		{ { 0, ~0U, ~0U, 0, 0, XT_CONNMARK_SAVE, 0 },
		  CONNMARK_TGINFO_VALID, "func 0 save (OpenWrt)" },
		{ { 0, ~0U, ~0U, 0, 0, XT_CONNMARK_RESTORE, 0 },
		  CONNMARK_TGINFO_VALID, "func 0 restore (OpenWrt)" },
		{ { 0, ~0U, ~0U, 0, 0, XT_CONNMARK_SAVE, 3 },
		  CONNMARK_TGINFO_FUNC, "both funcs" },
		{ { 0, ~0U, ~0U, 0, 0, 3, XT_CONNMARK_VALUE },
		  CONNMARK_TGINFO_MODE, "mode 3" },
		{ { 0, ~0U, ~0U, 2, 0, 1, XT_CONNMARK_VALUE },
		  CONNMARK_TGINFO_SHIFT_DIR, "shift_dir 2" },
		{ { 0, ~0U, ~0U, 0, 32, 1, XT_CONNMARK_VALUE },
		  CONNMARK_TGINFO_SHIFT_BITS, "shift 32" },
		{ { 0, ~0U, ~0U, 0, 32, 1, 0 },
		  CONNMARK_TGINFO_SHIFT_BITS, "func 0 save, shift 32" },
		{ { 0xfc000000, 0x01000000, ~0U, 0, 26, XT_CONNMARK_SAVE,
		    XT_CONNMARK_DSCP }, CONNMARK_TGINFO_MODE, "DSCP save" },
		{ { 0xfc000000, 0x01000000, ~0U, 0, 26, XT_CONNMARK_RESTORE,
		    XT_CONNMARK_DSCP }, CONNMARK_TGINFO_MODE, "DSCP restore" },
		{ { 0xfc000001, 0, ~0U, 0, 0, 0, XT_CONNMARK_DSCP },
		  CONNMARK_TGINFO_DSCPMASK, "7 bits" },
		{ { 0xfc000000, 0, ~0U, 0, 25, 0, XT_CONNMARK_DSCP },
		  CONNMARK_TGINFO_SHIFT_BITS, "DSCP shift off by one" },
		{ { 0xfc000000, 0x04000000, ~0U, 0, 26, 0, XT_CONNMARK_DSCP },
		  CONNMARK_TGINFO_STATEMASK, "statemask inside dscpmask" },
		{ { 0xfc000000, 0x01000000, ~0U, 0, 26, 0, XT_CONNMARK_DSCP },
		  CONNMARK_TGINFO_VALID, "canonical --set-dscpmark" },
	};
	size_t k;

	for (k = 0; k < ARRAY_SIZE(vecs); k++)
		expect_eq(vecs[k].what, connmark_tginfo_check(&vecs[k].info),
			  vecs[k].want);
}

/* Every field has a name of its own for the messages. */
static void test_field_names(void)
{
	enum connmark_tginfo_field f, g;

	for (f = CONNMARK_TGINFO_FUNC; f < CONNMARK_TGINFO_FIELDS; f++) {
		expect_eq(connmark_tginfo_field_name(f),
			  strcmp(connmark_tginfo_field_name(f), "none") != 0, 1);
		for (g = CONNMARK_TGINFO_FUNC; g < f; g++)
			expect_eq("distinct names",
				  strcmp(connmark_tginfo_field_name(f),
					 connmark_tginfo_field_name(g)) != 0, 1);
	}
}

static const struct unit_test tests[] = {
	{ test_widen_v1, "widen: revision 1 layout, no shift, func VALUE" },
	{ test_widen_v2, "widen: revision 2 layout, func VALUE, padding ignored" },
	{ test_widen_v3, "widen: revision 3 read as it is (func 0 kept)" },
	{ test_check_exhaustive,
	  "check: every func/mode byte, shifts, masks agree with the rules" },
	{ test_check_widened,
	  "check: revision 1 and 2 blobs, every mode, shifts, directions" },
	{ test_check_fields, "check: each bad blob names its field" },
	{ test_field_names, "check: every field has a distinct name" },
	{ test_widen_unknown, "widen: a revision other than 1, 2, 3 is refused" },
};

int main(void)
{
	return tap_run(tests, ARRAY_SIZE(tests));
}
