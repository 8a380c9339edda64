// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Host unit test of kmod/connmark_math.h
 *
 * Checks the CONNMARK arithmetic against an independent reference that
 * computes every result bit on its own (the position it comes from after
 * the shift, and what the mode does to one bit), plus 64-bit arithmetic
 * for the shift and a set of vectors computed by hand; likewise the
 * --set-dscpmark arithmetic of revision 3 for all 64 DSCP values and every
 * valid dscpmask. Output is TAP; the
 * exit status is non-zero if any test fails. The PRNG has a fixed seed so
 * that every run is identical.
 *
 * Build from the top of the tree with
 *   gcc -Wall -Wextra -Werror -I include -I kmod <this file>
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>

#include "tap.h"
#include "xt_connmark.h"
#include "connmark_math.h"

#define RANDOM_ITERATIONS 100000
#define MAX_REPORTS 5

/* Inputs of one computation; fields a mode does not use are ignored. */
struct args {
	__u32 ct;		/* conntrack mark before the rule */
	__u32 nf;		/* packet mark before the rule */
	__u32 ctmark, ctmask, nfmask;
	unsigned int dir, bits;
};

/* A hand-computed case: want is the new ct mark (SET, SAVE) or the new
 * packet mark (RESTORE).
 */
struct vec {
	int mode;
	struct args a;
	__u32 want;
};

static const char *const mode_name[] = {
	[XT_CONNMARK_SET] = "SET",
	[XT_CONNMARK_SAVE] = "SAVE",
	[XT_CONNMARK_RESTORE] = "RESTORE",
};

/* Values and masks where bit-twiddling mistakes show up first. */
static const __u32 edges[] = {
	0x00000000, 0xffffffff, 0x00000001, 0x80000000,
	0x0000ffff, 0xffff0000, 0x55555555, 0xaaaaaaaa,
	0x000000ff, 0xff000000, 0x7fffffff, 0xfffffffe,
};

/* checkentry refuses 32 and more (connmark_tginfo_check()). */
static const unsigned int edge_shifts[] = {
	0, 1, 4, 8, 16, 24, 30, 31,
};

/* ---- fixed-seed xorshift32 ---- */

static __u32 rng_state = 0x2545f491;

static __u32 rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* A mask of a random kind: random, sparse, dense, one contiguous run, or
 * an edge value.
 */
static __u32 rng_mask(void)
{
	unsigned int lo, len;
	__u32 m = 0;

	switch (rng() % 5) {
	case 0:
		return rng();
	case 1:
		return rng() & rng() & rng();
	case 2:
		return rng() | rng() | rng();
	case 3:
		lo = rng() % 32;
		len = rng() % (33 - lo);
		while (len--)
			m |= 1U << (lo + len);
		return m;
	default:
		return edges[rng() % ARRAY_SIZE(edges)];
	}
}

/* ---- independent reference, one bit at a time ---- */

static unsigned int bit(__u32 v, int i)
{
	return (v >> i) & 1;
}

/* Result bit i of a shift by n comes from source bit i + n (right) or
 * i - n (left); it is 0 when that source bit does not exist.
 */
static __u32 ref_shift(__u32 v, unsigned int dir, unsigned int n)
{
	__u32 r = 0;
	long long j;
	int i;

	for (i = 0; i < 32; i++) {
		j = dir == D_SHIFT_RIGHT ? (long long)i + n : (long long)i - n;
		if (j >= 0 && j < 32 && bit(v, (int)j))
			r |= 1U << i;
	}
	return r;
}

/* Bits of v where mask is set (copy) or clear (keep); all others 0. */
static __u32 ref_select(__u32 v, __u32 mask, unsigned int where)
{
	__u32 r = 0;
	int i;

	for (i = 0; i < 32; i++)
		if (bit(mask, i) == where && bit(v, i))
			r |= 1U << i;
	return r;
}

/* Bitwise exclusive or, spelled out as "the two bits differ". */
static __u32 ref_differ(__u32 a, __u32 b)
{
	__u32 r = 0;
	int i;

	for (i = 0; i < 32; i++)
		if (bit(a, i) != bit(b, i))
			r |= 1U << i;
	return r;
}

/* SET: a bit inside ctmask becomes the ctmark bit; a bit outside it is
 * the old bit flipped where ctmark is set. The whole word is shifted.
 */
