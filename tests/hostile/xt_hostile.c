// SPDX-License-Identifier: GPL-2.0
/*
 * xt_hostile - hand malformed CONNMARK / connmark payloads to the kernel
 *
 * Installs rules carrying a CONNMARK target (revisions 1, 2, 3) or a
 * connmark match (revision 1) through both ways userspace has into
 * x_tables:
 *
 *   legacy4, legacy6  IPT_SO_SET_REPLACE / IP6T_SO_SET_REPLACE of the mangle
 *                     table, built by hand: the rule (source 192.0.2.1/32 or
 *                     2001:db8::1/128, so it never sees real traffic) heads
 *                     PREROUTING, then the five policies and the error entry.
 *   nft4, nft6        nft_compat: one nfnetlink batch per payload with an
 *                     NFT_MSG_NEWRULE whose expressions are "target" or
 *                     "match" (NFTA_TARGET_NAME/REV/INFO), into a regular
 *                     chain "c" of table "xthostile" (ip, ip6).
 *
 * Payloads come in classes (valid ones, every bad value of a field, wrong
 * info sizes, unknown revisions, a valid extension next to a bad one); each
 * class expects one result: 0 for the valid ones, which are then read back
 * from the kernel (IPT_SO_GET_ENTRIES, NFT_MSG_GETRULE) to prove the tool
 * reaches checkentry, or one errno. While a class runs, the tool reads what
 * the kernel logs (/dev/kmsg) and sorts it: our module's messages, x_tables'
 * "invalid size" messages, the emulator's timekeeping noise (clocksource
 * watchdog, hrtimer), anything else. One line per class:
 *
 *   CLASS path=P name=N tried=T want=E got_want=G verified=V klog_ours=O
 *         klog_size=S klog_other=X klog_noise=Z first_bad=B first_other=L
 *
 * (one line; verified is "-" for classes that expect an error, first_bad
 * and first_other are "-" or one space-free word), then "TOTAL tried=N".
 * A path the kernel lacks gives "SKIPPATH path=P reason=R".
 *
 * Usage: xt_hostile [-s STEP] [legacy4|legacy6|nft4|nft6]...
 * (default: all four paths). -s STEP: of each class of malformed payloads,
 * only the first 16 and then every STEP-th, for slow (KASAN) kernels.
 *
 * Two more nft_compat paths, nftbr and nftarp (tables of the bridge and arp
 * families), serve the registration checks:
 *
 * xt_hostile family [PATH]... (default nft4 nft6 nftbr nftarp): through
 * each PATH, the first valid payload of target revisions 1, 2 and 3 and of
 * the match, one rule each (table xthostile, chain c as above). One line
 * each, "FAMILY path=P ext=CONNMARK|connmark rev=R got=E read_back=B", E
 * the errno name or 0, B yes/no (read back as above) or "-" when refused.
 *
 * xt_hostile count PATH TABLE CHAIN MARK MASK appends to the existing
 * CHAIN of TABLE (PATH an nft one) a rule "connmark match MARK/MASK, then
 * nft's counter"; exit 0, or 1 with the errno on stderr.
 *
 * xt_hostile dump PATH TABLE reads, and changes
 * nothing: every rule of TABLE (legacy: the x_tables table, IPT_SO_GET_INFO
 * and IPT_SO_GET_ENTRIES or their IP6T_ twins; nft: the nft table of the
 * path's family, NFT_MSG_GETRULE), every chain, in the kernel's order. Each
 * CONNMARK target and connmark match is one line
 *
 *   CONNMARK rev R HEX      connmark rev R HEX
 *
 * R in decimal, HEX the whole info the kernel returns (legacy: the
 * XT_ALIGNed data after the extension's header; nft: NFTA_TARGET_INFO or
 * NFTA_MATCH_INFO), lowercase, two digits a byte, no spaces. Exit 0, or 1
 * with a message on stderr (2: usage).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nf_tables_compat.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include "xt_connmark.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define MAX_INFO	4096	/* the largest "too long" info */
#define LEGACY_TABLE	"mangle"
#define NFT_TABLE	"xthostile"
#define NFT_CHAIN	"c"

/* The classes run on the first four; family and count take the others. */
enum path { LEGACY4, LEGACY6, NFT4, NFT6, NFTBR, NFTARP, NR_PATHS };
#define NR_CLASS_PATHS	(NFT6 + 1)

static const char *const path_names[NR_PATHS] = {
	"legacy4", "legacy6", "nft4", "nft6", "nftbr", "nftarp",
};

static bool path_legacy(enum path p)
{
	return p == LEGACY4 || p == LEGACY6;
}

static bool path_ipv6(enum path p)
{
	return p == LEGACY6 || p == NFT6;
}

/* The nfgen_family of an nft path's messages (and par->family). */
static uint8_t path_family(enum path p)
{
	switch (p) {
	case NFTBR:
		return NFPROTO_BRIDGE;
	case NFTARP:
		return NFPROTO_ARP;
	default:
		return path_ipv6(p) ? NFPROTO_IPV6 : NFPROTO_IPV4;
	}
}

/* One extension of a rule: a CONNMARK target or a connmark match. */
struct ext {
	bool target;
	uint8_t rev;
	unsigned int len;		/* bytes of info handed to the kernel */
	unsigned char info[MAX_INFO];
};

/* One rule: at most a match and a target, in the order the kernel sees. */
struct payload {
	unsigned int n;
	struct ext ext[2];
	char desc[80];			/* no spaces: "first_bad" prints it */
};

/*
 * A class of payloads: gen() fills payload i of the class for a path and
 * returns false past the last one; arg is the class's parameter of gen (a
 * revision, a direction). want is 0 (accepted and read back) or the errno
 * every payload must get, want_legacy (if not 0) that errno through the
 * legacy paths. size: x_tables' "invalid size" message is expected in the
 * kernel log.
 */
struct class {
	const char *name;
	bool (*gen)(enum path p, unsigned int arg, unsigned int i,
		    struct payload *pl);
	unsigned int arg;
	int want;
	bool size;
	int want_legacy;
};

static int class_want(const struct class *cl, enum path p)
{
	return path_legacy(p) && cl->want_legacy ? cl->want_legacy : cl->want;
}

static const uint32_t src4 = 0xc0000201;		/* 192.0.2.1 */
static const uint8_t src6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };

/* ------------------------------------------------------------------ */
/* Payload builders                                                    */

static struct ext *add_ext(struct payload *pl, bool target, uint8_t rev,
			   const void *info, unsigned int len)
{
	struct ext *e = &pl->ext[pl->n++];

	memset(e, 0, sizeof(*e));
	e->target = target;
	e->rev = rev;
	e->len = len;
	memcpy(e->info, info, len);
	return e;
}

static void tg1(struct payload *pl, uint32_t ctmark, uint32_t ctmask,
		uint32_t nfmask, uint8_t mode)
{
	struct xt_connmark_tginfo1 i;

	memset(&i, 0, sizeof(i));
	i.ctmark = ctmark;
	i.ctmask = ctmask;
	i.nfmask = nfmask;
	i.mode = mode;
	add_ext(pl, true, 1, &i, sizeof(i));
}

static void tg2(struct payload *pl, uint32_t ctmark, uint32_t ctmask,
		uint32_t nfmask, uint8_t dir, uint8_t bits, uint8_t mode)
{
	struct xt_connmark_tginfo2 i;

	memset(&i, 0, sizeof(i));
	i.ctmark = ctmark;
	i.ctmask = ctmask;
	i.nfmask = nfmask;
	i.shift_dir = dir;
	i.shift_bits = bits;
	i.mode = mode;
	add_ext(pl, true, 2, &i, sizeof(i));
}

static void tg3(struct payload *pl, uint32_t ctmark, uint32_t ctmask,
		uint32_t nfmask, uint8_t dir, uint8_t bits, uint8_t mode,
		uint8_t func)
{
	struct xt_connmark_tginfo3 i;

	memset(&i, 0, sizeof(i));
	i.ctmark = ctmark;
	i.ctmask = ctmask;
	i.nfmask = nfmask;
	i.shift_dir = dir;
	i.shift_bits = bits;
	i.mode = mode;
	i.func = func;
	add_ext(pl, true, 3, &i, sizeof(i));
}

/* --set-dscpmark DSCPMASK/STATEMASK with shift_bits SHIFT */
static void tg3_dscp(struct payload *pl, uint32_t dscpmask, uint32_t statemask,
		     uint8_t shift)
{
	tg3(pl, dscpmask, statemask, 0, D_SHIFT_LEFT, shift, XT_CONNMARK_SET,
	    XT_CONNMARK_DSCP);
}

/* The target of revision REV (1 to 3, a plain value for 3) */
static void tg(struct payload *pl, uint8_t rev, uint32_t ctmark,
	       uint32_t ctmask, uint32_t nfmask, uint8_t dir, uint8_t bits,
	       uint8_t mode)
{
	if (rev == 1)
		tg1(pl, ctmark, ctmask, nfmask, mode);
	else if (rev == 2)
		tg2(pl, ctmark, ctmask, nfmask, dir, bits, mode);
	else
		tg3(pl, ctmark, ctmask, nfmask, dir, bits, mode,
		    XT_CONNMARK_VALUE);
}

