#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# xlate_arith.py - every nft translation that an iptables plugin prints for
# CONNMARK and connmark computes what the kernel computes, proven on the
# host (or in a chroot) without a VM.
#
# N random rules (seeded: a pure function of the seed) from the whole
# option space: --set-xmark, --set-mark with and without a mask,
# --and-mark, --or-mark, --xor-mark, --save-mark and --restore-mark bare,
# with --mask, --nfmask, --ctmask or both, each of them unshifted or
# shifted 1 to 31 bits either way, --set-dscpmark, and the match
# [!] --mark value[/mask]; IPv4 and IPv6. For each plugin (a colon-separated
# XTABLES_LIBDIR):
#  1. iptables-restore-translate (ip6tables-) translates them, one file per
#     family; each rule carries "-m comment --comment rN", so that every
#     output line is checked to be its rule's ("# -t mangle -A ..." when the
#     plugin refuses it);
#  2. nft -c --debug=netlink compiles every translation in a chain of its
#     own; a failing batch is split (by the errors' line numbers, or in
#     parts when nft fails without one: nft 1.0.6 dies on an assertion for
#     some forms), so that each rejected rule is found with its message;
#  3. a model of nft's register machine (4-byte little-endian words, what
#     nf_tables' expressions do; the data as this nft's libnftnl prints
#     them, probed) runs the bytecode on many inputs (ct mark,
#     packet mark, IPv4/IPv6 header with its DS field): random full-width
#     values and edges (0, all ones, each of the rule's numbers and its
#     complement, single bits, equal marks); any operation it does not
#     know fails the run;
#  4. tests/xlate/kernel_ref (kmod/connmark_math.h, one process for every
#     input of every rule) gives the module's results: a target must leave
#     both marks as the module leaves them, a match must decide as the
#     module's match and change no mark.
# Each rule is then exact, wrong (the first input that differs is shown),
# refused (by the plugin), rejected (by nft, with its message) or
# unsupported (an option that the plugin does not know).
#
# The judged plugin (--judge, default "ours") fails the run with a wrong or
# refused rule, or a rejected one whose kernel formula needs at most one
# runtime value (decided from the rule's struct, not from the text): only
# a rule that combines two (a mark or the DSCP with the other mark or with
# what the destination keeps) may be rejected, by an nft or kernel without
# register-to-register bitwise (nftables 1.1.2, Linux 6.13; probed: where
# they have it, nothing may be rejected). The other plugins are reported,
# never failing. Exit status 0 or 1.
#
# To see it fail, plant a bug in a copy of the plugins and point --plugin
# at the copy (tests/static/xlate_arith.sh: XTCM_XLATE_OURS).
#
# Usage: xlate_arith.py --kernel-ref PATH --plugin NAME:XTABLES_LIBDIR...
#        [--judge NAME] [--rules N] [--seed S] [--inputs K] [--nft NFT]
#        [--work DIR]
# Defaults from the environment: XTCM_XLATE_RULES (3000), XTCM_XLATE_SEED
# (random, printed), XTCM_XLATE_INPUTS (64).

import argparse
import concurrent.futures
import itertools
import os
import random
import re
import subprocess
import sys
import tempfile
import time

M32 = 0xffffffff
SET, SAVE, RESTORE = 0, 1, 2
LEFT, RIGHT = 0, 1
FUNC_VALUE, FUNC_DSCP = 1, 2
BYTE_MASKS = (0xff, 0xff00, 0xffff, 0xff0000, 0xff000000, 0xffff0000,
              0xffffff00, 0x00ffffff, 0x00ff00ff, 0xff00ff00, 0xf0f0f0f0,
              0x0f0f0f0f, 0x80000000, 0x7fffffff, 0xfffffffe)


class Fatal(Exception):
    """A problem of the check itself or of its tools: the run fails."""


def shifted(v, d, n):
    """v shifted by n bits (d: LEFT or RIGHT), as a 32-bit value."""
    return (v << n if d == LEFT else v >> n) & M32


# --- the rules ----------------------------------------------------------

class Rule:
    """One rule: its iptables arguments and the struct the kernel gets."""

    def __init__(self, idx, fam, form):
        self.idx, self.fam, self.form = idx, fam, form
        self.match = form == "connmark"
        self.args = ""
        # target: struct xt_connmark_tginfo3; match: xt_connmark_mtinfo1
        self.mode, self.func = SET, FUNC_VALUE
        self.ctmark, self.ctmask, self.nfmask = 0, M32, M32
        self.sdir, self.sbits = LEFT, 0
        self.mark, self.mask, self.invert = 0, M32, 0

    def numbers(self):
        if self.match:
            return [self.mark, self.mask]
        if self.mode == SET:
            return [self.ctmark, self.ctmask]
        return [self.nfmask, self.ctmask]

    def runtime_values(self):
        """How many runtime values the kernel's formula combines (the DSCP
        and the two marks count): 2 needs register-to-register bitwise."""
        if self.match:
            return 1
        if self.func == FUNC_DSCP:
            # (ct & ~dscpmask) | statemask | dscp << shift
            return 1 + bool(~(self.ctmark | self.ctmask) & M32)
        if self.mode == SET:
            return 1
        keep = self.ctmask if self.mode == SAVE else self.nfmask
        copy = self.nfmask if self.mode == SAVE else self.ctmask
        return (bool(~keep & M32) +
                bool(shifted(copy, self.sdir, self.sbits)))

    def ipt(self):
        """The rule in an iptables-restore file."""
        what = "-m connmark" if self.match else "-j CONNMARK"
        return "-A PREROUTING -m comment --comment r%d %s %s" % (
            self.idx, what, self.args)

    def ref_line(self, ct, nf, ds):
        """kernel_ref's input for this rule on one input."""
        if self.match:
            return "m %x %x %x %x" % (self.mark, self.mask, self.invert, ct)
        return "t %x %x %x %x %x %x %x %x %x %x" % (
            self.mode, self.func, self.ctmark, self.ctmask, self.nfmask,
            self.sdir, self.sbits, ct, nf, ds)