static __u32 ref_set(const struct args *a)
{
	__u32 pre = 0;
	unsigned int b;
	int i;

	for (i = 0; i < 32; i++) {
		if (bit(a->ctmask, i))
			b = bit(a->ctmark, i);
		else
			b = bit(a->ct, i) != bit(a->ctmark, i);
		if (b)
			pre |= 1U << i;
	}
	return ref_shift(pre, a->dir, a->bits);
}

static __u32 ref_apply(int mode, const struct args *a)
{
	switch (mode) {
	case XT_CONNMARK_SET:
		return ref_set(a);
	case XT_CONNMARK_SAVE:
		return ref_differ(ref_select(a->ct, a->ctmask, 0),
				  ref_shift(ref_select(a->nf, a->nfmask, 1),
					    a->dir, a->bits));
	default:
		return ref_differ(ref_select(a->nf, a->nfmask, 0),
				  ref_shift(ref_select(a->ct, a->ctmask, 1),
					    a->dir, a->bits));
	}
}

/* ---- code under test ---- */

static __u32 impl_apply(int mode, const struct args *a)
{
	switch (mode) {
	case XT_CONNMARK_SET:
		return connmark_set(a->ct, a->ctmark, a->ctmask, a->dir,
				    a->bits);
	case XT_CONNMARK_SAVE:
		return connmark_save(a->ct, a->nf, a->ctmask, a->nfmask,
				     a->dir, a->bits);
	default:
		return connmark_restore(a->nf, a->ct, a->ctmask, a->nfmask,
					a->dir, a->bits);
	}
}

/* ---- checking and reporting ---- */


static void expect(const char *what, const struct args *a, __u32 got,
		   __u32 want)
{
	if (got == want)
		return;
	if (failures++ >= MAX_REPORTS)
		return;
	printf("# %s ct=0x%08x nf=0x%08x ctmark=0x%08x ctmask=0x%08x",
	       what, a->ct, a->nf, a->ctmark, a->ctmask);
	printf(" nfmask=0x%08x dir=%u bits=%u: got 0x%08x, want 0x%08x\n",
	       a->nfmask, a->dir, a->bits, got, want);
}

static void expect_ref(int mode, const struct args *a)
{
	expect(mode_name[mode], a, impl_apply(mode, a), ref_apply(mode, a));
}

static void expect_shift(const struct args *a, __u32 want)
{
	expect("shift", a, connmark_shift(a->ct, a->dir, a->bits), want);
}

static void random_args(struct args *a)
{
	a->ct = rng();
	a->nf = rng();
	a->ctmark = rng_mask();
	a->ctmask = rng_mask();
	a->nfmask = rng_mask();
}

/* ---- ABI ---- */

static void test_abi(void)
{
	const struct {
		size_t got, want;
	} c[] = {
		{ sizeof(struct xt_connmark_tginfo1), 16 },
		{ sizeof(struct xt_connmark_tginfo2), 16 },
		{ sizeof(struct xt_connmark_mtinfo1), 12 },
		{ offsetof(struct xt_connmark_tginfo1, ctmask), 4 },
		{ offsetof(struct xt_connmark_tginfo1, nfmask), 8 },
		{ offsetof(struct xt_connmark_tginfo1, mode), 12 },
		{ offsetof(struct xt_connmark_tginfo2, shift_dir), 12 },
		{ offsetof(struct xt_connmark_tginfo2, shift_bits), 13 },
		{ offsetof(struct xt_connmark_tginfo2, mode), 14 },
		{ sizeof(struct xt_connmark_tginfo3), 16 },
		{ offsetof(struct xt_connmark_tginfo3, ctmask), 4 },
		{ offsetof(struct xt_connmark_tginfo3, nfmask), 8 },
		{ offsetof(struct xt_connmark_tginfo3, shift_dir), 12 },
		{ offsetof(struct xt_connmark_tginfo3, shift_bits), 13 },
		{ offsetof(struct xt_connmark_tginfo3, mode), 14 },
		{ offsetof(struct xt_connmark_tginfo3, func), 15 },
		{ XT_CONNMARK_VALUE, 1 },
		{ XT_CONNMARK_DSCP, 2 },
		{ offsetof(struct xt_connmark_mtinfo1, mask), 4 },
		{ offsetof(struct xt_connmark_mtinfo1, invert), 8 },
		{ XT_CONNMARK_SET, 0 },
		{ XT_CONNMARK_SAVE, 1 },
		{ XT_CONNMARK_RESTORE, 2 },
		{ D_SHIFT_LEFT, 0 },
		{ D_SHIFT_RIGHT, 1 },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(c); i++) {
		if (c[i].got != c[i].want && failures++ < MAX_REPORTS)
			printf("# ABI check %zu: got %zu, want %zu\n",
			       i, c[i].got, c[i].want);
	}
}