static void mt1(struct payload *pl, uint32_t mark, uint32_t mask,
		uint8_t invert)
{
	/* Padded as iptables sends it: the legacy path wants exactly that. */
	union {
		struct xt_connmark_mtinfo1 i;
		unsigned char pad[XT_ALIGN(sizeof(struct xt_connmark_mtinfo1))];
	} u;

	memset(&u, 0, sizeof(u));
	u.i.mark = mark;
	u.i.mask = mask;
	u.i.invert = invert;
	add_ext(pl, false, 1, &u, sizeof(u));
}

#define DESC(pl, ...)	snprintf((pl)->desc, sizeof((pl)->desc), __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Classes                                                             */

/* Revision ARG with mode 3..255 */
static bool gen_mode(enum path p, unsigned int rev, unsigned int i,
		     struct payload *pl)
{
	unsigned int mode = 3 + i;

	(void)p;
	if (mode > 255)
		return false;
	tg(pl, rev, 0x11, 0xff, 0xff, D_SHIFT_LEFT, 0, mode);
	DESC(pl, "rev%u-mode=%u", rev, mode);
	return true;
}

/* Revision ARG with shift_bits 32..255, shifting left then right */
static bool gen_shift_bits(enum path p, unsigned int rev, unsigned int i,
			   struct payload *pl)
{
	uint8_t dir = i / 224, bits = 32 + i % 224;

	(void)p;
	if (i >= 2 * 224)
		return false;
	tg(pl, rev, 0x11, 0xff, 0xff, dir, bits, XT_CONNMARK_RESTORE);
	DESC(pl, "rev%u-shift_dir=%u,shift_bits=%u", rev, dir, bits);
	return true;
}

/* Revision ARG with shift_dir 2..255 */
static bool gen_shift_dir(enum path p, unsigned int rev, unsigned int i,
			  struct payload *pl)
{
	unsigned int dir = 2 + i;

	(void)p;
	if (dir > 255)
		return false;
	tg(pl, rev, 0x11, 0xff, 0xff, dir, 1, XT_CONNMARK_SAVE);
	DESC(pl, "rev%u-shift_dir=%u", rev, dir);
	return true;
}

static bool gen_t1_valid(enum path p, unsigned int arg, unsigned int i,
			 struct payload *pl)
{
	(void)p;
	(void)arg;
	switch (i) {
	case 0:
		tg1(pl, 0x11, 0xff, 0, XT_CONNMARK_SET);
		break;
	case 1:
		tg1(pl, 0, 0xff00, 0xff, XT_CONNMARK_SAVE);
		break;
	case 2:
		tg1(pl, 0, 0xff, 0xff00, XT_CONNMARK_RESTORE);
		break;
	default:
		return false;
	}
	DESC(pl, "rev1-valid-%u", i);
	return true;
}

static bool gen_t2_valid(enum path p, unsigned int arg, unsigned int i,
			 struct payload *pl)
{
	(void)p;
	(void)arg;
	switch (i) {
	case 0:
		tg2(pl, 0x11, 0xff, 0, D_SHIFT_LEFT, 0, XT_CONNMARK_SET);
		break;
	case 1:
		tg2(pl, 0, 0xff00, 0xff, D_SHIFT_LEFT, 8, XT_CONNMARK_SAVE);
		break;
	case 2:
		tg2(pl, 0, 0xff000000, 0xff, D_SHIFT_RIGHT, 24,
		    XT_CONNMARK_RESTORE);
		break;
	case 3:
		tg2(pl, 1, 1, 0, D_SHIFT_LEFT, 31, XT_CONNMARK_SET);
		break;
	default:
		return false;
	}
	DESC(pl, "rev2-valid-%u", i);
	return true;
}

static bool gen_t3_valid(enum path p, unsigned int arg, unsigned int i,
			 struct payload *pl)
{
	(void)p;
	(void)arg;
	switch (i) {
	case 0:
		tg3(pl, 0x11, 0xff, 0, D_SHIFT_LEFT, 0, XT_CONNMARK_SET,
		    XT_CONNMARK_VALUE);
		break;
	case 1:
		tg3(pl, 0, 0xf0, 0xf, D_SHIFT_LEFT, 4, XT_CONNMARK_SAVE,
		    XT_CONNMARK_VALUE);
		break;
	case 2:
		tg3(pl, 0, 0xff00, 0xff, D_SHIFT_RIGHT, 8, XT_CONNMARK_RESTORE,
		    XT_CONNMARK_VALUE);
		break;
	case 3:
		tg3_dscp(pl, 0x3f, 0, 0);
		break;
	case 4:
		tg3_dscp(pl, 0x3f00, 0x1, 8);
		break;
	case 5:
		/* OpenWrt's canonical rule; the last one the table keeps */
		tg3_dscp(pl, 0xfc000000, 0x01000000, 26);
		break;
	default:
		return false;
	}
	DESC(pl, "rev3-valid-%u", i);
	return true;
}

/*
 * OpenWrt's --save-mark and --restore-mark: revision 3 with func 0, which
 * the module runs as XT_CONNMARK_VALUE. ctmark is unused in these modes
 * (OpenWrt leaves it 0; any value is kept as it is).
 */
static bool gen_t3_func0_valid(enum path p, unsigned int arg, unsigned int i,
			       struct payload *pl)
{
	static const struct {
		uint32_t ctmark, ctmask, nfmask;
		uint8_t dir, bits, mode;
	} v[] = {
		/* --save-mark, --restore-mark as OpenWrt's init leaves them */
		{ 0, 0xffffffff, 0xffffffff, D_SHIFT_LEFT, 0, XT_CONNMARK_SAVE },
		{ 0, 0xffffffff, 0xffffffff, D_SHIFT_LEFT, 0,
		  XT_CONNMARK_RESTORE },
		{ 0, 0xff, 0xff, D_SHIFT_LEFT, 0, XT_CONNMARK_SAVE },
		{ 0, 0xff00, 0xff, D_SHIFT_LEFT, 8, XT_CONNMARK_SAVE },
		{ 0, 0xff000000, 0xff, D_SHIFT_RIGHT, 24, XT_CONNMARK_RESTORE },
		{ 0, 0xffff0000, 0x0000ffff, D_SHIFT_LEFT, 16,
		  XT_CONNMARK_RESTORE },
		{ 0, 0x80000000, 0x1, D_SHIFT_RIGHT, 31, XT_CONNMARK_SAVE },
		{ 0, 0, 0, D_SHIFT_LEFT, 0, XT_CONNMARK_RESTORE },
		{ 0xdeadbeef, 0xf0, 0x0f, D_SHIFT_LEFT, 4, XT_CONNMARK_SAVE },
	};

	(void)p;
	(void)arg;
	if (i >= ARRAY_SIZE(v))
		return false;
	tg3(pl, v[i].ctmark, v[i].ctmask, v[i].nfmask, v[i].dir, v[i].bits,
	    v[i].mode, 0);
	DESC(pl, "rev3-func0-valid-%u", i);
	return true;
}

/*
 * func 0 with SET (OpenWrt's kernel would do nothing), then 3..255 with
 * each mode: only func is wrong.
 */
static bool gen_t3_func(enum path p, unsigned int arg, unsigned int i,
			struct payload *pl)
{
	unsigned int func = i == 0 ? 0 : 3 + (i - 1) / 3;
	uint8_t mode = i == 0 ? XT_CONNMARK_SET : (i - 1) % 3;

	(void)p;
	(void)arg;
	if (func > 255)
		return false;
	/* Fields valid for either function: only func is wrong. */
	tg3(pl, 0xfc000000, 0x01000000, 0, D_SHIFT_LEFT, 26, mode, func);
	DESC(pl, "rev3-func=%u,mode=%u", func, mode);
	return true;
}

/*
 * func 0 (OpenWrt's save/restore) with another field wrong: mode 3..255,
 * then shift_dir 2..255 and shift_bits 32..255 (either direction), SAVE
 * and RESTORE in turn.
 */
static bool gen_t3_func0_bad(enum path p, unsigned int arg, unsigned int i,
			     struct payload *pl)
{
	uint8_t mode;

	(void)p;
	(void)arg;
	if (i < 253) {
		tg3(pl, 0, 0xff, 0xff, D_SHIFT_LEFT, 0, 3 + i, 0);
		DESC(pl, "rev3-func0-mode=%u", 3 + i);
		return true;
	}
	i -= 253;
	mode = i & 1 ? XT_CONNMARK_RESTORE : XT_CONNMARK_SAVE;
	if (i < 2 * 254) {
		tg3(pl, 0, 0xff, 0xff, 2 + i / 2, 1, mode, 0);
		DESC(pl, "rev3-func0-mode=%u,shift_dir=%u", mode, 2 + i / 2);
		return true;
	}
	i -= 2 * 254;
	if (i >= 2 * 224)
		return false;
	tg3(pl, 0, 0xff, 0xff, i / 224, 32 + i % 224, mode, 0);
	DESC(pl, "rev3-func0-mode=%u,shift_dir=%u,shift_bits=%u", mode,
	     i / 224, 32 + i % 224);
	return true;
}