class RuleGen:
    """Random rules; values and masks from a mix of strategies, so that
    zero, all ones, contiguous, single-bit, byte-wise and full-width
    random values are all common, and pairs of them are often equal,
    nested, disjoint or complementary."""

    FORMS = (("set-xmark", 4), ("set-mark", 4), ("and-mark", 2),
             ("or-mark", 2), ("xor-mark", 2), ("save-mark", 7),
             ("restore-mark", 7), ("set-dscpmark", 3), ("connmark", 3))

    def __init__(self, seed):
        self.r = random.Random("xlate_arith rules %d" % seed)
        self.forms = [f for f, w in self.FORMS for _ in range(w)]

    def contiguous(self):
        start = self.r.randrange(32)
        return ((1 << self.r.randint(1, 32 - start)) - 1) << start

    def value(self, rel=()):
        r = self.r
        k = r.randrange(14 if rel else 9)
        if k == 0:
            return 0
        if k == 1:
            return M32
        if k in (2, 3):
            return r.getrandbits(32)
        if k == 4:
            return self.contiguous()
        if k == 5:
            return ~self.contiguous() & M32
        if k == 6:
            return 1 << r.randrange(32)
        if k == 7:
            return r.choice(BYTE_MASKS)
        if k == 8:
            v = 0
            for _ in range(r.randint(2, 4)):
                v |= 1 << r.randrange(32)
            return v
        o = r.choice(rel)
        if k == 9:
            return o
        if k == 10:
            return o & r.getrandbits(32)
        if k == 11:
            return o | r.getrandbits(32)
        if k == 12:
            return r.getrandbits(32) & ~o & M32
        return ~o & M32

    def shift(self, rule):
        r = self.r
        if r.random() < 0.3:
            if r.random() < 0.25:
                rule.args += " --%s-shift-mark 0" % r.choice(("left",
                                                              "right"))
            return
        rule.sdir = r.choice((LEFT, RIGHT))
        rule.sbits = r.randint(1, 31)
        rule.args += " --%s-shift-mark %d" % (
            "left" if rule.sdir == LEFT else "right", rule.sbits)

    def set_form(self, rule):
        r = self.r
        form = rule.form
        if form in ("set-xmark", "set-mark"):
            v = self.value()
            if r.random() < 0.2:
                m, rule.args = M32, "--%s 0x%x" % (form, v)
            else:
                m = self.value((v,))
                rule.args = "--%s 0x%x/0x%x" % (form, v, m)
            rule.ctmark = v
            rule.ctmask = m if form == "set-xmark" else v | m
            return
        b = self.value()
        rule.args = "--%s 0x%x" % (form, b)
        rule.ctmark, rule.ctmask = {"and-mark": (0, ~b & M32),
                                    "or-mark": (b, b),
                                    "xor-mark": (b, 0)}[form]

    def copy_form(self, rule):
        r = self.r
        rule.mode = SAVE if rule.form == "save-mark" else RESTORE
        rule.args = "--" + rule.form
        how = r.choice(("bare", "mask", "mask", "nfmask", "ctmask", "both",
                        "both", "both"))
        if how == "mask":
            rule.nfmask = rule.ctmask = self.value()
            rule.args += " --mask 0x%x" % rule.nfmask
        elif how == "nfmask":
            rule.nfmask = self.value()
            rule.args += " --nfmask 0x%x" % rule.nfmask
        elif how == "ctmask":
            rule.ctmask = self.value()
            rule.args += " --ctmask 0x%x" % rule.ctmask
        elif how == "both":
            # unequal: nested either way, disjoint, complementary, other
            a = self.value()
            b = (a & r.getrandbits(32), a | r.getrandbits(32),
                 r.getrandbits(32) & ~a & M32, ~a & M32,
                 self.value())[r.randrange(5)]
            if b == a:
                b ^= 1 << r.randrange(32)
            rule.nfmask, rule.ctmask = (a, b) if r.random() < 0.5 else (b, a)
            rule.args += " --nfmask 0x%x --ctmask 0x%x" % (rule.nfmask,
                                                          rule.ctmask)

    def dscp_form(self, rule):
        k = self.r.randint(0, 26)
        d = 0x3f << k
        s = self.value((d, ~d & M32)) & ~d & M32
        rule.func, rule.ctmark, rule.ctmask, rule.sbits = FUNC_DSCP, d, s, k
        rule.args = "--set-dscpmark 0x%x/0x%x" % (d, s)

    def match_form(self, rule):
        r = self.r
        if r.random() < 0.3:
            rule.mark = self.value()
            rule.args = "--mark 0x%x" % rule.mark
        else:
            rule.mask = self.value()
            rule.mark = self.value((rule.mask,))
            rule.args = "--mark 0x%x/0x%x" % (rule.mark, rule.mask)
        if r.random() < 0.5:
            rule.invert = 1
            rule.args = "! " + rule.args

    def rule(self, idx):
        rule = Rule(idx, self.r.choice((4, 6)), self.r.choice(self.forms))
        if rule.form == "connmark":
            self.match_form(rule)
        elif rule.form == "set-dscpmark":
            self.dscp_form(rule)
        elif rule.form in ("save-mark", "restore-mark"):
            self.copy_form(rule)
            self.shift(rule)
        else:
            self.set_form(rule)
            self.shift(rule)
        return rule