/* ---- hand-computed vectors ---- */

#define L D_SHIFT_LEFT
#define R D_SHIFT_RIGHT

static const struct vec shift_vecs[] = {
	/* bit 0 -> bit 31, bit 31 falls off: 0x80000000 */
	{ 0, { .ct = 0x80000001, .dir = L, .bits = 31 }, 0x80000000 },
	/* bit 31 -> bit 0, bit 0 falls off: 0x00000001 */
	{ 0, { .ct = 0x80000001, .dir = R, .bits = 31 }, 0x00000001 },
	/* one nibble up, the top nibble 0x1 falls off: 0x23456780 */
	{ 0, { .ct = 0x12345678, .dir = L, .bits = 4 }, 0x23456780 },
	/* one nibble down, the low nibble 0x8 falls off: 0x01234567 */
	{ 0, { .ct = 0x12345678, .dir = R, .bits = 4 }, 0x01234567 },
	/* by 0: unchanged */
	{ 0, { .ct = 0xdeadbeef, .dir = R, .bits = 0 }, 0xdeadbeef },
};

static const struct vec mode_vecs[] = {
	/* --set-xmark 0x1: (0xdeadbeef & 0x00000000) ^ 0x1 = 0x00000001 */
	{ XT_CONNMARK_SET, { .ct = 0xdeadbeef, .ctmark = 0x1,
			     .ctmask = 0xffffffff }, 0x00000001 },
	/* --and-mark 0xff = 0x0/0xffffff00:
	 * (0x12345678 & 0x000000ff) ^ 0 = 0x00000078
	 */
	{ XT_CONNMARK_SET, { .ct = 0x12345678, .ctmark = 0x0,
			     .ctmask = 0xffffff00 }, 0x00000078 },
	/* --or-mark 0x100 = 0x100/0x100: bit 8 of 0x678 is clear, so
	 * (0x12345678 & ~0x100) ^ 0x100 = 0x12345678 ^ 0x100 = 0x12345778
	 */
	{ XT_CONNMARK_SET, { .ct = 0x12345678, .ctmark = 0x100,
			     .ctmask = 0x100 }, 0x12345778 },
	/* --xor-mark 0xf0 = 0xf0/0x0: 0x78 ^ 0xf0 = 0x88, so 0x12345688 */
	{ XT_CONNMARK_SET, { .ct = 0x12345678, .ctmark = 0xf0,
			     .ctmask = 0x0 }, 0x12345688 },
	/* (0x12345678 & 0xffffff00) ^ 0xab = 0x123456ab; << 8: 0x3456ab00 */
	{ XT_CONNMARK_SET, { .ct = 0x12345678, .ctmark = 0xab,
			     .ctmask = 0xff, .dir = L, .bits = 8 },
	  0x3456ab00 },
	/* (0xffffffff & 0xfffffff0) ^ 0x5 = 0xfffffff5; >> 4: 0x0fffffff */
	{ XT_CONNMARK_SET, { .ct = 0xffffffff, .ctmark = 0x5,
			     .ctmask = 0xf, .dir = R, .bits = 4 },
	  0x0fffffff },
	/* (anything & 0) ^ 0x80000000 = 0x80000000; >> 31: 0x00000001 */
	{ XT_CONNMARK_SET, { .ct = 0x12345678, .ctmark = 0x80000000,
			     .ctmask = 0xffffffff, .dir = R, .bits = 31 },
	  0x00000001 },
	/* (0xffffffff & 0) ^ 0x3 = 0x3; << 31: bit 1 falls off, 0x80000000 */
	{ XT_CONNMARK_SET, { .ct = 0xffffffff, .ctmark = 0x3,
			     .ctmask = 0xffffffff, .dir = L, .bits = 31 },
	  0x80000000 },

	/* --save-mark: (0x11 & 0) ^ (0x22 & 0xffffffff) = 0x00000022 */
	{ XT_CONNMARK_SAVE, { .ct = 0x11, .nf = 0x22, .ctmask = 0xffffffff,
			      .nfmask = 0xffffffff }, 0x00000022 },
	/* --save-mark --mask 0xff00: 0x12345678 & ~0xff00 = 0x12340078,
	 * 0xabcdef01 & 0xff00 = 0xef00, 0x12340078 ^ 0xef00 = 0x1234ef78
	 */
	{ XT_CONNMARK_SAVE, { .ct = 0x12345678, .nf = 0xabcdef01,
			      .ctmask = 0xff00, .nfmask = 0xff00 },
	  0x1234ef78 },
	/* 0x12345678 & ~0xffff0000 = 0x5678; (0xbeef & 0xffff) << 16 =
	 * 0xbeef0000; 0x5678 ^ 0xbeef0000 = 0xbeef5678
	 */
	{ XT_CONNMARK_SAVE, { .ct = 0x12345678, .nf = 0x0000beef,
			      .ctmask = 0xffff0000, .nfmask = 0xffff,
			      .dir = L, .bits = 16 }, 0xbeef5678 },
	/* 0xaaaaaaaa & ~0xff = 0xaaaaaa00; 0x7f123456 & 0xff000000 =
	 * 0x7f000000, >> 24 = 0x7f; 0xaaaaaa00 ^ 0x7f = 0xaaaaaa7f
	 */
	{ XT_CONNMARK_SAVE, { .ct = 0xaaaaaaaa, .nf = 0x7f123456,
			      .ctmask = 0xff, .nfmask = 0xff000000,
			      .dir = R, .bits = 24 }, 0xaaaaaa7f },
	/* exclusive or, not or: (0x0f & ~0) ^ (0xff & 0xff) = 0xf0 */
	{ XT_CONNMARK_SAVE, { .ct = 0x0f, .nf = 0xff, .ctmask = 0x0,
			      .nfmask = 0xff }, 0x000000f0 },
	/* 0x12345678 & ~0xffff0000 = 0x5678; the packet's 0xffffffff << 31
	 * = 0x80000000: 0x5678 ^ 0x80000000 = 0x80005678
	 */
	{ XT_CONNMARK_SAVE, { .ct = 0x12345678, .nf = 0xffffffff,
			      .ctmask = 0xffff0000, .nfmask = 0xffffffff,
			      .dir = L, .bits = 31 }, 0x80005678 },

	/* --restore-mark: (0x1 & 0) ^ (0xcafe & 0xffffffff) = 0x0000cafe */
	{ XT_CONNMARK_RESTORE, { .ct = 0xcafe, .nf = 0x1,
				 .ctmask = 0xffffffff, .nfmask = 0xffffffff },
	  0x0000cafe },
	/* 0x12345678 & ~0xff = 0x12345600; (0xab00 & 0xff00) >> 8 = 0xab;
	 * 0x12345600 ^ 0xab = 0x123456ab
	 */
	{ XT_CONNMARK_RESTORE, { .ct = 0x0000ab00, .nf = 0x12345678,
				 .ctmask = 0xff00, .nfmask = 0xff,
				 .dir = R, .bits = 8 }, 0x123456ab },
	/* copied bits may land outside nfmask: 0x0f & ~0xf0 = 0x0f;
	 * (0xff & 0xff) << 4 = 0xff0; 0x0f ^ 0xff0 = 0x00000fff
	 */
	{ XT_CONNMARK_RESTORE, { .ct = 0xff, .nf = 0x0f, .ctmask = 0xff,
				 .nfmask = 0xf0, .dir = L, .bits = 4 },
	  0x00000fff },
	/* exclusive or, not or: 0xff0 & ~0x0f = 0xff0;
	 * 0xff0 & 0xfff = 0xff0; 0xff0 ^ 0xff0 = 0x00000000
	 */
	{ XT_CONNMARK_RESTORE, { .ct = 0xff0, .nf = 0xff0, .ctmask = 0xfff,
				 .nfmask = 0x0f }, 0x00000000 },
	/* 0xdeadbeef & ~0xffff = 0xdead0000; ct bits >> 30 = 0x3:
	 * 0xdead0000 ^ 0x3 = 0xdead0003
	 */
	{ XT_CONNMARK_RESTORE, { .ct = 0xffffffff, .nf = 0xdeadbeef,
				 .ctmask = 0xffffffff, .nfmask = 0xffff,
				 .dir = R, .bits = 30 }, 0xdead0003 },
	/* 0x12345678 & 0 = 0; (0xffffffff & 0x80000000) >> 31 = 1 */
	{ XT_CONNMARK_RESTORE, { .ct = 0xffffffff, .nf = 0x12345678,
				 .ctmask = 0x80000000, .nfmask = 0xffffffff,
				 .dir = R, .bits = 31 }, 0x00000001 },
};