/* Contiguous runs of every length but 6 at every position, and 0. */
static bool gen_dscp_not6(enum path p, unsigned int arg, unsigned int i,
			  struct payload *pl)
{
	unsigned int len, pos, n = 0;
	uint32_t mask;

	(void)p;
	(void)arg;
	if (i == 0) {
		tg3_dscp(pl, 0, 0, 0);
		DESC(pl, "dscpmask=0x0");
		return true;
	}
	for (len = 1; len <= 32; len++) {
		if (len == 6)
			continue;
		for (pos = 0; pos + len <= 32; pos++) {
			if (++n != i)
				continue;
			mask = (len == 32 ? 0xffffffffu : (1u << len) - 1) << pos;
			tg3_dscp(pl, mask, 0, pos);
			DESC(pl, "dscpmask=0x%x,shift_bits=%u", mask, pos);
			return true;
		}
	}
	return false;
}

/*
 * Six bits, not contiguous: every 6-of-8 pattern with its lowest bit set
 * but 0x3f, at every position it fits; then a few spread ones.
 */
static bool gen_dscp_gap(enum path p, unsigned int arg, unsigned int i,
			 struct payload *pl)
{
	static const uint32_t spread[] = {
		0x8000001f, 0x41041041, 0x8000003e, 0x0000007d, 0x00f80001,
	};
	unsigned int pat, pos, n = 0;
	uint32_t mask;
	int low;

	(void)p;
	(void)arg;
	for (pat = 1; pat < 0x100; pat += 2) {
		if (__builtin_popcount(pat) != 6 || pat == 0x3f)
			continue;
		for (pos = 0; pos + 8 <= 32; pos++) {
			if (n++ != i)
				continue;
			mask = pat << pos;
			tg3_dscp(pl, mask, 0, pos);
			DESC(pl, "dscpmask=0x%x,shift_bits=%u", mask, pos);
			return true;
		}
	}
	if (i - n >= ARRAY_SIZE(spread))
		return false;
	mask = spread[i - n];
	low = __builtin_ctz(mask);
	tg3_dscp(pl, mask, 0, low);
	DESC(pl, "dscpmask=0x%x,shift_bits=%d", mask, low);
	return true;
}

/* A valid dscpmask at every position, statemask overlapping it. */
static bool gen_dscp_overlap(enum path p, unsigned int arg, unsigned int i,
			     struct payload *pl)
{
	unsigned int pos = i / 8, k = i % 8;
	uint32_t mask, state;

	(void)p;
	(void)arg;
	if (pos > 26)
		return false;
	mask = 0x3fu << pos;
	if (k < 6)
		state = 1u << (pos + k);	/* one bit of the dscpmask */
	else if (k == 6)
		state = mask;
	else
		state = 0xffffffff;
	tg3_dscp(pl, mask, state, pos);
	DESC(pl, "dscpmask=0x%x,statemask=0x%x", mask, state);
	return true;
}

/* A valid dscpmask at every position, shift_bits anything else. */
static bool gen_dscp_shift(enum path p, unsigned int arg, unsigned int i,
			   struct payload *pl)
{
	static const uint8_t big[] = { 63, 64, 127, 128, 200, 254, 255 };
	const unsigned int per = 41 + ARRAY_SIZE(big);	/* 0..40, big[] */
	unsigned int pos = i / per, k = i % per, shift;

	(void)p;
	(void)arg;
	if (pos > 26)
		return false;
	shift = k <= 40 ? k : big[k - 41];
	if (shift == pos)	/* the right one: take 41 instead */
		shift = 41;
	tg3_dscp(pl, 0x3fu << pos, 0, shift);
	DESC(pl, "dscpmask=0x%x,shift_bits=%u", 0x3fu << pos, shift);
	return true;
}

/*
 * Otherwise valid --set-dscpmark with mode 1..255 (only SET does DSCP:
 * SAVE and RESTORE too are refused) or shift_dir 2..255.
 */
static bool gen_dscp_mode_dir(enum path p, unsigned int arg, unsigned int i,
			      struct payload *pl)
{
	(void)p;
	(void)arg;
	if (i < 255) {
		tg3(pl, 0xfc000000, 0x01000000, 0, D_SHIFT_LEFT, 26, 1 + i,
		    XT_CONNMARK_DSCP);
		DESC(pl, "dscp-mode=%u", 1 + i);
		return true;
	}
	i -= 255;
	if (i >= 254)
		return false;
	tg3(pl, 0xfc000000, 0x01000000, 0, 2 + i, 26, XT_CONNMARK_SET,
	    XT_CONNMARK_DSCP);
	DESC(pl, "dscp-shift_dir=%u", 2 + i);
	return true;
}

static bool gen_m1_valid(enum path p, unsigned int arg, unsigned int i,
			 struct payload *pl)
{
	(void)arg;
	switch (i) {
	case 0:
		mt1(pl, 0x11, 0xff, 0);
		break;
	case 1:
		mt1(pl, 0, 0xffffffff, 1);
		break;
	case 2:
		/* nft_compat takes the unpadded size as well */
		if (path_legacy(p))
			return false;
		mt1(pl, 0x22, 0xff, 1);
		pl->ext[0].len = sizeof(struct xt_connmark_mtinfo1);
		break;
	default:
		return false;
	}
	DESC(pl, "match-valid-%u", i);
	return true;
}

static bool gen_m1_invert(enum path p, unsigned int arg, unsigned int i,
			  struct payload *pl)
{
	unsigned int inv = 2 + i;

	(void)p;
	(void)arg;
	if (inv > 255)
		return false;
	mt1(pl, 0x11, 0xff, inv);
	DESC(pl, "invert=%u", inv);
	return true;
}

/*
 * Info sizes. The legacy path takes exactly XT_ALIGN(size); nft_compat
 * takes from size to XT_ALIGN(size) bytes (shorter: too short, longer:
 * x_tables' size check). Too short: every length below; too long: every
 * length up to 64 bytes more, then 256, 1024 and MAX_INFO.
 */
struct ext_kind {
	bool target;
	uint8_t rev;
	unsigned int size;
};

static const struct ext_kind ext_kinds[] = {
	{ true, 1, sizeof(struct xt_connmark_tginfo1) },
	{ true, 2, sizeof(struct xt_connmark_tginfo2) },
	{ true, 3, sizeof(struct xt_connmark_tginfo3) },
	{ false, 1, sizeof(struct xt_connmark_mtinfo1) },
};

static unsigned int min_ok(enum path p, const struct ext_kind *k)
{
	return path_legacy(p) ? XT_ALIGN(k->size) : k->size;
}

static bool size_value(enum path p, unsigned int i, bool longer,
		       const struct ext_kind **kind, unsigned int *len)
{
	static const unsigned int big[] = { 256, 1024, MAX_INFO };
	unsigned int k, n;

	for (k = 0; k < ARRAY_SIZE(ext_kinds); k++) {
		n = longer ? 64 + ARRAY_SIZE(big) : min_ok(p, &ext_kinds[k]);
		if (i < n) {
			*kind = &ext_kinds[k];
			if (!longer)
				*len = i;
			else if (i < 64)
				*len = XT_ALIGN(ext_kinds[k].size) + 1 + i;
			else
				*len = big[i - 64];
			return true;
		}
		i -= n;
	}
	return false;
}

/* Every extension with an info of each wrong size: shorter, or (ARG)
 * longer
 */
static bool gen_size(enum path p, unsigned int longer, unsigned int i,
		     struct payload *pl)
{
	const struct ext_kind *kind;
	unsigned char info[MAX_INFO];
	unsigned int len;

	if (!size_value(p, i, longer, &kind, &len))
		return false;
	/* A valid info, cut or padded with a pattern. */
	memset(info, 0x5a, sizeof(info));
	if (kind->target) {
		struct xt_connmark_tginfo3 t = {
			.ctmark = 0x11, .ctmask = 0xff, .nfmask = 0xff,
			.mode = XT_CONNMARK_SET, .func = XT_CONNMARK_VALUE,
		};

		if (kind->rev < 3)	/* rev 1 and 2: mode is at 12 or 14 */
			memset((unsigned char *)&t + 12, 0, 4);
		memcpy(info, &t, len < sizeof(t) ? len : sizeof(t));
	} else {
		struct xt_connmark_mtinfo1 m = { .mark = 0x11, .mask = 0xff };

		memcpy(info, &m, len < sizeof(m) ? len : sizeof(m));
	}
	add_ext(pl, kind->target, kind->rev, info, len);
	DESC(pl, "%s-rev%u-len=%u", kind->target ? "CONNMARK" : "connmark",
	     kind->rev, len);
	return true;
}

/* Revisions the module does not have, with an info of the right size. */
static bool gen_unknown_rev(enum path p, unsigned int arg, unsigned int i,
			    struct payload *pl)
{
	static const uint8_t tg_revs[] = { 0, 4, 5, 128, 255 };
	static const uint8_t mt_revs[] = { 0, 2, 3, 255 };
	struct xt_connmark_tginfo3 t = { .ctmask = 0xff, .nfmask = 0xff,
					 .func = XT_CONNMARK_VALUE };
	struct xt_connmark_mtinfo1 m = { .mask = 0xff };
	unsigned char mbuf[XT_ALIGN(sizeof(m))] = { 0 };