# --- the inputs -----------------------------------------------------------

def header(r, fam, ds):
    """An IPv4 or IPv6 header with DS field DS, the rest random."""
    if fam == 4:
        return bytes([0x45, ds]) + r.randbytes(18)
    return bytes([0x60 | ds >> 4, (ds & 0xf) << 4 | r.randrange(16)]) + \
        r.randbytes(38)


def inputs(rule, seed, count):
    """(ct mark, packet mark, DS field, header) of each input for RULE."""
    r = random.Random("xlate_arith inputs %d %d" % (seed, rule.idx))
    nums = rule.numbers()
    edges = [0, M32] + nums + [~n & M32 for n in nums] + \
        [1 << r.randrange(32) for _ in range(2)]
    pairs = []
    for e in edges:
        pairs.append((e, r.getrandbits(32)))
        pairs.append((r.getrandbits(32), e))
    for _ in range(2):
        x = r.getrandbits(32)
        pairs.append((x, x))
    for n in nums:
        pairs.append((n | r.getrandbits(32), n & r.getrandbits(32)))
        pairs.append((n & r.getrandbits(32), n | r.getrandbits(32)))
    if rule.match:
        for _ in range(4):
            x = r.getrandbits(32)
            pairs.append(((rule.mark & rule.mask) | (x & ~rule.mask),
                          r.getrandbits(32)))
    while len(pairs) < count:
        pairs.append((r.getrandbits(32), r.getrandbits(32)))
    dss = [0, 0xff, 0xfc, 0x03]
    out = []
    for i, (ct, nf) in enumerate(pairs):
        ds = dss[i] if i < len(dss) else r.randrange(256)
        out.append((ct, nf, ds, header(r, rule.fam, ds)))
    return out


def kernel_results(kref, rules, ins):
    """kernel_ref's results: (ct, nf) per target input, bool per match."""
    lines = []
    for rule in rules:
        for ct, nf, ds, _ in ins[rule.idx]:
            lines.append(rule.ref_line(ct, nf, ds))
    p = subprocess.run([kref], input="\n".join(lines) + "\n",
                       capture_output=True, text=True)
    out = p.stdout.split("\n")
    if p.returncode != 0 or len(out) != len(lines) + 1:
        raise Fatal("%s failed (exit %d, %d lines for %d): %s" % (
            kref, p.returncode, len(out) - 1, len(lines), p.stderr.strip()))
    res, n = {}, 0
    for rule in rules:
        k = len(ins[rule.idx])
        if rule.match:
            res[rule.idx] = [w == "1" for w in out[n:n + k]]
        else:
            res[rule.idx] = [tuple(int(x, 16) for x in w.split())
                             for w in out[n:n + k]]
        n += k
    return res


# --- translating ----------------------------------------------------------

def translate(tool, libdir, rules, work, name):
    """{rule index: (outcome, text)} for RULES of one family by TOOL with
    XTABLES_LIBDIR=LIBDIR: ("nft", rule body), ("refused", the comment),
    ("unsupported", why) or ("error", the message)."""
    env = dict(os.environ, XTABLES_LIBDIR=libdir)
    res = {}
    todo = list(rules)
    path = os.path.join(work, "%s-%s.rules" % (name, tool))
    for _ in range(60):
        if not todo:
            return res
        with open(path, "w") as f:
            f.write("*mangle\n")
            for rule in todo:
                f.write(rule.ipt() + "\n")
            f.write("COMMIT\n")
        p = subprocess.run([tool, "-f", path], env=env, capture_output=True,
                           text=True)
        if p.returncode == 0:
            res.update(translated(p.stdout, todo, tool))
            return res
        m = re.search(r"^Error occurred at line: (\d+)$", p.stderr, re.M)
        line = int(m.group(1)) if m else 0
        if not 2 <= line < len(todo) + 2:
            raise Fatal("%s (%s) failed: %s" % (tool, name, p.stderr))
        bad = todo[line - 2]
        why = p.stderr.strip().splitlines()[0]
        opt = re.search(r'unknown option "(--[a-z-]+)"', p.stderr)
        if opt and opt.group(1) in bad.args:
            # the plugin lacks the option: every rule with it
            word = opt.group(1)
            for rule in todo:
                if re.search(r"(^| )%s( |$)" % word, rule.args):
                    res[rule.idx] = ("unsupported", "unknown option %s" % word)
        else:
            res[bad.idx] = ("error", why)
        todo = [rule for rule in todo if rule.idx not in res]
    raise Fatal("%s (%s): too many failing rules" % (tool, name))