#undef L
#undef R

static void test_shift_vecs(void)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(shift_vecs); i++)
		expect_shift(&shift_vecs[i].a, shift_vecs[i].want);
}

static void test_mode_vecs(int mode)
{
	const struct vec *v;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(mode_vecs); i++) {
		v = &mode_vecs[i];
		if (v->mode != mode)
			continue;
		expect(mode_name[mode], &v->a, impl_apply(mode, &v->a),
		       v->want);
		/* the hand result must also agree with the reference */
		expect("reference", &v->a, ref_apply(mode, &v->a), v->want);
	}
}

static void test_set_vecs(void)
{
	test_mode_vecs(XT_CONNMARK_SET);
}

static void test_save_vecs(void)
{
	test_mode_vecs(XT_CONNMARK_SAVE);
}

static void test_restore_vecs(void)
{
	test_mode_vecs(XT_CONNMARK_RESTORE);
}

/* ---- the shift helper ---- */

static void test_shift_bits(unsigned int dir)
{
	struct args a = { .dir = dir };
	int i;

	for (i = 0; i < RANDOM_ITERATIONS; i++) {
		a.ct = i & 1 ? rng() : rng_mask();
		a.bits = i % 32;
		expect_shift(&a, ref_shift(a.ct, a.dir, a.bits));
	}
}