	(void)p;
	if (arg) {
		if (i >= ARRAY_SIZE(tg_revs))
			return false;
		add_ext(pl, true, tg_revs[i], &t, sizeof(t));
		DESC(pl, "CONNMARK-rev%u", tg_revs[i]);
		return true;
	}
	if (i >= ARRAY_SIZE(mt_revs))
		return false;
	memcpy(mbuf, &m, sizeof(m));
	add_ext(pl, false, mt_revs[i], mbuf, sizeof(mbuf));
	DESC(pl, "connmark-rev%u", mt_revs[i]);
	return true;
}

/*
 * A valid connmark match, then a bad CONNMARK: the match's checkentry has
 * taken its conntrack reference, which the unwinding must give back.
 */
static bool gen_combo_mt_tg(enum path p, unsigned int arg, unsigned int i,
			    struct payload *pl)
{
	(void)p;
	(void)arg;
	mt1(pl, 0x11, 0xff, 0);
	switch (i) {
	case 0:
		tg1(pl, 0x11, 0xff, 0xff, 3);
		break;
	case 1:
		tg2(pl, 0x11, 0xff, 0xff, D_SHIFT_LEFT, 32, XT_CONNMARK_SET);
		break;
	case 2:
		tg2(pl, 0x11, 0xff, 0xff, 2, 1, XT_CONNMARK_SET);
		break;
	case 3:
		tg3(pl, 0x11, 0xff, 0xff, D_SHIFT_LEFT, 0, XT_CONNMARK_SET, 0);
		break;
	case 4:
		tg3_dscp(pl, 0xfc000000, 0x01000000, 25);
		break;
	default:
		return false;
	}
	DESC(pl, "valid-match+bad-target-%u", i);
	return true;
}

/* nft only (x_tables checks matches first): a valid target, a bad match. */
static bool gen_combo_tg_mt(enum path p, unsigned int arg, unsigned int i,
			    struct payload *pl)
{
	(void)arg;
	if (path_legacy(p) || i >= 4)
		return false;
	if (i & 1)
		tg3_dscp(pl, 0xfc000000, 0x01000000, 26);
	else
		tg2(pl, 0x11, 0xff, 0, D_SHIFT_LEFT, 0, XT_CONNMARK_SET);
	mt1(pl, 0x11, 0xff, i < 2 ? 2 : 255);
	DESC(pl, "valid-target+bad-match-%u", i);
	return true;
}

#define VALID(n, g)		{ .name = n, .gen = g }
#define REFUSED(n, g, a, e)	{ .name = n, .gen = g, .arg = a, .want = e }

static const struct class classes[] = {
	VALID("match_valid", gen_m1_valid),
	VALID("rev1_valid", gen_t1_valid),
	VALID("rev2_valid", gen_t2_valid),
	/* Before rev3_valid: legacy keeps the last valid rule, a DSCP one. */
	VALID("rev3_func0_save_restore_valid", gen_t3_func0_valid),
	VALID("rev3_valid", gen_t3_valid),
	REFUSED("rev1_mode_3-255", gen_mode, 1, EINVAL),
	REFUSED("rev2_shift_bits_32-255", gen_shift_bits, 2, EINVAL),
	REFUSED("rev2_shift_dir_2-255", gen_shift_dir, 2, EINVAL),
	REFUSED("rev2_mode_3-255", gen_mode, 2, EINVAL),
	REFUSED("rev3_func_0_set,3-255", gen_t3_func, 0, EINVAL),
	REFUSED("rev3_func0_bad_mode_shift", gen_t3_func0_bad, 0, EINVAL),
	REFUSED("rev3_shift_bits_32-255", gen_shift_bits, 3, EINVAL),
	REFUSED("rev3_shift_dir_2-255", gen_shift_dir, 3, EINVAL),
	REFUSED("rev3_mode_3-255", gen_mode, 3, EINVAL),
	REFUSED("rev3_dscpmask_not_6_bits", gen_dscp_not6, 0, EINVAL),
	REFUSED("rev3_dscpmask_not_contiguous", gen_dscp_gap, 0, EINVAL),
	REFUSED("rev3_statemask_overlaps", gen_dscp_overlap, 0, EINVAL),
	REFUSED("rev3_dscp_shift_bits_disagree", gen_dscp_shift, 0, EINVAL),
	REFUSED("rev3_dscp_mode_1-255_or_shift_dir", gen_dscp_mode_dir, 0,
		EINVAL),
	REFUSED("match_invert_2-255", gen_m1_invert, 0, EINVAL),
	{ .name = "info_too_short", .gen = gen_size, .arg = false,
	  .want = EINVAL, .size = true },
	{ .name = "info_too_long", .gen = gen_size, .arg = true,
	  .want = EINVAL, .size = true },
	REFUSED("target_unknown_revision", gen_unknown_rev, true, ENOENT),
	/*
	 * The match is registered for NFPROTO_UNSPEC (as upstream's): x_tables
	 * finds its name there, not the revision, and says EPROTOTYPE to a
	 * legacy table; nft_compat says ENOENT to any lookup that fails.
	 */
	{ .name = "match_unknown_revision", .gen = gen_unknown_rev,
	  .arg = false, .want = ENOENT, .want_legacy = EPROTOTYPE },
	REFUSED("valid_match_bad_target", gen_combo_mt_tg, 0, EINVAL),
	REFUSED("valid_target_bad_match", gen_combo_tg_mt, 0, EINVAL),
};

/* ------------------------------------------------------------------ */
/* Rules read back from the kernel                                     */

/*
 * One extension of a rule as the kernel returns it. name is NULL for an
 * nft expression that is not nft_compat's "match" or "target".
 */
struct ext_seen {
	bool target;
	const char *name;
	unsigned int rev;
	const unsigned char *info;
	unsigned int len;
};

/* Called for each extension of a rule, in order; false stops the walk. */
typedef bool ext_fn(void *ctx, const struct ext_seen *x);

/* An extension read back from the kernel matches what was sent. */
static bool ext_equal(const struct ext *e, const struct ext_seen *x)
{
	unsigned int k;

	if (!x->name || e->target != x->target || e->rev != x->rev ||
	    strcmp(x->name, x->target ? "CONNMARK" : "connmark"))
		return false;
	for (k = 0; k < x->len || k < e->len; k++) {
		unsigned char a = k < e->len ? e->info[k] : 0;
		unsigned char b = k < x->len ? x->info[k] : 0;

		if (a != b)
			return false;
	}
	return true;
}

/* A rule read back against the payload: k extensions equal so far. */
struct verify {
	const struct payload *pl;
	unsigned int k;
};

static bool verify_ext(void *ctx, const struct ext_seen *x)
{
	struct verify *v = ctx;

	if (v->k < v->pl->n && ext_equal(&v->pl->ext[v->k], x)) {
		v->k++;
		return true;
	}
	/* legacy: a payload without a CONNMARK ends with ACCEPT */
	return v->k == v->pl->n && x->target && x->name &&
	       !strcmp(x->name, XT_STANDARD_TARGET);
}

/* The CONNMARK targets and connmark matches, one line each. */
static bool dump_ext(void *ctx, const struct ext_seen *x)
{
	unsigned int k;

	(void)ctx;
	if (!x->name || strcmp(x->name, x->target ? "CONNMARK" : "connmark"))
		return true;
	printf("%s rev %u ", x->name, x->rev);
	for (k = 0; k < x->len; k++)
		printf("%02x", x->info[k]);
	putchar('\n');
	return true;
}

/* ------------------------------------------------------------------ */
/* Legacy path: IPT_SO_SET_REPLACE / IP6T_SO_SET_REPLACE, GET_ENTRIES  */

struct legacy {
	int fd, level, so_info, so_entries, so_replace;
	unsigned int hdr;	/* sizeof(struct ipt_entry or ip6t_entry) */
	bool v6;
};

static unsigned char table_buf[sizeof(struct ipt_replace) + 16384];

static int legacy_open(struct legacy *l, bool v6)
{
	memset(l, 0, sizeof(*l));
	l->v6 = v6;
	l->fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (l->fd < 0)
		return -errno;
	l->level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
	l->so_info = v6 ? IP6T_SO_GET_INFO : IPT_SO_GET_INFO;
	l->so_entries = v6 ? IP6T_SO_GET_ENTRIES : IPT_SO_GET_ENTRIES;
	l->so_replace = v6 ? IP6T_SO_SET_REPLACE : IPT_SO_SET_REPLACE;
	l->hdr = v6 ? sizeof(struct ip6t_entry) : sizeof(struct ipt_entry);
	return 0;
}

/* ipt_getinfo and ip6t_getinfo have the same layout. */
static int legacy_info(const struct legacy *l, const char *table,
		       struct ipt_getinfo *info)
{
	socklen_t len = sizeof(*info);

	memset(info, 0, sizeof(*info));
	if (strlen(table) >= sizeof(info->name))
		return -ENAMETOOLONG;
	strcpy(info->name, table);
	if (getsockopt(l->fd, l->level, l->so_info, info, &len) < 0)
		return -errno;
	return 0;
}