def translated(out, todo, tool):
    """The outcome of each rule of TODO from TOOL's output OUT."""
    fam = "ip6" if tool.startswith("ip6") else "ip"
    lines = []
    for line in out.splitlines():
        if (line.startswith("# Translated by ") or
                line.startswith("# Completed on ") or
                line == "add table %s mangle" % fam):
            continue
        lines.append(line.rstrip())
    if len(lines) != len(todo):
        raise Fatal("%s printed %d rules for %d" % (tool, len(lines),
                                                    len(todo)))
    res = {}
    prefix = "add rule %s mangle PREROUTING " % fam
    for rule, line in zip(todo, lines):
        tag = "r%d" % rule.idx
        if line.startswith("# "):
            if not re.search(r" --comment %s( |$)" % tag, line):
                raise Fatal("%s: line %r is not rule %s's" % (tool, line,
                                                              tag))
            res[rule.idx] = ("refused", line)
            continue
        suffix = ' comment "%s"' % tag
        if not (line.startswith(prefix) and line.endswith(suffix)):
            raise Fatal("%s: line %r is not rule %s's" % (tool, line, tag))
        res[rule.idx] = ("nft", line[len(prefix):-len(suffix)].strip())
    return res


# --- compiling ------------------------------------------------------------

class Compiler:
    """nft -c --debug=netlink on translations, each in a chain of its own
    (c<rule index>), in batches split until each rejection is found."""

    CHUNK = 64
    JOBS = 4		# nft runs at once: they mostly wait for the kernel

    def __init__(self, nft, work):
        self.nft, self.work = nft, work
        self.count = itertools.count(1)
        self.crashes = set()	# shapes that nft failed on, saying nothing

    def run(self, items):
        """Compile ITEMS [(idx, family, body)]: (ok, {idx: bytecode} or
        stderr, {file line: idx})."""
        # Each run's own number from the counter: JOBS threads run at
        # once, and two that read a shared copy would share (and unlink)
        # one file.
        run = next(self.count)
        path = os.path.join(self.work, "batch%d.nft" % run)
        text, lines, n, order = [], {}, 0, []
        for fam in (4, 6):
            mine = [it for it in items if it[1] == fam]
            if not mine:
                continue
            text.append("table %s t%d {" % ("ip" if fam == 4 else "ip6",
                                            fam))
            n += 1
            for idx, _, body in mine:
                text += [" chain c%d {" % idx, "  " + body, " }"]
                lines[n + 2] = idx
                order.append(idx)
                n += 3
            text.append("}")
            n += 1
        with open(path, "w") as f:
            f.write("\n".join(text) + "\n")
        p = subprocess.run([self.nft, "-c", "--debug=netlink", "-f", path],
                           capture_output=True, text=True)
        os.unlink(path)
        if p.returncode != 0:
            err = p.stderr.replace(path, "FILE")
            return False, err, lines
        return True, netlink_code(p.stdout, order), lines

    def compile_all(self, items, code, rejected):
        """Fill CODE {idx: [op]} and REJECTED {idx: message}, in batches
        of CHUNK rules (nft reports only the first 10 errors of a file),
        JOBS at once."""
        chunks = [items[i:i + self.CHUNK]
                  for i in range(0, len(items), self.CHUNK)]
        with concurrent.futures.ThreadPoolExecutor(self.JOBS) as pool:
            for f in [pool.submit(self.compile, chunk, code, rejected)
                      for chunk in chunks]:
                f.result()

    def compile(self, items, code, rejected):
        # one by one where nft failed without saying where before
        if len(items) > 1:
            alone = [it for it in items if shape(it[2]) in self.crashes]
            for it in alone:
                self.compile([it], code, rejected)
            items = [it for it in items if it not in alone]
        if not items:
            return
        ok, res, lines = self.run(items)
        if ok:
            code.update(res)
            return
        located = {}
        for m in re.finditer(r"^FILE:(\d+):\S* (Error: .*)$", res, re.M):
            idx = lines.get(int(m.group(1)))
            if idx is None:
                located = {}
                break
            located.setdefault(idx, m.group(2))
        if located:
            rejected.update(located)
            self.compile([it for it in items if it[0] not in located], code,
                         rejected)
            return
        if len(items) == 1:
            rejected[items[0][0]] = " / ".join(
                line.strip() for line in res.strip().splitlines())
            self.crashes.add(shape(items[0][2]))
            return
        # nft failed without saying where: by the translations' shapes,
        # then in halves, then one by one
        shapes = {}
        for it in items:
            shapes.setdefault(shape(it[2]), []).append(it)
        if len(shapes) > 1:
            parts = list(shapes.values())
        elif len(items) <= 8:
            parts = [[it] for it in items]
        else:
            parts = [items[:len(items) // 2], items[len(items) // 2:]]
        for part in parts:
            self.compile(part, code, rejected)


def shape(text):
    """TEXT without its numbers."""
    return re.sub(r"0x[0-9a-f]+|\b\d+\b", "N", text)


def netlink_code(out, order):
    """{idx: [operation text]} from nft --debug=netlink's output for the
    rules ORDER (rule indexes, in the file's order). Each rule's bytecode
    follows a line "FAMILY TABLE CHAIN" (nft 0.9.8: "FAMILY " alone, in
    the file's order)."""
    blocks, cur = [], None
    for line in out.splitlines():
        if not line.strip() or re.search(r" use \d+$", line):
            continue
        m = re.match(r"^ip6?(?: t[46] c(\d+))? ?$", line)
        if m:
            cur = []
            blocks.append((m.group(1), cur))
            continue
        m = re.match(r"^\s+\[ (.*) \]$", line)
        if m and cur is not None:
            cur.append(m.group(1))
            continue
        raise Fatal("unexpected line in nft's output: %r" % line)
    if all(name is None for name, _ in blocks):
        if len(blocks) != len(order):
            raise Fatal("nft printed %d rules' bytecode for %d" % (
                len(blocks), len(order)))
        return {idx: ops for idx, (_, ops) in zip(order, blocks)}
    code = {int(name): ops for name, ops in blocks if name is not None}
    if len(code) != len(blocks) or sorted(code) != sorted(order):
        raise Fatal("nft printed bytecode for chains %s, not %s" % (
            sorted(code), sorted(order)))
    return code


# --- nft's register machine -------------------------------------------------

class BadOp(Exception):
    """An operation the model does not know, or cannot read."""


def reg_word(n):
    """The index of nft register N's first 32-bit word in regs->data."""
    if 1 <= n <= 4:		# NFT_REG_1 .. NFT_REG_4, 16 bytes each
        return 4 * n
    if 8 <= n <= 23:		# NFT_REG32_00 .. NFT_REG32_15
        return n - 4
    raise BadOp("register %d" % n)


def nwords(length):
    return (length + 3) // 4


DATA = r"(0x[0-9a-f]+(?: 0x[0-9a-f]+)*)"
OPS = (
    ("load", re.compile(r"^(meta|ct) load mark => reg (\d+)$")),
    ("payload", re.compile(
        r"^payload load (\d+)b @ network header \+ (\d+) => reg (\d+)$")),
    ("bool", re.compile(
        r"^bitwise reg (\d+) = \( reg (\d+) & %s \) \^ %s$" % (DATA, DATA))),
    ("shift", re.compile(
        r"^bitwise reg (\d+) = \( reg (\d+) (<<|>>) (0x[0-9a-f]+) \)$")),
    ("regop", re.compile(
        r"^bitwise reg (\d+) = \( reg (\d+) ([&|^]) reg (\d+) \)$")),
    ("byteorder", re.compile(
        r"^byteorder reg (\d+) = (ntoh|hton)\(reg (\d+), (\d+), (\d+)\)$")),
    ("imm", re.compile(r"^immediate reg (\d+) %s$" % DATA)),
    ("cmp", re.compile(r"^cmp (eq|neq) reg (\d+) %s$" % DATA)),
    ("set", re.compile(r"^(meta|ct) set mark with reg (\d+)$")),
    ("counter", re.compile(r"^counter pkts \d+ bytes \d+$")),
)


class Program:
    """A rule's bytecode, decoded once: each register's length and byte
    order are followed through it, as they decide how libnftnl printed
    the data. STYLE "words": every datum as 32-bit words in host byte
    order, zero-padded (libnftnl up to nft 1.1.3); "bytes": a datum of
    network byte order as its bytes in order, one of host byte order as a
    number of its length (newer libnftnl, nft 1.1.7)."""

    def __init__(self, ops, style):
        self.style = style
        self.meta = {}		# first word: (length, "net" or "host")
        self.ops = [self.decode(op) for op in ops]

    def src(self, reg):
        w = reg_word(reg)
        if w not in self.meta:
            raise BadOp("reads register %d, which nothing wrote" % reg)
        return w, self.meta[w]

    def data(self, text, length, order):
        """The words of a datum printed as TEXT, LENGTH bytes long."""
        toks = text.split()
        if self.style == "words":
            if (len(toks) != nwords(length) or
                    any(len(t) != 10 for t in toks)):
                raise BadOp("datum %s for %d bytes" % (text, length))
            return [int(t, 16) for t in toks]
        if len(toks) != 1 or len(toks[0]) != 2 + 2 * length or length > 4:
            raise BadOp("datum %s for %d bytes" % (text, length))
        if order == "net":
            raw = bytes.fromhex(toks[0][2:])
        else:
            raw = int(toks[0], 16).to_bytes(length, "little")
        raw = raw.ljust(4 * nwords(length), b"\0")
        return [int.from_bytes(raw[i:i + 4], "little")
                for i in range(0, len(raw), 4)]

    def decode(self, op):
        for kind, rx in OPS:
            m = rx.match(op)
            if m:
                return getattr(self, "op_" + kind)(m)
        raise BadOp(op)

    def op_load(self, m):
        w = reg_word(int(m.group(2)))
        self.meta[w] = (4, "host")
        return ("load", w, m.group(1))

    def op_payload(self, m):
        length, off = int(m.group(1)), int(m.group(2))
        w = reg_word(int(m.group(3)))
        if not 1 <= length <= 16:
            raise BadOp("payload load of %d bytes" % length)
        self.meta[w] = (length, "net")
        return ("payload", w, length, off)

    def op_bool(self, m):
        d = reg_word(int(m.group(1)))
        s, (length, order) = self.src(int(m.group(2)))
        mask = self.data(m.group(3), length, order)
        xor = self.data(m.group(4), length, order)
        self.meta[d] = (length, order)
        return ("bool", d, s, mask, xor)

    def op_shift(self, m):
        d = reg_word(int(m.group(1)))
        s, (length, _) = self.src(int(m.group(2)))
        n = int(m.group(4), 16)
        if not 0 < n < 32:
            raise BadOp("shift by %d" % n)
        self.meta[d] = (length, "host")
        return ("lshift" if m.group(3) == "<<" else "rshift", d, s, n,
                nwords(length))

    def op_regop(self, m):
        d = reg_word(int(m.group(1)))
        s, (length, order) = self.src(int(m.group(2)))
        s2, _ = self.src(int(m.group(4)))
        self.meta[d] = (length, order)
        return ("regop", d, s, m.group(3), s2, nwords(length))

    def op_byteorder(self, m):
        d = reg_word(int(m.group(1)))
        s, _ = self.src(int(m.group(3)))
        size, length = int(m.group(4)), int(m.group(5))
        if size not in (2, 4, 8) or length % size:
            raise BadOp("byteorder of %d in units of %d" % (length, size))
        self.meta[d] = (length, "host" if m.group(2) == "ntoh" else "net")
        return ("byteorder", d, s, size, length)

    def op_imm(self, m):
        w = reg_word(int(m.group(1)))
        toks = m.group(2).split()
        length = 4 * len(toks) if self.style == "words" else \
            (len(toks[0]) - 2) // 2
        self.meta[w] = (length, "host")
        return ("imm", w, self.data(m.group(2), length, "host"))

    def op_cmp(self, m):
        s, (length, order) = self.src(int(m.group(2)))
        want = self.data(m.group(3), length, order)
        raw = b"".join(x.to_bytes(4, "little") for x in want)[:length]
        return ("cmp", m.group(1) == "eq", s, length, raw)

    def op_set(self, m):
        s, _ = self.src(int(m.group(2)))
        return ("set", m.group(1), s)

    def op_counter(self, m):
        return ("counter",)

    def run(self, ct, nf, hdr):
        """(ct mark, packet mark, whether the rule ran to its end)."""
        W = {}
        for op in self.ops:
            k = op[0]
            if k == "load":
                W[op[1]] = nf if op[2] == "meta" else ct
            elif k == "payload":
                _, w, length, off = op
                raw = hdr[off:off + length]
                if len(raw) < length:
                    return ct, nf, False	# NFT_BREAK: packet too short
                raw = raw.ljust(4 * nwords(length), b"\0")
                for i in range(nwords(length)):
                    W[w + i] = int.from_bytes(raw[4 * i:4 * i + 4],
                                              "little")
            elif k == "bool":
                _, d, s, mask, xor = op
                for i in range(len(mask)):
                    W[d + i] = (W[s + i] & mask[i]) ^ xor[i]
            elif k == "lshift":
                _, d, s, n, cnt = op
                carry = 0
                for i in range(cnt - 1, -1, -1):
                    v = W[s + i]
                    W[d + i] = ((v << n) & M32) | carry
                    carry = v >> (32 - n)
            elif k == "rshift":
                _, d, s, n, cnt = op
                carry = 0
                for i in range(cnt):
                    v = W[s + i]
                    W[d + i] = carry | (v >> n)
                    carry = (v << (32 - n)) & M32
            elif k == "regop":
                _, d, s, o, s2, cnt = op
                for i in range(cnt):
                    a, b = W[s + i], W[s2 + i]
                    W[d + i] = a & b if o == "&" else \
                        a | b if o == "|" else a ^ b
            elif k == "byteorder":
                _, d, s, size, length = op
                raw = b"".join(W[s + i].to_bytes(4, "little")
                               for i in range(nwords(length)))
                out = b"".join(raw[j:j + size][::-1]
                               for j in range(0, length, size))
                for i in range(nwords(length)):
                    old = W.get(d + i, 0).to_bytes(4, "little")
                    new = out[4 * i:4 * i + 4]
                    W[d + i] = int.from_bytes(new + old[len(new):],
                                              "little")
            elif k == "imm":
                for i, v in enumerate(op[2]):
                    W[op[1] + i] = v
            elif k == "cmp":
                _, eq, s, length, want = op
                raw = b"".join(W[s + i].to_bytes(4, "little")
                               for i in range(nwords(length)))[:length]
                if (raw == want) != eq:
                    return ct, nf, False	# NFT_BREAK
            elif k == "set":
                if op[1] == "meta":
                    nf = W[op[2]]
                else:
                    ct = W[op[2]]
        return ct, nf, True


def nft_probe(nft, work, rule):
    """nft -c --debug=netlink on RULE alone: (exit status, output)."""
    path = os.path.join(work, "probe.nft")
    with open(path, "w") as f:
        f.write("table ip t4 {\n chain c0 {\n  %s\n }\n}\n" % rule)
    p = subprocess.run([nft, "-c", "--debug=netlink", "-f", path],
                       capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def data_style(nft, work):
    """How this nft's libnftnl prints data: a rule whose datum is an IPv4
    address, in network byte order."""
    rc, out = nft_probe(nft, work, "ip saddr 10.0.0.1")
    if rc != 0:
        raise Fatal("nft -c failed on a plain rule: %s" % out.strip())
    if "cmp eq reg 1 0x0100000a" in out:
        return "words"
    if "cmp eq reg 1 0x0a000001" in out:
        return "bytes"
    raise Fatal("cannot tell how nft prints data:\n" + out)


def has_reg2reg(nft, work):
    """Whether this nft and kernel combine two runtime values."""
    return nft_probe(nft, work, "meta mark set meta mark xor ct mark")[0] == 0


# --- judging ----------------------------------------------------------------

def judge(rule, prog, ins, kres):
    """None when the bytecode does what the kernel does on every input,
    else a description of the first input where it does not."""
    for (ct, nf, ds, hdr), want in zip(ins, kres):
        nct, nnf, through = prog.run(ct, nf, hdr)
        if rule.match:
            ok = (nct, nnf) == (ct, nf) and through == want
            kernel = "matches" if want else "does not match"
            got = "%s, marks ct 0x%x, packet 0x%x" % (
                "matches" if through else "does not match", nct, nnf)
        else:
            ok = through and (nct, nnf) == want
            kernel = "ct mark 0x%x, packet mark 0x%x" % want
            got = "%sct mark 0x%x, packet mark 0x%x" % (
                "" if through else "stops (NFT_BREAK); ", nct, nnf)
        if not ok:
            return ("on ct mark 0x%x, packet mark 0x%x, DS field 0x%02x "
                    "(header %s): the kernel: %s; nft: %s" % (
                        ct, nf, ds, hdr[:4].hex(), kernel, got))
    return None


class Tally:
    KINDS = ("exact", "wrong", "refused", "rejected", "unsupported")

    def __init__(self, name, judged, reg2reg):
        self.name, self.judged, self.reg2reg = name, judged, reg2reg
        self.n = {k: 0 for k in self.KINDS}
        self.rejected_two = 0
        self.messages = {}
        self.by_form = {}
        self.fails = []
        self.examples = []

    def add(self, rule, kind, text, detail):
        self.n[kind] += 1
        if kind != "exact":
            f = self.by_form.setdefault(kind, {})
            f[rule.form] = f.get(rule.form, 0) + 1
        two = rule.runtime_values() >= 2
        if kind == "rejected":
            self.rejected_two += two
            msg = shape(detail)
            self.messages[msg] = self.messages.get(msg, 0) + 1
        what = "%s %s: %s\n#   translation: %s\n#   %s" % (
            "ip6tables" if rule.fam == 6 else "iptables",
            rule.ipt(), kind, text, detail)
        if self.judged and (kind in ("wrong", "refused", "unsupported") or
                            (kind == "rejected" and
                             (self.reg2reg or not two))):
            if kind == "rejected" and not two:
                what += "\n#   (at most one runtime value: it must load)"
            elif kind == "rejected":
                what += "\n#   (this nft and kernel combine two runtime " \
                    "values: it must load)"
            self.fails.append(what)
        elif kind == "wrong" and len(self.examples) < 3:
            self.examples.append(what)

    def summary(self, total):
        n = self.n
        line = "%s: %d rules: %d exact, %d wrong, %d refused, %d rejected" % (
            self.name, total, n["exact"], n["wrong"], n["refused"],
            n["rejected"])
        if n["rejected"]:
            parts = []
            if self.rejected_two:
                parts.append("%d with two runtime values: this nft/kernel "
                             "%s register-to-register bitwise" % (
                                 self.rejected_two,
                                 "has" if self.reg2reg else "lacks"))
            if n["rejected"] - self.rejected_two:
                parts.append("%d with at most one runtime value" %
                             (n["rejected"] - self.rejected_two))
            line += " (%s)" % "; ".join(parts)
        if n["unsupported"]:
            line += ", %d unsupported" % n["unsupported"]
        return line


# --- main -----------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(
        description="Check that the nft translations of CONNMARK and "
        "connmark rules compute what the kernel computes.")
    ap.add_argument("--kernel-ref", required=True)
    ap.add_argument("--plugin", action="append", required=True,
                    help="NAME:XTABLES_LIBDIR (colon-separated)")
    ap.add_argument("--judge", default="ours")
    ap.add_argument("--rules", type=int,
                    default=int(os.environ.get("XTCM_XLATE_RULES", "3000")))
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("XTCM_XLATE_SEED") or
                                random.SystemRandom().randrange(1 << 30)))
    ap.add_argument("--inputs", type=int,
                    default=int(os.environ.get("XTCM_XLATE_INPUTS", "64")))
    ap.add_argument("--nft", default="nft")
    ap.add_argument("--work")
    a = ap.parse_args()

    plugins = []
    for spec in a.plugin:
        name, sep, libdir = spec.partition(":")
        if not sep or not name or not libdir:
            ap.error("--plugin NAME:XTABLES_LIBDIR, not %r" % spec)
        plugins.append((name, libdir))
    if a.judge not in [n for n, _ in plugins]:
        ap.error("--judge %s: no such --plugin" % a.judge)

    start = time.time()
    with tempfile.TemporaryDirectory(prefix="xlate_arith.",
                                     dir=a.work) as work:
        try:
            return check(a, plugins, work, start)
        except (Fatal, BadOp) as e:
            print("FAIL: %s" % e)
            return 1