static void test_shift_left(void)
{
	test_shift_bits(D_SHIFT_LEFT);
}

static void test_shift_right(void)
{
	test_shift_bits(D_SHIFT_RIGHT);
}

/* Second reference: in 64 bits a shift by less than 64 is defined. */
static void test_shift_u64(void)
{
	struct args a;
	__u64 w;
	int i;

	for (i = 0; i < RANDOM_ITERATIONS; i++) {
		a.ct = rng();
		a.dir = i & 1 ? D_SHIFT_RIGHT : D_SHIFT_LEFT;
		a.bits = (i / 2) % 32;
		if (a.dir == D_SHIFT_RIGHT)
			w = (__u64)a.ct >> a.bits;
		else
			w = (__u64)a.ct << a.bits;
		expect_shift(&a, (__u32)w);
	}
}

static void test_shift_other_dir(void)
{
	struct args a;
	unsigned int d;

	for (d = 2; d <= 256; d++) {
		a.dir = d;
		a.ct = rng();
		a.bits = d % 32;
		expect_shift(&a, ref_shift(a.ct, D_SHIFT_LEFT, a.bits));
	}
}

static void test_shift_zero(void)
{
	struct args a = { .bits = 0 };
	int i;

	for (i = 0; i < RANDOM_ITERATIONS; i++) {
		a.ct = rng();
		a.dir = i & 1;
		expect_shift(&a, a.ct);
	}
}

/* ---- the three modes against the reference ---- */

static void test_random(int mode, int shifted)
{
	struct args a;
	int i;

	for (i = 0; i < RANDOM_ITERATIONS; i++) {
		random_args(&a);
		a.dir = shifted ? rng() & 1 : D_SHIFT_LEFT;
		a.bits = shifted ? (unsigned int)i % 32 : 0;
		expect_ref(mode, &a);
	}
}