/* Write an entry header at off: the rule's matches the source address. */
static void legacy_entry(const struct legacy *l, unsigned char *base,
			 unsigned int off, unsigned int target_offset,
			 unsigned int next_offset, bool rule)
{
	if (l->v6) {
		struct ip6t_entry *e = (void *)(base + off);

		if (rule) {
			memcpy(&e->ipv6.src, src6, 16);
			memset(&e->ipv6.smsk, 0xff, 16);
		}
		e->target_offset = target_offset;
		e->next_offset = next_offset;
	} else {
		struct ipt_entry *e = (void *)(base + off);

		if (rule) {
			e->ip.src.s_addr = htonl(src4);
			e->ip.smsk.s_addr = 0xffffffff;
		}
		e->target_offset = target_offset;
		e->next_offset = next_offset;
	}
}

static unsigned int legacy_policy(const struct legacy *l, unsigned char *base,
				  unsigned int off)
{
	struct xt_standard_target *st = (void *)(base + off + l->hdr);
	unsigned int size = XT_ALIGN(sizeof(*st));

	legacy_entry(l, base, off, l->hdr, l->hdr + size, false);
	st->target.u.user.target_size = size;
	st->verdict = -NF_ACCEPT - 1;
	return l->hdr + size;
}

static unsigned int legacy_error(const struct legacy *l, unsigned char *base,
				 unsigned int off)
{
	struct xt_error_target *et = (void *)(base + off + l->hdr);
	unsigned int size = XT_ALIGN(sizeof(*et));

	legacy_entry(l, base, off, l->hdr, l->hdr + size, false);
	et->target.u.user.target_size = size;
	strcpy(et->target.u.user.name, XT_ERROR_TARGET);
	strcpy(et->errorname, XT_ERROR_TARGET);
	return l->hdr + size;
}

/*
 * The rule: matches, then the target (CONNMARK, or ACCEPT when the payload
 * has none). The legacy layout cannot put a match after the target.
 */
static unsigned int legacy_rule(const struct legacy *l, unsigned char *base,
				const struct payload *pl)
{
	unsigned int off = l->hdr, k, target_offset, next_offset;
	const struct ext *tg = NULL;

	for (k = 0; k < pl->n; k++) {
		const struct ext *e = &pl->ext[k];
		struct xt_entry_match *m = (void *)(base + off);

		if (e->target) {
			tg = e;
			continue;
		}
		m->u.user.match_size = sizeof(*m) + e->len;
		strcpy(m->u.user.name, "connmark");
		m->u.user.revision = e->rev;
		memcpy(m->data, e->info, e->len);
		off += sizeof(*m) + e->len;
	}
	/* After a match of a size not a multiple of 8 the target is not
	 * aligned (the kernel refuses that): write it with memcpy.
	 */
	target_offset = off;
	if (tg) {
		struct xt_entry_target t;

		memset(&t, 0, sizeof(t));
		t.u.user.target_size = sizeof(t) + tg->len;
		strcpy(t.u.user.name, "CONNMARK");
		t.u.user.revision = tg->rev;
		memcpy(base + off, &t, sizeof(t));
		memcpy(base + off + sizeof(t), tg->info, tg->len);
		next_offset = XT_ALIGN(off + sizeof(t) + tg->len);
	} else {
		struct xt_standard_target st;

		memset(&st, 0, sizeof(st));
		st.target.u.user.target_size = XT_ALIGN(sizeof(st));
		st.verdict = -NF_ACCEPT - 1;
		memcpy(base + off, &st, sizeof(st));
		next_offset = XT_ALIGN(off + sizeof(st));
	}
	legacy_entry(l, base, 0, target_offset, next_offset, true);
	return next_offset;
}

/* Replace the mangle table by the rule, the policies and the error entry. */
static int legacy_install(const struct legacy *l, const struct payload *pl)
{
	struct ipt_replace *r = (void *)table_buf;
	unsigned char *base = table_buf + sizeof(*r);
	struct xt_counters *counters;
	struct ipt_getinfo info;
	unsigned int off, h;
	int ret;

	ret = legacy_info(l, LEGACY_TABLE, &info);
	if (ret < 0)
		return ret;
	memset(table_buf, 0, sizeof(table_buf));
	strcpy(r->name, LEGACY_TABLE);
	r->valid_hooks = (1 << NF_INET_NUMHOOKS) - 1;
	off = legacy_rule(l, base, pl);
	for (h = 0; h < NF_INET_NUMHOOKS; h++) {
		r->hook_entry[h] = h == NF_INET_PRE_ROUTING ? 0 : off;
		r->underflow[h] = off;
		off += legacy_policy(l, base, off);
	}
	off += legacy_error(l, base, off);
	r->num_entries = NF_INET_NUMHOOKS + 2;
	r->size = off;
	r->num_counters = info.num_entries;
	counters = calloc(info.num_entries, sizeof(*counters));
	if (!counters)
		return -ENOMEM;
	r->counters = counters;
	ret = setsockopt(l->fd, l->level, l->so_replace, r, sizeof(*r) + off);
	ret = ret < 0 ? -errno : 0;
	free(counters);
	return ret;
}

/*
 * The entries of TABLE (IPT_SO_GET_ENTRIES, IP6T_SO_GET_ENTRIES, the same
 * layout): *gep, to be freed, and the table's info.
 */
static int legacy_entries(const struct legacy *l, const char *table,
			  struct ipt_getinfo *info,
			  struct ipt_get_entries **gep)
{
	struct ipt_get_entries *ge;
	socklen_t len;
	int ret;

	ret = legacy_info(l, table, info);
	if (ret < 0)
		return ret;
	len = sizeof(*ge) + info->size;
	ge = calloc(1, len);
	if (!ge)
		return -ENOMEM;
	memcpy(ge->name, info->name, sizeof(ge->name));
	ge->size = info->size;
	if (getsockopt(l->fd, l->level, l->so_entries, ge, &len) < 0) {
		ret = -errno;
		free(ge);
		return ret;
	}
	*gep = ge;
	return 0;
}

/* Extension names as the kernel returns them, NUL-terminated here. */
static const char *legacy_name(char *buf, const char *name)
{
	memcpy(buf, name, XT_EXTENSION_MAXNAMELEN);
	buf[XT_EXTENSION_MAXNAMELEN] = '\0';
	return buf;
}

/*
 * Call fn for each match, then the target, of the entry at off of the
 * size bytes at base. Returns the entry's next_offset, or 0 when the entry
 * is malformed or fn stopped.
 */
static unsigned int legacy_entry_exts(const struct legacy *l,
				      const unsigned char *base,
				      unsigned int off, unsigned int size,
				      ext_fn *fn, void *ctx)
{
	const unsigned char *e = base + off;
	char name[XT_EXTENSION_MAXNAMELEN + 1];
	const struct xt_entry_target *t;
	unsigned int tgoff, next, m;
	struct ext_seen x;

	if (off + l->hdr > size)
		return 0;
	if (l->v6) {
		tgoff = ((const struct ip6t_entry *)e)->target_offset;
		next = ((const struct ip6t_entry *)e)->next_offset;
	} else {
		tgoff = ((const struct ipt_entry *)e)->target_offset;
		next = ((const struct ipt_entry *)e)->next_offset;
	}
	if (tgoff < l->hdr || tgoff + sizeof(*t) > next || off + next > size)
		return 0;
	for (m = l->hdr; m < tgoff; ) {
		const struct xt_entry_match *mt = (const void *)(e + m);

		if (m + sizeof(*mt) > tgoff || mt->u.match_size < sizeof(*mt) ||
		    m + mt->u.match_size > tgoff)
			return 0;
		x = (struct ext_seen){
			.name = legacy_name(name, mt->u.user.name),
			.rev = mt->u.user.revision, .info = mt->data,
			.len = mt->u.match_size - sizeof(*mt),
		};
		if (!fn(ctx, &x))
			return 0;
		m += mt->u.match_size;
	}
	t = (const void *)(e + tgoff);
	if (t->u.target_size < sizeof(*t) || tgoff + t->u.target_size > next)
		return 0;
	x = (struct ext_seen){
		.target = true, .name = legacy_name(name, t->u.user.name),
		.rev = t->u.user.revision, .info = t->data,
		.len = t->u.target_size - sizeof(*t),
	};
	return fn(ctx, &x) ? next : 0;
}

/* The table's first rule (head of PREROUTING) is the payload. */
static bool legacy_verify(const struct legacy *l, const struct payload *pl)
{
	struct verify v = { .pl = pl };
	struct ipt_get_entries *ge;
	struct ipt_getinfo info;
	bool ok;

	if (legacy_entries(l, LEGACY_TABLE, &info, &ge) < 0)
		return false;
	ok = info.hook_entry[0] == 0 &&
	     info.num_entries == NF_INET_NUMHOOKS + 2 &&
	     legacy_entry_exts(l, (const void *)ge->entrytable, 0, ge->size,
			       verify_ext, &v) &&
	     v.k == pl->n;
	free(ge);
	return ok;
}