def check(a, plugins, work, start):
    gen = RuleGen(a.seed)
    rules = [gen.rule(i) for i in range(a.rules)]
    print("# XTCM_XLATE_SEED=%d XTCM_XLATE_RULES=%d XTCM_XLATE_INPUTS=%d" %
          (a.seed, a.rules, a.inputs))
    ins = {rule.idx: inputs(rule, a.seed, a.inputs) for rule in rules}
    kres = kernel_results(a.kernel_ref, rules, ins)
    style = data_style(a.nft, work)
    reg2reg = has_reg2reg(a.nft, work)
    two = sum(rule.runtime_values() >= 2 for rule in rules)
    print("# %d rules (%d IPv6, %d combine two runtime values), %d inputs "
          "each; nft prints data as %s, and %s register-to-register "
          "bitwise" % (
              len(rules), sum(rule.fam == 6 for rule in rules), two,
              sum(len(v) for v in ins.values()) // max(len(rules), 1),
              style, "has" if reg2reg else "lacks"))

    ret = 0
    for name, libdir in plugins:
        t0 = time.time()
        tally = Tally(name, name == a.judge, reg2reg)
        res = {}
        for fam, tool in ((4, "iptables-restore-translate"),
                          (6, "ip6tables-restore-translate")):
            res.update(translate(tool, libdir,
                                 [r for r in rules if r.fam == fam], work,
                                 name))
        comp = Compiler(a.nft, work)
        code, rejected = {}, {}
        comp.compile_all([(r.idx, r.fam, res[r.idx][1]) for r in rules
                          if res[r.idx][0] == "nft"], code, rejected)
        for rule in rules:
            kind, text = res[rule.idx]
            if kind == "nft" and rule.idx in rejected:
                tally.add(rule, "rejected", text, rejected[rule.idx])
            elif kind == "nft":
                try:
                    prog = Program(code[rule.idx], style)
                except BadOp as e:
                    raise Fatal("%s: %s: translation %r: nft's bytecode "
                                "has an operation the model does not "
                                "know: %s\n%s" % (
                                    name, rule.ipt(), text, e,
                                    "\n".join(code[rule.idx])))
                why = judge(rule, prog, ins[rule.idx], kres[rule.idx])
                if why:
                    tally.add(rule, "wrong", text, why + "\n#   bytecode: " +
                              "; ".join(code[rule.idx]))
                else:
                    tally.add(rule, "exact", text, "")
            elif kind in ("refused", "unsupported"):
                tally.add(rule, kind, "-", text)
            else:
                tally.add(rule, "refused", "-", "error: " + text)
        print(tally.summary(len(rules)))
        print("# %s: %d nft runs, %.1f s" % (name, next(comp.count) - 1,
                                             time.time() - t0))
        for kind, forms in sorted(tally.by_form.items()):
            print("# %s: %s by option: %s" % (name, kind, ", ".join(
                "%s %d" % fc for fc in sorted(forms.items()))))
        for msg, cnt in sorted(tally.messages.items(), key=lambda x: -x[1]):
            print("# %s: rejected %d times: %s" % (name, cnt, msg[:200]))
        for ex in tally.examples:
            print("# %s, e.g. %s" % (name, ex))
        for f in tally.fails[:20]:
            print("FAIL: %s: %s" % (name, f))
        if len(tally.fails) > 20:
            print("FAIL: %s: ... and %d more" % (name,
                                                 len(tally.fails) - 20))
        if tally.fails:
            ret = 1
    print("# %.1f s" % (time.time() - start))
    if ret == 0:
        print("PASS: %s: every translation of %d random rules is exact%s" %
              (a.judge, len(rules), "" if reg2reg else ", or rejected "
               "where it combines two runtime values"))
    return ret


if __name__ == "__main__":
    sys.exit(main())