static void test_edges(int mode)
{
	const size_t ne = ARRAY_SIZE(edges), ns = ARRAY_SIZE(edge_shifts);
	size_t n, r;
	struct args a;

	/* every combination of four edge words, shift and direction */
	for (n = 0; n < ne * ne * ne * ne * ns * 2; n++) {
		r = n;
		a.dir = r % 2;
		r /= 2;
		a.bits = edge_shifts[r % ns];
		r /= ns;
		a.ct = edges[r % ne];
		r /= ne;
		a.ctmask = edges[r % ne];
		r /= ne;
		a.nfmask = edges[r % ne];
		r /= ne;
		/* SET uses ctmark, not the packet mark */
		a.ctmark = mode == XT_CONNMARK_SET ? edges[r % ne] : rng();
		a.nf = mode == XT_CONNMARK_SET ? rng() : edges[r % ne];
		expect_ref(mode, &a);
	}
}

static void test_set_random(void)
{
	test_random(XT_CONNMARK_SET, 0);
}

static void test_set_random_shift(void)
{
	test_random(XT_CONNMARK_SET, 1);
}

static void test_set_edges(void)
{
	test_edges(XT_CONNMARK_SET);
}

static void test_save_random(void)
{
	test_random(XT_CONNMARK_SAVE, 0);
}

static void test_save_random_shift(void)
{
	test_random(XT_CONNMARK_SAVE, 1);
}

static void test_save_edges(void)
{
	test_edges(XT_CONNMARK_SAVE);
}

static void test_restore_random(void)
{
	test_random(XT_CONNMARK_RESTORE, 0);
}

static void test_restore_random_shift(void)
{
	test_random(XT_CONNMARK_RESTORE, 1);
}

static void test_restore_edges(void)
{
	test_edges(XT_CONNMARK_RESTORE);
}

/* The iptables options map onto SET/SAVE/RESTORE (upstream libxt_CONNMARK)
 * and must do what their names say.
 */
static void test_option_semantics(void)
{
	struct args a = { .dir = D_SHIFT_LEFT, .bits = 0 };
	__u32 b, m;
	int i;

	for (i = 0; i < RANDOM_ITERATIONS; i++) {
		a.ct = rng();
		a.nf = rng();
		b = rng_mask();
		m = rng_mask();
		/* --and-mark b = --set-xmark 0/~b */
		a.ctmark = 0;
		a.ctmask = ~b;
		expect("and", &a, impl_apply(XT_CONNMARK_SET, &a), a.ct & b);
		/* --or-mark b = --set-xmark b/b */
		a.ctmark = b;
		a.ctmask = b;
		expect("or", &a, impl_apply(XT_CONNMARK_SET, &a), a.ct | b);
		/* --xor-mark b = --set-xmark b/0 */
		a.ctmark = b;
		a.ctmask = 0;
		expect("xor", &a, impl_apply(XT_CONNMARK_SET, &a), a.ct ^ b);
		/* --set-mark b/m = --set-xmark b/(b|m) */
		a.ctmark = b;
		a.ctmask = b | m;
		expect("set-mark", &a, impl_apply(XT_CONNMARK_SET, &a),
		       (a.ct & ~m) | b);
		/* --save-mark --mask m and --restore-mark --mask m copy the
		 * bits in m and keep the others.
		 */
		a.ctmask = m;
		a.nfmask = m;
		expect("save --mask", &a, impl_apply(XT_CONNMARK_SAVE, &a),
		       (a.ct & ~m) | (a.nf & m));
		expect("restore --mask", &a,
		       impl_apply(XT_CONNMARK_RESTORE, &a),
		       (a.nf & ~m) | (a.ct & m));
	}
}

/* ---- --set-dscpmark (revision 3) ---- */

/* Reference: a valid dscpmask has exactly 6 set bits, and they are the six
 * bits from its lowest set bit up. Returns that bit, or -1.
 */
static int ref_dscpmask_shift(__u32 m)
{
	int i, lowest = -1, count = 0;

	for (i = 31; i >= 0; i--) {
		if (bit(m, i)) {
			count++;
			lowest = i;
		}
	}
	if (count != 6 || lowest > 26)
		return -1;
	for (i = lowest; i < lowest + 6; i++)
		if (!bit(m, i))
			return -1;
	return lowest;
}

/* Reference: bit i of the new mark is 1 inside the statemask, else DSCP
 * bit (i - shift) inside the dscpmask, else the old bit.
 */