/* dump: every entry of TABLE, in the kernel's order. */
static int legacy_dump(const struct legacy *l, const char *table)
{
	const unsigned char *base;
	struct ipt_get_entries *ge;
	struct ipt_getinfo info;
	unsigned int off, next, n = 0;
	int ret;

	ret = legacy_entries(l, table, &info, &ge);
	if (ret < 0)
		return ret;
	base = (const void *)ge->entrytable;
	for (off = 0; off < ge->size; off += next, n++) {
		next = legacy_entry_exts(l, base, off, ge->size, dump_ext, NULL);
		if (!next)
			break;
	}
	ret = off == ge->size && n == info.num_entries ? 0 : -EBADMSG;
	free(ge);
	return ret;
}

/* ------------------------------------------------------------------ */
/* nft_compat path                                                     */

struct nlbuf {
	unsigned char data[65536];
	size_t len;
};

static struct nlbuf nlb;
static unsigned char rxbuf[65536];
static uint32_t nl_seq = 1;

static void *nl_put(struct nlbuf *b, size_t len)
{
	void *p = b->data + b->len;

	memset(p, 0, NLMSG_ALIGN(len));
	b->len += NLMSG_ALIGN(len);
	return p;
}

static size_t nl_msg(struct nlbuf *b, uint16_t type, uint16_t flags,
		     uint8_t family, uint16_t res_id)
{
	size_t start = b->len;
	struct nlmsghdr *nlh = nl_put(b, sizeof(*nlh));
	struct nfgenmsg *nfg = nl_put(b, sizeof(*nfg));

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = nl_seq++;
	nfg->nfgen_family = family;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(res_id);
	return start;
}

static void nl_msg_end(struct nlbuf *b, size_t start)
{
	((struct nlmsghdr *)(b->data + start))->nlmsg_len = b->len - start;
}

static void nla_add(struct nlbuf *b, uint16_t type, const void *data,
		    size_t len)
{
	struct nlattr *a = nl_put(b, NLA_HDRLEN + len);

	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memcpy((unsigned char *)a + NLA_HDRLEN, data, len);
}

static void nla_str(struct nlbuf *b, uint16_t type, const char *s)
{
	nla_add(b, type, s, strlen(s) + 1);
}

static void nla_be32(struct nlbuf *b, uint16_t type, uint32_t v)
{
	v = htonl(v);
	nla_add(b, type, &v, sizeof(v));
}

static size_t nla_nest(struct nlbuf *b, uint16_t type)
{
	size_t start = b->len;
	struct nlattr *a = nl_put(b, NLA_HDRLEN);

	a->nla_type = NLA_F_NESTED | type;
	return start;
}

static void nla_nest_end(struct nlbuf *b, size_t start)
{
	((struct nlattr *)(b->data + start))->nla_len = b->len - start;
}

static uint16_t nft_type(int msg)
{
	return NFNL_SUBSYS_NFTABLES << 8 | msg;
}

static void batch_begin(struct nlbuf *b)
{
	b->len = 0;
	nl_msg_end(b, nl_msg(b, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC,
			     NFNL_SUBSYS_NFTABLES));
}

static void batch_end(struct nlbuf *b)
{
	nl_msg_end(b, nl_msg(b, NFNL_MSG_BATCH_END, 0, AF_UNSPEC,
			     NFNL_SUBSYS_NFTABLES));
}

static int nl_send(int fd, const struct nlbuf *b)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };

	if (sendto(fd, b->data, b->len, 0, (struct sockaddr *)&sa,
		   sizeof(sa)) < 0)
		return -errno;
	return 0;
}

