// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * xt_connmark - Xtables connection mark operations
 *
 * Target CONNMARK (revisions 1, 2 and 3) sets the conntrack mark, saves the
 * packet mark into it or restores it into the packet mark, and (revision 3,
 * OpenWrt's "--set-dscpmark") stores the packet's DSCP in it; match connmark
 * (revision 1) tests it. Out-of-tree replacement for the in-tree module of
 * the same name, with the same ABI plus OpenWrt's revision 3.
 *
 * Copyright (C) 2026 The xt_connmark project authors
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/ratelimit.h>
#include <linux/skbuff.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <net/dsfield.h>
#include <net/netfilter/nf_conntrack.h>
#include <net/netfilter/nf_conntrack_ecache.h>
#include <linux/netfilter/x_tables.h>
#include "xt_connmark.h"
#include "connmark_math.h"
#include "connmark_tginfo.h"
#include "compat.h"

MODULE_AUTHOR("The xt_connmark project authors");
MODULE_DESCRIPTION("Xtables: connection mark operations");
MODULE_LICENSE("GPL");
MODULE_VERSION(XT_CONNMARK_VERSION);
MODULE_ALIAS("ipt_CONNMARK");
MODULE_ALIAS("ip6t_CONNMARK");
MODULE_ALIAS("ipt_connmark");
MODULE_ALIAS("ip6t_connmark");

/* nf_ct_get() also returns the template conntrack that "-j CT" attaches in
 * the raw table before conntrack has run. A mark written to a template is
 * never copied into the real connection, and a template's mark says nothing
 * about the connection, so both the target and the match treat a template
 * like no conntrack at all. Upstream does not skip templates; this is a
 * deliberate difference.
 */
static struct nf_conn *connmark_ct_find(const struct sk_buff *skb)
{
	enum ip_conntrack_info ctinfo;
	struct nf_conn *ct;

	ct = nf_ct_get(skb, &ctinfo);
	if (!ct || nf_ct_is_template(ct))
		return NULL;
	return ct;
}

/* Take a reference on conntrack for this family: this is what enables
 * connection tracking in the rule's network namespace.
 */
static int connmark_netns_get(struct net *net, u8 family)
{
	int ret;

	ret = nf_ct_netns_get(net, family);
	if (ret < 0)
		pr_info_ratelimited("cannot load conntrack support for proto=%u\n",
				    family);
	return ret;
}

/* The DSCP of an IPv4 or IPv6 packet in *dscp; false for other protocols.
 * x_tables has made the network header linear.
 */
static bool connmark_skb_dscp(const struct sk_buff *skb, u8 family, u32 *dscp)
{
	switch (family) {
	case NFPROTO_IPV4:
		*dscp = ipv4_get_dsfield(ip_hdr(skb)) >> 2;
		return true;
	case NFPROTO_IPV6:
		*dscp = ipv6_get_dsfield(ipv6_hdr(skb)) >> 2;
		return true;
	default:
		return false;
	}
}

/**
 * connmark_tg() - The CONNMARK target, every revision.
 * @skb: the packet
 * @par: the rule; par->target->revision says how to read par->targinfo
 *
 * Every rule but --set-dscpmark does what revision 2 does, whatever its
 * func (OpenWrt's save and restore carry func 0). The new ct mark is
 * computed from the one read and stored with a compare-and-exchange, again
 * from the value found there until it sticks: a rule on another CPU that
 * changed other bits of the same connection's mark meanwhile keeps them.
 * The change is announced to ctnetlink once, and only if there is one.
 *
 * Return: XT_CONTINUE.
 */
static unsigned int
connmark_tg(struct sk_buff *skb, const struct xt_action_param *par)
{
	struct xt_connmark_tginfo3 info;
	struct nf_conn *ct;
	u32 old, new, seen, dscp = 0;

	ct = connmark_ct_find(skb);
	if (!ct || !connmark_tginfo_widen(par->targinfo, par->target->revision,
					  &info))
		return XT_CONTINUE;
	if (info.func == XT_CONNMARK_DSCP &&
	    !connmark_skb_dscp(skb, xt_family(par), &dscp))
		return XT_CONTINUE;

	old = READ_ONCE(ct->mark);
	if (info.func != XT_CONNMARK_DSCP && info.mode == XT_CONNMARK_RESTORE) {
		skb->mark = connmark_restore(skb->mark, old, info.ctmask,
					     info.nfmask, info.shift_dir,
					     info.shift_bits);
		return XT_CONTINUE;
	}
	for (;;) {
		if (info.func == XT_CONNMARK_DSCP)
			new = connmark_dscp(old, dscp, info.ctmark, info.ctmask,
					    info.shift_bits);
		else if (info.mode == XT_CONNMARK_SET)
			new = connmark_set(old, info.ctmark, info.ctmask,
					   info.shift_dir, info.shift_bits);
		else
			new = connmark_save(old, skb->mark, info.ctmask,
					    info.nfmask, info.shift_dir,
					    info.shift_bits);
		if (new == old)
			return XT_CONTINUE;
		seen = cmpxchg(&ct->mark, old, new);
		if (seen == old)
			break;
		old = seen;
	}
	nf_conntrack_event_cache(IPCT_MARK, ct);
	return XT_CONTINUE;
}

/* One rate limit per invalid field, so that a flood of one kind of bad rule
 * does not hide the message of another.
 */
static struct ratelimit_state connmark_check_rs[CONNMARK_TGINFO_FIELDS] = {
	[0 ... CONNMARK_TGINFO_FIELDS - 1] =
		RATELIMIT_STATE_INIT(connmark_check_rs, DEFAULT_RATELIMIT_INTERVAL,
				     DEFAULT_RATELIMIT_BURST),
};

/* Name the field that makes a rule invalid, and the fields its revision
 * has (revisions 1 and 2 have no func), rate limited per field.
 */
static void connmark_tg_report(unsigned int revision,
			       enum connmark_tginfo_field bad,
			       const struct xt_connmark_tginfo3 *info)
{
	if (!__ratelimit(&connmark_check_rs[bad]))
		return;
	if (revision == 3)
		pr_info("revision 3: invalid %s: func %u mode %u shift_dir %u shift_bits %u ctmark 0x%x ctmask 0x%x\n",
			connmark_tginfo_field_name(bad), info->func, info->mode,
			info->shift_dir, info->shift_bits, info->ctmark,
			info->ctmask);
	else
		pr_info("revision %u: invalid %s: mode %u shift_dir %u shift_bits %u ctmark 0x%x ctmask 0x%x\n",
			revision, connmark_tginfo_field_name(bad), info->mode,
			info->shift_dir, info->shift_bits, info->ctmark,
			info->ctmask);
}

/* Validate every field before taking any reference, so that a rejected rule
 * leaves nothing to release. The rules are connmark_tginfo_check()'s, which
 * the iptables plugin applies too.
 */
static int connmark_tg_check(const struct xt_tgchk_param *par)
{
	unsigned int revision = par->target->revision;
	struct xt_connmark_tginfo3 info;
	enum connmark_tginfo_field bad;

	if (!connmark_tginfo_widen(par->targinfo, revision, &info))
		return -EINVAL;
	bad = connmark_tginfo_check(&info);
	if (bad != CONNMARK_TGINFO_VALID) {
		connmark_tg_report(revision, bad, &info);
		return -EINVAL;
	}
	return connmark_netns_get(par->net, par->family);
}

static void connmark_tg_destroy(const struct xt_tgdtor_param *par)
{
	nf_ct_netns_put(par->net, par->family);
}

static bool
connmark_mt(const struct sk_buff *skb, struct xt_action_param *par)
{
	const struct xt_connmark_mtinfo1 *info = par->matchinfo;
	const struct nf_conn *ct;

	/* No conntrack: no match, even when inverted. */
	ct = connmark_ct_find(skb);
	if (!ct)
		return false;

	return ((READ_ONCE(ct->mark) & info->mask) == info->mark) ^
	       info->invert;
}

static int connmark_mt_check(const struct xt_mtchk_param *par)
{
	const struct xt_connmark_mtinfo1 *info = par->matchinfo;

	if (info->invert > 1) {
		pr_info_ratelimited("invalid invert %u\n", info->invert);
		return -EINVAL;
	}
	return connmark_netns_get(par->net, par->family);
}

static void connmark_mt_destroy(const struct xt_mtdtor_param *par)
{
	nf_ct_netns_put(par->net, par->family);
}

/* Targets are registered per family, never NFPROTO_UNSPEC, so that they are
 * not reachable from ebtables or arptables through nft_compat (as in
 * Linux 6.12, CVE-2024-50038).
 */
static struct xt_target connmark_tg_reg[] __read_mostly = {
	{
		.name		= "CONNMARK",
		.revision	= 1,
		.family		= NFPROTO_IPV4,
		.checkentry	= connmark_tg_check,
		.target		= connmark_tg,
		.targetsize	= sizeof(struct xt_connmark_tginfo1),
		.destroy	= connmark_tg_destroy,
		.me		= THIS_MODULE,
	},
	{
		.name		= "CONNMARK",
		.revision	= 2,
		.family		= NFPROTO_IPV4,
		.checkentry	= connmark_tg_check,
		.target		= connmark_tg,
		.targetsize	= sizeof(struct xt_connmark_tginfo2),
		.destroy	= connmark_tg_destroy,
		.me		= THIS_MODULE,
	},
	{
		.name		= "CONNMARK",
		.revision	= 3,
		.family		= NFPROTO_IPV4,
		.checkentry	= connmark_tg_check,
		.target		= connmark_tg,
		.targetsize	= sizeof(struct xt_connmark_tginfo3),
		.destroy	= connmark_tg_destroy,
		.me		= THIS_MODULE,
	},
#if IS_ENABLED(CONFIG_IP6_NF_IPTABLES)
	{
		.name		= "CONNMARK",
		.revision	= 1,
		.family		= NFPROTO_IPV6,
		.checkentry	= connmark_tg_check,
		.target		= connmark_tg,
		.targetsize	= sizeof(struct xt_connmark_tginfo1),
		.destroy	= connmark_tg_destroy,
		.me		= THIS_MODULE,
	},
	{
		.name		= "CONNMARK",
		.revision	= 2,
		.family		= NFPROTO_IPV6,
		.checkentry	= connmark_tg_check,
		.target		= connmark_tg,
		.targetsize	= sizeof(struct xt_connmark_tginfo2),
		.destroy	= connmark_tg_destroy,
		.me		= THIS_MODULE,
	},
	{
		.name		= "CONNMARK",
		.revision	= 3,
		.family		= NFPROTO_IPV6,
		.checkentry	= connmark_tg_check,
		.target		= connmark_tg,
		.targetsize	= sizeof(struct xt_connmark_tginfo3),
		.destroy	= connmark_tg_destroy,
		.me		= THIS_MODULE,
	},
#endif /* CONFIG_IP6_NF_IPTABLES */
};

/* The match is registered once for every family (NFPROTO_UNSPEC), as
 * upstream does. Unlike the targets it writes nothing and reads no packet
 * header, only the conntrack's mark, so no family can hand it a packet it
 * misreads. Its checkentry takes conntrack for the rule's family, which
 * refuses a family without conntrack (arp: EPROTO; x_tables itself refuses
 * an NFPROTO_UNSPEC match in the arp family with EINVAL on kernels that
 * check that). What this allows that an IPv4 and an IPv6 entry would not:
 * nft_compat in the bridge family (with nf_conntrack_bridge), and ip6
 * tables on a kernel without CONFIG_IP6_NF_IPTABLES. tests/connmark_family.sh
 * measures it against the kernel's own module (README.md, "Differences").
 */
static struct xt_match connmark_mt_reg __read_mostly = {
	.name		= "connmark",
	.revision	= 1,
	.family		= NFPROTO_UNSPEC,
	.checkentry	= connmark_mt_check,
	.match		= connmark_mt,
	.matchsize	= sizeof(struct xt_connmark_mtinfo1),
	.destroy	= connmark_mt_destroy,
	.me		= THIS_MODULE,
};

static int __init connmark_mt_init(void)
{
	int ret;

	ret = xt_register_targets(connmark_tg_reg, ARRAY_SIZE(connmark_tg_reg));
	if (ret < 0)
		return ret;

	ret = xt_register_match(&connmark_mt_reg);
	if (ret < 0)
		goto err_unreg_targets;
	return 0;

err_unreg_targets:
	xt_unregister_targets(connmark_tg_reg, ARRAY_SIZE(connmark_tg_reg));
	return ret;
}

static void __exit connmark_mt_exit(void)
{
	xt_unregister_match(&connmark_mt_reg);
	xt_unregister_targets(connmark_tg_reg, ARRAY_SIZE(connmark_tg_reg));
}

module_init(connmark_mt_init);
module_exit(connmark_mt_exit);