static __u32 ref_dscp(__u32 ct, __u32 dscp, __u32 dscpmask,
		      __u32 statemask, int shift)
{
	__u32 r = 0;
	int i;

	for (i = 0; i < 32; i++) {
		if (bit(statemask, i))
			r |= 1U << i;
		else if (!bit(dscpmask, i) && bit(ct, i))
			r |= 1U << i;
		else if (bit(dscpmask, i) && i >= shift && bit(dscp, i - shift))
			r |= 1U << i;
	}
	return r;
}

static void expect_dscpmask(__u32 m)
{
	struct args a = { .ctmark = m };
	int got = connmark_dscpmask_shift(m), want = ref_dscpmask_shift(m);

	expect("dscpmask shift", &a, (__u32)got, (__u32)want);
}

/* Every run of 1 to 32 contiguous bits at every position, each with one
 * bit flipped, and random masks: exactly the 27 runs of 6 are valid.
 */
static void test_dscpmask_shift(void)
{
	unsigned int lo, len, valid = 0;
	struct args a = { 0 };
	__u32 m;
	int i;

	expect_dscpmask(0);
	for (lo = 0; lo < 32; lo++) {
		for (len = 1; lo + len <= 32; len++) {
			m = (__u32)(((1ULL << len) - 1) << lo);
			expect_dscpmask(m);
			if (connmark_dscpmask_shift(m) >= 0)
				valid++;
			for (i = 0; i < 32; i++)
				expect_dscpmask(m ^ (1U << i));
		}
	}
	expect("valid dscpmasks", &a, valid, 27);
	for (i = 0; i < RANDOM_ITERATIONS; i++)
		expect_dscpmask(rng_mask());
}

/* A hand-computed --set-dscpmark case. */
struct dscp_vec {
	__u32 ct, dscp, dscpmask, statemask, want;
};

static const struct dscp_vec dscp_vecs[] = {
	/* OpenWrt's example, EF (46 = 0x2e): 0x2e << 26 = 0xb8000000;
	 * 0x00001234 | 0x01000000 | 0xb8000000 = 0xb9001234
	 */
	{ 0x00001234, 46, 0xfc000000, 0x01000000, 0xb9001234 },
	/* old DSCP bits are replaced: 0xffffffff & ~0xfc000000 =
	 * 0x03ffffff; | 0x01000000 (already set); | 0 = 0x03ffffff
	 */
	{ 0xffffffff, 0, 0xfc000000, 0x01000000, 0x03ffffff },
	/* CS1 (8) in bits 0-5: 0xaaaaaaaa & ~0x3f = 0xaaaaaa80;
	 * | 0x40 = 0xaaaaaac0; | 0x08 = 0xaaaaaac8
	 */
	{ 0xaaaaaaaa, 8, 0x0000003f, 0x00000040, 0xaaaaaac8 },
	/* 63 in bits 8-13, no statemask: 0x3f << 8 = 0x3f00 */
	{ 0x00000000, 63, 0x00003f00, 0x00000000, 0x00003f00 },
	/* AF41 (34 = 0x22) in bits 16-21: 0x22 << 16 = 0x220000;
	 * 0x12345678 & ~0x3f0000 = 0x12005678; | 0x80000000 = 0x92005678;
	 * | 0x220000 = 0x92225678
	 */
	{ 0x12345678, 34, 0x003f0000, 0x80000000, 0x92225678 },
	/* DSCP bits above the sixth are ignored: 0x7f -> 0x3f << 26 */
	{ 0x00000000, 0x7f, 0xfc000000, 0x00000000, 0xfc000000 },
};

static void test_dscp_vecs(void)
{
	const struct dscp_vec *v;
	struct args a;
	size_t i;
	int shift;

	for (i = 0; i < ARRAY_SIZE(dscp_vecs); i++) {
		v = &dscp_vecs[i];
		shift = connmark_dscpmask_shift(v->dscpmask);
		a = (struct args){ .ct = v->ct, .nf = v->dscp,
				   .ctmark = v->dscpmask,
				   .ctmask = v->statemask,
				   .bits = (unsigned int)shift };
		expect("DSCP", &a, connmark_dscp(v->ct, v->dscp, v->dscpmask,
						 v->statemask, shift),
		       v->want);
		expect("DSCP reference", &a,
		       ref_dscp(v->ct, v->dscp, v->dscpmask, v->statemask,
				shift), v->want);
	}
}