/* Send a batch and wait for acks: the first error, or 0. */
static int nl_batch(int fd, const struct nlbuf *b, unsigned int acks)
{
	int ret = nl_send(fd, b), first = 0;

	if (ret < 0)
		return ret;
	while (acks > 0) {
		ssize_t n = recv(fd, rxbuf, sizeof(rxbuf), 0);
		struct nlmsghdr *nlh;
		size_t left;

		if (n < 0)
			return -errno;
		left = n;
		for (nlh = (void *)rxbuf; NLMSG_OK(nlh, left);
		     nlh = NLMSG_NEXT(nlh, left)) {
			const struct nlmsgerr *err = NLMSG_DATA(nlh);

			if (nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			if (err->error && !first)
				first = err->error;
			if (acks > 0)
				acks--;
			/* An error on the batch itself: no more acks. */
			if (err->error && err->msg.nlmsg_type ==
			    NFNL_MSG_BATCH_BEGIN)
				acks = 0;
		}
	}
	return first;
}

static int nft_open(void)
{
	struct timeval tv = { .tv_sec = 30 };
	int fd;

	fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static int nft_setup(int fd, uint8_t family)
{
	size_t m;

	batch_begin(&nlb);
	m = nl_msg(&nlb, nft_type(NFT_MSG_NEWTABLE), NLM_F_CREATE | NLM_F_ACK,
		   family, 0);
	nla_str(&nlb, NFTA_TABLE_NAME, NFT_TABLE);
	nl_msg_end(&nlb, m);
	m = nl_msg(&nlb, nft_type(NFT_MSG_NEWCHAIN), NLM_F_CREATE | NLM_F_ACK,
		   family, 0);
	nla_str(&nlb, NFTA_CHAIN_TABLE, NFT_TABLE);
	nla_str(&nlb, NFTA_CHAIN_NAME, NFT_CHAIN);
	nl_msg_end(&nlb, m);
	batch_end(&nlb);
	return nl_batch(fd, &nlb, 2);
}

/* Append the payload's rule to TABLE CHAIN, then a counter if asked. */
static int nft_rule_add(int fd, uint8_t family, const char *table,
			const char *chain, const struct payload *pl,
			bool counter)
{
	size_t m, exprs, elem, data;
	unsigned int k;

	batch_begin(&nlb);
	m = nl_msg(&nlb, nft_type(NFT_MSG_NEWRULE),
		   NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, family, 0);
	nla_str(&nlb, NFTA_RULE_TABLE, table);
	nla_str(&nlb, NFTA_RULE_CHAIN, chain);
	exprs = nla_nest(&nlb, NFTA_RULE_EXPRESSIONS);
	for (k = 0; k < pl->n; k++) {
		const struct ext *e = &pl->ext[k];

		/* NFTA_MATCH_* have the numbers of NFTA_TARGET_* */
		elem = nla_nest(&nlb, NFTA_LIST_ELEM);
		nla_str(&nlb, NFTA_EXPR_NAME, e->target ? "target" : "match");
		data = nla_nest(&nlb, NFTA_EXPR_DATA);
		nla_str(&nlb, NFTA_TARGET_NAME,
			e->target ? "CONNMARK" : "connmark");
		nla_be32(&nlb, NFTA_TARGET_REV, e->rev);
		nla_add(&nlb, NFTA_TARGET_INFO, e->info, e->len);
		nla_nest_end(&nlb, data);
		nla_nest_end(&nlb, elem);
	}
	if (counter) {
		elem = nla_nest(&nlb, NFTA_LIST_ELEM);
		nla_str(&nlb, NFTA_EXPR_NAME, "counter");
		nla_nest_end(&nlb, elem);
	}
	nla_nest_end(&nlb, exprs);
	nl_msg_end(&nlb, m);
	batch_end(&nlb);
	return nl_batch(fd, &nlb, 1);
}

static int nft_install(int fd, uint8_t family, const struct payload *pl)
{
	return nft_rule_add(fd, family, NFT_TABLE, NFT_CHAIN, pl, false);
}

/* The attributes of a nest, by type (the last one of each wins). */
static void nla_parse(const void *data, size_t len, const struct nlattr **tb,
		      unsigned int max)
{
	const struct nlattr *a = data;

	memset(tb, 0, (max + 1) * sizeof(*tb));
	while (len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN &&
	       a->nla_len <= len) {
		unsigned int type = a->nla_type & NLA_TYPE_MASK;

		if (type <= max)
			tb[type] = a;
		if ((size_t)NLA_ALIGN(a->nla_len) >= len)
			break;
		len -= NLA_ALIGN(a->nla_len);
		a = (const void *)((const unsigned char *)a +
				   NLA_ALIGN(a->nla_len));
	}
}

static const void *nla_data(const struct nlattr *a)
{
	return (const unsigned char *)a + NLA_HDRLEN;
}

static size_t nla_len(const struct nlattr *a)
{
	return a->nla_len - NLA_HDRLEN;
}

/*
 * Call fn for each expression of one dumped rule (NFT_MSG_NEWRULE): name
 * and info for nft_compat's, name NULL for the others. False when fn
 * stopped or the rule has no expressions.
 */
static bool nft_rule_exts(const struct nlmsghdr *nlh, ext_fn *fn, void *ctx)
{
	const struct nlattr *tb[NFTA_RULE_MAX + 1], *etb[NFTA_EXPR_MAX + 1];
	const struct nlattr *xtb[NFTA_TARGET_MAX + 1], *a;
	const size_t hdr = NLMSG_LENGTH(sizeof(struct nfgenmsg));
	size_t left;

	if (nlh->nlmsg_len < hdr)
		return false;
	nla_parse((const unsigned char *)nlh + hdr, nlh->nlmsg_len - hdr, tb,
		  NFTA_RULE_MAX);
	if (!tb[NFTA_RULE_EXPRESSIONS])
		return false;
	a = nla_data(tb[NFTA_RULE_EXPRESSIONS]);
	left = nla_len(tb[NFTA_RULE_EXPRESSIONS]);
	while (left >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN &&
	       a->nla_len <= left) {
		struct ext_seen x = { .name = NULL };
		const char *ename = "";
		uint32_t rev;

		/* NFTA_MATCH_* have the numbers of NFTA_TARGET_* */
		nla_parse(nla_data(a), nla_len(a), etb, NFTA_EXPR_MAX);
		if (etb[NFTA_EXPR_NAME])
			ename = nla_data(etb[NFTA_EXPR_NAME]);
		x.target = !strcmp(ename, "target");
		memset(xtb, 0, sizeof(xtb));
		if ((x.target || !strcmp(ename, "match")) && etb[NFTA_EXPR_DATA])
			nla_parse(nla_data(etb[NFTA_EXPR_DATA]),
				  nla_len(etb[NFTA_EXPR_DATA]), xtb,
				  NFTA_TARGET_MAX);
		if (xtb[NFTA_TARGET_NAME] && xtb[NFTA_TARGET_REV] &&
		    xtb[NFTA_TARGET_INFO] &&
		    nla_len(xtb[NFTA_TARGET_REV]) == sizeof(rev)) {
			memcpy(&rev, nla_data(xtb[NFTA_TARGET_REV]),
			       sizeof(rev));
			x.name = nla_data(xtb[NFTA_TARGET_NAME]);
			x.rev = ntohl(rev);
			x.info = nla_data(xtb[NFTA_TARGET_INFO]);
			x.len = nla_len(xtb[NFTA_TARGET_INFO]);
		}
		if (!fn(ctx, &x))
			return false;
		if ((size_t)NLA_ALIGN(a->nla_len) >= left)
			break;
		left -= NLA_ALIGN(a->nla_len);
		a = (const void *)((const unsigned char *)a +
				   NLA_ALIGN(a->nla_len));
	}
	return true;
}

/*
 * Dump the rules of TABLE (and CHAIN, unless NULL) with NFT_MSG_GETRULE:
 * rule_fn for each, in the kernel's order. 0 or -errno.
 */
static int nft_rules(int fd, uint8_t family, const char *table,
		     const char *chain,
		     void (*rule_fn)(void *ctx, const struct nlmsghdr *nlh),
		     void *ctx)
{
	size_t m;
	int ret;

	nlb.len = 0;
	m = nl_msg(&nlb, nft_type(NFT_MSG_GETRULE), NLM_F_DUMP, family, 0);
	nla_str(&nlb, NFTA_RULE_TABLE, table);
	if (chain)
		nla_str(&nlb, NFTA_RULE_CHAIN, chain);
	nl_msg_end(&nlb, m);
	ret = nl_send(fd, &nlb);
	if (ret < 0)
		return ret;
	for (;;) {
		ssize_t n = recv(fd, rxbuf, sizeof(rxbuf), 0);
		struct nlmsghdr *nlh;
		size_t left;

		if (n < 0)
			return -errno;
		left = n;
		for (nlh = (void *)rxbuf; NLMSG_OK(nlh, left);
		     nlh = NLMSG_NEXT(nlh, left)) {
			if (nlh->nlmsg_type == NLMSG_DONE)
				return 0;
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *err = NLMSG_DATA(nlh);

				return err->error ? err->error : -EBADMSG;
			}
			if (nlh->nlmsg_type == nft_type(NFT_MSG_NEWRULE))
				rule_fn(ctx, nlh);
		}
	}
}

/* nft_verify: whether the last rule dumped equals the payload. */
struct nft_last {
	const struct payload *pl;
	bool equal;
};

static void nft_last_rule(void *ctx, const struct nlmsghdr *nlh)
{
	struct nft_last *last = ctx;
	struct verify v = { .pl = last->pl };

	last->equal = nft_rule_exts(nlh, verify_ext, &v) && v.k == v.pl->n;
}

/* The chain's last rule, dumped with NFT_MSG_GETRULE, is the payload. */
static bool nft_verify(int fd, uint8_t family, const struct payload *pl)
{
	struct nft_last last = { .pl = pl };

	return !nft_rules(fd, family, NFT_TABLE, NFT_CHAIN, nft_last_rule,
			  &last) && last.equal;
}

static void nft_dump_rule(void *ctx, const struct nlmsghdr *nlh)
{
	nft_rule_exts(nlh, dump_ext, ctx);
}

/* A rule dump of a table that does not exist is empty: ask for it first. */
static int nft_table_exists(int fd, uint8_t family, const char *table)
{
	size_t m;
	ssize_t n;
	int ret;

	nlb.len = 0;
	m = nl_msg(&nlb, nft_type(NFT_MSG_GETTABLE), 0, family, 0);
	nla_str(&nlb, NFTA_TABLE_NAME, table);
	nl_msg_end(&nlb, m);
	ret = nl_send(fd, &nlb);
	if (ret < 0)
		return ret;
	n = recv(fd, rxbuf, sizeof(rxbuf), 0);
	if (n < 0)
		return -errno;
	if (n >= (ssize_t)NLMSG_HDRLEN &&
	    ((struct nlmsghdr *)rxbuf)->nlmsg_type == nft_type(NFT_MSG_NEWTABLE))
		return 0;
	if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) &&
	    ((struct nlmsghdr *)rxbuf)->nlmsg_type == NLMSG_ERROR &&
	    ((struct nlmsgerr *)NLMSG_DATA(rxbuf))->error)
		return ((struct nlmsgerr *)NLMSG_DATA(rxbuf))->error;
	return -EBADMSG;
}

static int nft_dump(uint8_t family, const char *table)
{
	int fd = nft_open(), ret;

	if (fd < 0)
		return fd;
	ret = nft_table_exists(fd, family, table);
	if (!ret)
		ret = nft_rules(fd, family, table, NULL, nft_dump_rule, NULL);
	close(fd);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Kernel log                                                          */

struct klog {
	int fd;
	unsigned int ours, size, other, noise;
	char first_other[200];
};

static void klog_start(struct klog *k)
{
	k->ours = k->size = k->other = k->noise = 0;
	strcpy(k->first_other, "-");
	if (k->fd >= 0)
		lseek(k->fd, 0, SEEK_END);
}

/* Sort what the kernel logged since klog_start(). */
static void klog_collect(struct klog *k)
{
	char rec[8192];

	if (k->fd < 0)
		return;
	for (;;) {
		ssize_t n = read(k->fd, rec, sizeof(rec) - 1);
		char *msg, *nl, *c;

		if (n < 0 && errno == EPIPE)	/* overwritten: go on */
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		if (!msg)
			continue;
		msg++;
		nl = strchr(msg, '\n');
		if (nl)
			*nl = '\0';
		/* The emulated guest's timekeeping complains now and then. */
		if (!strncmp(msg, "clocksource: ", 13) ||
		    !strncmp(msg, "hrtimer: interrupt took ", 24)) {
			k->noise++;
		} else if (!strncmp(msg, "xt_connmark: ", 13) ||
		    strstr(msg, " callbacks suppressed")) {
			k->ours++;
		} else if (strstr(msg, "invalid size") &&
			   (strstr(msg, "_tables: CONNMARK.") ||
			    strstr(msg, "_tables: connmark."))) {
			k->size++;
		} else {
			if (!k->other++) {
				snprintf(k->first_other,
					 sizeof(k->first_other), "%s", msg);
				for (c = k->first_other; *c; c++)
					if (*c == ' ' || *c == '\t')
						*c = '_';
			}
		}
	}
}

/* ------------------------------------------------------------------ */

/*
 * The errors the x_tables and nfnetlink paths return, by name (glibc's
 * strerrorname_np() is 2.32 and later; Debian 11 has 2.31).
 */
#define ERRNO_NAME(e) { e, #e }
static const struct {
	int err;
	const char *name;
} errno_names[] = {
	ERRNO_NAME(EPERM), ERRNO_NAME(ENOENT), ERRNO_NAME(EIO),
	ERRNO_NAME(E2BIG), ERRNO_NAME(EAGAIN), ERRNO_NAME(ENOMEM),
	ERRNO_NAME(EFAULT), ERRNO_NAME(EBUSY), ERRNO_NAME(EEXIST),
	ERRNO_NAME(EINVAL), ERRNO_NAME(ENOSPC), ERRNO_NAME(EPIPE),
	ERRNO_NAME(ERANGE), ERRNO_NAME(ENAMETOOLONG), ERRNO_NAME(ELOOP),
	ERRNO_NAME(EBADMSG), ERRNO_NAME(EPROTO), ERRNO_NAME(EMSGSIZE),
	ERRNO_NAME(ENOPROTOOPT), ERRNO_NAME(EOPNOTSUPP),
	ERRNO_NAME(EAFNOSUPPORT), ERRNO_NAME(ENOBUFS), ERRNO_NAME(EPROTOTYPE),
};

static const char *errname(int err)
{
	static char unknown[32];
	size_t i;

	if (!err)
		return "0";
	for (i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (errno_names[i].err == err)
			return errno_names[i].name;
	snprintf(unknown, sizeof(unknown), "errno %d", err);
	return unknown;
}

/* xt_hostile dump PATH TABLE */
static int dump(enum path p, const char *table)
{
	struct legacy l = { .fd = -1 };
	int ret;

	if (path_legacy(p)) {
		ret = legacy_open(&l, path_ipv6(p));
		if (!ret)
			ret = legacy_dump(&l, table);
		if (l.fd >= 0)
			close(l.fd);
	} else {
		ret = nft_dump(path_family(p), table);
	}
	if (fflush(stdout) || ferror(stdout))
		ret = ret < 0 ? ret : -EIO;
	if (ret < 0) {
		fprintf(stderr, "xt_hostile: dump %s %s: %s\n", path_names[p],
			table, strerror(-ret));
		return 1;
	}
	return 0;
}

static struct payload pl;
static unsigned int step = 1;

static unsigned int run_path(enum path p, struct klog *klog)
{
	uint8_t family = path_family(p);
	unsigned int c, total = 0;
	struct legacy l = { .fd = -1 };
	int fd = -1, ret;

	if (path_legacy(p)) {
		struct ipt_getinfo info;

		ret = legacy_open(&l, path_ipv6(p));
		if (!ret)
			ret = legacy_info(&l, LEGACY_TABLE, &info);
	} else {
		fd = nft_open();
		ret = fd < 0 ? fd : nft_setup(fd, family);
	}
	if (ret < 0) {
		printf("SKIPPATH path=%s reason=%s\n", path_names[p],
		       errname(-ret));
		goto out;
	}

	for (c = 0; c < ARRAY_SIZE(classes); c++) {
		const struct class *cl = &classes[c];
		int want = class_want(cl, p);
		unsigned int i, tried = 0, got_want = 0, verified = 0;
		char first_bad[160] = "-";

		klog_start(klog);
		/* -s: the first 16 of a class, then every step-th */
		for (i = 0; ; i += want && i >= 16 ? step : 1) {
			memset(&pl, 0, sizeof(pl));
			if (!cl->gen(p, cl->arg, i, &pl))
				break;
			tried++;
			ret = path_legacy(p) ? legacy_install(&l, &pl) :
					       nft_install(fd, family, &pl);
			if (-ret == want) {
				got_want++;
				if (want == 0 &&
				    (path_legacy(p) ? legacy_verify(&l, &pl) :
						      nft_verify(fd, family, &pl)))
					verified++;
				else if (want == 0 && first_bad[0] == '-')
					snprintf(first_bad, sizeof(first_bad),
						 "%s:not-read-back", pl.desc);
			} else if (first_bad[0] == '-') {
				snprintf(first_bad, sizeof(first_bad), "%s:%s",
					 pl.desc, errname(-ret));
			}
		}
		klog_collect(klog);
		if (!tried)
			continue;
		total += tried;
		printf("CLASS path=%s name=%s tried=%u want=%s got_want=%u verified=",
		       path_names[p], cl->name, tried, errname(want),
		       got_want);
		if (want == 0)
			printf("%u", verified);
		else
			printf("-");
		printf(" klog_ours=%u klog_size=%u klog_other=%u klog_noise=%u first_bad=%s first_other=%s%s\n",
		       klog->ours, klog->size, klog->other, klog->noise,
		       first_bad, klog->first_other, cl->size ? " size=1" : "");
		fflush(stdout);
	}
out:
	if (l.fd >= 0)
		close(l.fd);
	if (fd >= 0)
		close(fd);
	return total;
}

/*
 * xt_hostile family PATH...: the first valid payload of each revision of
 * the target and of the match, alone in a rule, through PATH.
 */
static void family_probe(enum path p)
{
	static bool (*const gens[])(enum path p, unsigned int arg,
				    unsigned int i, struct payload *pl) = {
		gen_t1_valid, gen_t2_valid, gen_t3_valid, gen_m1_valid,
	};
	uint8_t family = path_family(p);
	struct legacy l = { .fd = -1 };
	struct ipt_getinfo info;
	const char *back;
	unsigned int g;
	int fd = -1, ret;

	if (path_legacy(p)) {
		ret = legacy_open(&l, path_ipv6(p));
		if (!ret)
			ret = legacy_info(&l, LEGACY_TABLE, &info);
	} else {
		fd = nft_open();
		ret = fd < 0 ? fd : nft_setup(fd, family);
	}
	if (ret < 0) {
		printf("SKIPPATH path=%s reason=%s\n", path_names[p],
		       errname(-ret));
		goto out;
	}
	for (g = 0; g < ARRAY_SIZE(gens); g++) {
		memset(&pl, 0, sizeof(pl));
		gens[g](p, 0, 0, &pl);
		ret = path_legacy(p) ? legacy_install(&l, &pl) :
				       nft_install(fd, family, &pl);
		back = "-";
		if (!ret)
			back = (path_legacy(p) ? legacy_verify(&l, &pl) :
						 nft_verify(fd, family, &pl)) ?
			       "yes" : "no";
		printf("FAMILY path=%s ext=%s rev=%u got=%s read_back=%s\n",
		       path_names[p], pl.ext[0].target ? "CONNMARK" : "connmark",
		       pl.ext[0].rev, errname(-ret), back);
	}
out:
	if (l.fd >= 0)
		close(l.fd);
	if (fd >= 0)
		close(fd);
}

/* xt_hostile count PATH TABLE CHAIN MARK MASK: see the header. */
static int count_rule(enum path p, const char *table, const char *chain,
		      const char *mark, const char *mask)
{
	int fd, ret;

	memset(&pl, 0, sizeof(pl));
	mt1(&pl, strtoul(mark, NULL, 0), strtoul(mask, NULL, 0), 0);
	fd = nft_open();
	ret = fd < 0 ? fd : nft_rule_add(fd, path_family(p), table, chain,
					 &pl, true);
	if (fd >= 0)
		close(fd);
	if (ret < 0) {
		fprintf(stderr, "xt_hostile: count %s %s %s: %s\n",
			path_names[p], table, chain, errname(-ret));
		return 1;
	}
	return 0;
}

static int path_of(const char *name, bool nft_only)
{
	int p;

	for (p = 0; p < NR_PATHS; p++)
		if (!strcmp(name, path_names[p]))
			return nft_only && path_legacy(p) ? -1 : p;
	return -1;
}

int main(int argc, char **argv)
{
	bool want[NR_PATHS] = { false };
	struct klog klog;
	unsigned int total = 0;
	int a, p;

	if (argc > 1 && !strcmp(argv[1], "dump")) {
		p = argc == 4 ? path_of(argv[2], false) : -1;
		if (p >= 0)
			return dump(p, argv[3]);
		fprintf(stderr, "usage: %s dump PATH TABLE\n", argv[0]);
		return 2;
	}
	if (argc > 1 && !strcmp(argv[1], "count")) {
		p = argc == 7 ? path_of(argv[2], true) : -1;
		if (p >= 0)
			return count_rule(p, argv[3], argv[4], argv[5],
					  argv[6]);
		fprintf(stderr, "usage: %s count nft4|nft6|nftbr|nftarp TABLE CHAIN MARK MASK\n",
			argv[0]);
		return 2;
	}
	if (argc > 1 && !strcmp(argv[1], "family")) {
		for (a = 2; a < argc; a++) {
			if (path_of(argv[a], false) < 0) {
				fprintf(stderr, "usage: %s family PATH...\n",
					argv[0]);
				return 2;
			}
		}
		for (a = 2; a < argc; a++)
			family_probe(path_of(argv[a], false));
		if (argc == 2)	/* no path named: the nft ones */
			for (p = NFT4; p < NR_PATHS; p++)
				family_probe(p);
		return fflush(stdout) || ferror(stdout);
	}
	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "-s") && a + 1 < argc) {
			step = strtoul(argv[++a], NULL, 0);
			if (!step)
				step = 1;
			continue;
		}
		p = path_of(argv[a], false);
		if (p < 0 || p >= NR_CLASS_PATHS) {
			fprintf(stderr, "usage: %s [-s STEP] [legacy4|legacy6|nft4|nft6]...\n"
				"       %s dump PATH TABLE\n"
				"       %s family [PATH]...\n"
				"       %s count nft4|nft6|nftbr|nftarp TABLE CHAIN MARK MASK\n",
				argv[0], argv[0], argv[0], argv[0]);
			return 2;
		}
		want[p] = true;
	}
	for (p = 0; p < NR_CLASS_PATHS && !want[p]; p++)
		;
	if (p == NR_CLASS_PATHS)	/* no path named: all four */
		for (p = 0; p < NR_CLASS_PATHS; p++)
			want[p] = true;

	klog.fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (klog.fd < 0)
		printf("NOKLOG reason=%s\n", errname(errno));
	for (p = 0; p < NR_PATHS; p++)
		if (want[p])
			total += run_path(p, &klog);
	printf("TOTAL tried=%u\n", total);
	return 0;
}