/* Every valid dscpmask, all 64 DSCP values, random marks and statemasks
 * outside the dscpmask: the reference agrees, the DSCP reads back from
 * the dscpmask bits, the statemask bits are set and the rest is kept.
 */
static void test_dscp_all(void)
{
	__u32 dscpmask, statemask, got, dscp;
	struct args a;
	int shift, k;

	for (shift = 0; shift <= 26; shift++) {
		dscpmask = 0x3fU << shift;
		for (dscp = 0; dscp < 64; dscp++) {
			for (k = 0; k < 200; k++) {
				statemask = rng_mask() & ~dscpmask;
				a = (struct args){ .ct = rng(), .nf = dscp,
						   .ctmark = dscpmask,
						   .ctmask = statemask,
						   .bits = shift };
				got = connmark_dscp(a.ct, dscp, dscpmask,
						    statemask, shift);
				expect("DSCP", &a, got,
				       ref_dscp(a.ct, dscp, dscpmask,
						statemask, shift));
				expect("DSCP read back", &a,
				       (got & dscpmask) >> shift, dscp);
				expect("DSCP state", &a, got & statemask,
				       statemask);
				expect("DSCP kept", &a,
				       got & ~(dscpmask | statemask),
				       a.ct & ~(dscpmask | statemask));
			}
		}
	}
}

/* Random everything, masks included (even invalid and overlapping ones,
 * which checkentry refuses): implementation and reference still agree.
 */
static void test_dscp_random(void)
{
	struct args a;
	int i;

	for (i = 0; i < RANDOM_ITERATIONS; i++) {
		random_args(&a);
		a.nf = rng() % 256;
		a.bits = rng() % 27;
		expect("DSCP random", &a,
		       connmark_dscp(a.ct, a.nf, a.ctmark, a.ctmask, a.bits),
		       ref_dscp(a.ct, a.nf & 0x3f, a.ctmark, a.ctmask,
				(int)a.bits));
	}
}

static const struct unit_test tests[] = {
	{ test_abi,
	  "ABI struct sizes, offsets and enum values match upstream" },
	{ test_shift_vecs,
	  "connmark_shift: hand-computed vectors" },
	{ test_shift_left,
	  "connmark_shift: left by 0..31 matches bit reference" },
	{ test_shift_right,
	  "connmark_shift: right by 0..31 matches bit reference" },
	{ test_shift_u64,
	  "connmark_shift: 0..31 both ways matches 64-bit arithmetic" },
	{ test_shift_other_dir,
	  "connmark_shift: a direction other than right shifts left" },
	{ test_shift_zero,
	  "connmark_shift: by 0 is the identity both ways" },
	{ test_set_vecs,
	  "SET: hand-computed vectors" },
	{ test_set_random,
	  "SET: random marks and masks, no shift" },
	{ test_set_random_shift,
	  "SET: random marks and masks, shift 0..31 both ways" },
	{ test_set_edges,
	  "SET: edge values, masks and shifts" },
	{ test_save_vecs,
	  "SAVE: hand-computed vectors" },
	{ test_save_random,
	  "SAVE: random marks and masks, no shift" },
	{ test_save_random_shift,
	  "SAVE: random marks and masks, shift 0..31 both ways" },
	{ test_save_edges,
	  "SAVE: edge values, masks and shifts" },
	{ test_restore_vecs,
	  "RESTORE: hand-computed vectors" },
	{ test_restore_random,
	  "RESTORE: random marks and masks, no shift" },
	{ test_restore_random_shift,
	  "RESTORE: random marks and masks, shift 0..31 both ways" },
	{ test_restore_edges,
	  "RESTORE: edge values, masks and shifts" },
	{ test_option_semantics,
	  "iptables and/or/xor/set-mark/--mask encodings behave as named" },
	{ test_dscpmask_shift,
	  "DSCP: dscpmask is valid iff 6 contiguous bits, shift = lowest" },
	{ test_dscp_vecs,
	  "DSCP: hand-computed vectors" },
	{ test_dscp_all,
	  "DSCP: every dscpmask, all 64 DSCPs, random marks and statemasks" },
	{ test_dscp_random,
	  "DSCP: random marks, masks and DS fields match bit reference" },
};

int main(void)
{
	return tap_run(tests, ARRAY_SIZE(tests));
}
