#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn one kernel's benchmark log (tests/bench.sh run by bench/run.sh) into
bench/results/<kernel>.md and the plot <kernel>.png (gnuplot).

Usage: report.py LOG KERNEL OUTDIR COMMAND CONDITIONS [QEMU_OPTS]

QEMU_OPTS: the options bench/run.sh gave QEMU; with -icount the guest's
times are instruction counts (1 ns per instruction), see bench/run.sh.

Ratios are paired: a configuration and its reference ran in the same round,
one after the other, so the ratio of each round is taken and the median of
those is reported (a busy host slows both sides of a pair alike). ns per
packet per rule is the slope of a least-squares line through the median
time per packet (1e9 / pps) against the number of classification rules.
"""

import os
import statistics
import subprocess
import sys
from collections import defaultdict

NAMES = {
    "none": "(a) no rules: forwarding only",
    "ct": "conntrack only (-m conntrack --ctstate INVALID -j DROP)",
    "ours-sc-3": "(b) how-to example, our module",
    "intree-sc-3": "(c) how-to example, in-tree module",
    "nft-sc-3": "(d) nftables equivalent",
}


def parse(path):
    samples = defaultdict(dict)     # (flows, config) -> {rep: pps}
    modules = defaultdict(set)
    mem = []
    comments = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == "SAMPLE" and len(fields) == 8:
                _, flows, config, rep, rcvd, _, elapsed, module = fields
                pps = int(rcvd) * 1e9 / int(elapsed)
                samples[(int(flows), config)][int(rep)] = pps
                modules[config].add(module)
            elif fields[0] == "MEM" and len(fields) == 7:
                mem.append(fields[1:])
            elif line.startswith("# "):
                comments.append(line[2:].rstrip())
    return samples, modules, mem, comments


def paired_ratio(a, b):
    reps = sorted(set(a) & set(b))
    if not reps:
        return None
    return statistics.median(a[r] / b[r] for r in reps)


def fmt_ratio(r):
    return "-" if r is None else f"{r:.3f}"


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def sort_key(config):
    """(a), conntrack only, (b), (c), (d), then the sweep."""
    head = ["none", "ct", "ours-sc-3", "intree-sc-3", "nft-sc-3"]
    if config in head:
        return (0, head.index(config), "", 0)
    impl, sc, n = (config.split("-") + ["", "0"])[:3]
    return (1, 0, impl + sc, int(n))


def ref_for(config):
    """The in-tree configuration of the same shape, else (c)."""
    if config.startswith("ours-"):
        return "intree-" + config[len("ours-"):]
    return "intree-sc-3"


def headline(samples, flows_list):
    """The summary table: (b) against (a), (c), (d), paired per round, and
    the cost per classification rule with and without the shortcut."""
    rows = []
    pairs = [("ours-sc-3", "none", "ours (b) / no rules (a)"),
             ("ours-sc-3", "ct", "ours (b) / conntrack only"),
             ("ours-sc-3", "intree-sc-3", "ours (b) / in-tree (c)"),
             ("ours-sc-3", "nft-sc-3", "ours (b) / nftables (d)")]
    for a, b, title in pairs:
        cells = []
        for flows in flows_list:
            r = paired_ratio(samples.get((flows, a), {}),
                             samples.get((flows, b), {}))
            cells.append(fmt_ratio(r))
        rows.append(f"| {title} | " + " | ".join(cells) + " |")
    for impl in ("ours", "intree"):
        for sc, title in (("nosc", "without"), ("sc", "with")):
            cells = []
            for flows in flows_list:
                pts = [(int(c.split("-")[2]),
                        1e9 / statistics.median(v.values()))
                       for (f, c), v in samples.items()
                       if f == flows and c.startswith(f"{impl}-{sc}-")]
                sl = slope(pts) if len(pts) > 2 else None
                cells.append("-" if sl is None else f"{sl:.1f}")
            rows.append(f"| ns/packet/rule, {impl}, {title} shortcut | "
                        + " | ".join(cells) + " |")
    out = ["## Headline\n",
           "Throughput ratios: median over the rounds of the ratio within "
           "each round (1.000: same speed, below 1: slower). ns/packet/rule: "
           "slope of ns/packet against the number of classification "
           "rules (1 to 200).\n",
           "| | " + " | ".join(f"{f} flows" for f in flows_list) + " |",
           "|---|" + "---|" * len(flows_list)]
    return out + rows + [""]


def main():
    log, kernel, outdir, command, conditions = sys.argv[1:6]
    qemu_opts = sys.argv[6] if len(sys.argv) > 6 else ""
    icount = "-icount" in qemu_opts
    samples, modules, mem, comments = parse(log)
    os.makedirs(outdir, exist_ok=True)
    md = []
    md.append(f"# Forwarding benchmark: {kernel}\n")
    md.append("Produced by:\n\n```sh\n" + command + "\n```\n")
    md.append("Conditions: " + conditions + "\n")
    md.append("From the guest:\n")
    md.extend(f"- {c}" for c in comments)
    md.append("")
    md.append(
        "Traffic: client -> router -> server over veth, 18-byte UDP "
        "datagrams (IPv4) from bench/sender (sendmmsg, batches of 64) "
        "to FLOWS (source port, destination port) pairs, one conntrack "
        "entry each, counted and dropped at the server's ingress hook. "
        "Rules sit in the router's mangle PREROUTING (nft: a filter chain "
        "at priority mangle). Classification: N rules `-p udp --dport P "
        "-j MARK --set-mark I` that no datagram matches, the last one "
        "`-p udp -j MARK --set-mark 3` that all match; `sc` = with "
        "`-j CONNMARK --restore-mark` and `-m mark ! --mark 0 -j ACCEPT` "
        "first, `nosc` = without; all end with `-j CONNMARK --save-mark`. "
        "Every configuration runs once per round, rounds repeat; pps = "
        "datagrams received / sender time. Sender, router and server share "
        "the guest's CPUs under QEMU TCG: absolute numbers are emulator "
        "numbers, only the ratios between configurations of one boot mean "
        "something.\n")
    if icount:
        md.append(
            f"Method: the guest ran under QEMU `{qemu_opts}`. Its clock "
            "advances by 1 ns per executed guest instruction, whatever the "
            "host does, and skips idle time (sleep=off). So pps here is "
            "'instruction-time' pps: datagrams per 10^9 guest "
            "instructions, and ns/packet is the number of guest "
            "instructions the whole path (sender syscall, veth, router, "
            "server ingress) executes per datagram. Samples repeat to "
            "within a few percent (`spread`: (max - min) / median) on a "
            "loaded host, where wall-clock rates under TCG swung tenfold. "
            "The numbers are meaningful as ratios between configurations, "
            "not as hardware throughput: TCG does not model caches, "
            "branch prediction or the different costs of instructions, "
            "so a cache miss in a 100k-entry conntrack table costs "
            "nothing extra here.\n")

    flows_list = sorted({f for f, _ in samples})
    md.extend(headline(samples, flows_list))
    for flows in flows_list:
        configs = sorted((c for f, c in samples if f == flows), key=sort_key)
        base = samples.get((flows, "none"), {})
        md.append(f"## Throughput, {flows} flows\n")
        md.append("| configuration | rounds | median pps | min-max pps | "
                  "spread | ns/packet | vs (a) | vs in-tree | module |")
        md.append("|---|---|---|---|---|---|---|---|---|")
        for config in configs:
            s = samples[(flows, config)]
            vals = sorted(s.values())
            med = statistics.median(vals)
            ref = samples.get((flows, ref_for(config)), {})
            vs_ref = paired_ratio(s, ref) if config != ref_for(config) else 1.0
            md.append(
                f"| {NAMES.get(config, config)} | {len(vals)} | {med:,.0f} | "
                f"{vals[0]:,.0f}-{vals[-1]:,.0f} | "
                f"{(vals[-1] - vals[0]) / med * 100:.1f}% | "
                f"{1e9 / med:,.0f} | "
                f"{fmt_ratio(paired_ratio(s, base))} | "
                f"{fmt_ratio(vs_ref)} | "
                f"{','.join(sorted(modules[config]))} |")
        md.append("")
        md.append("`vs in-tree`: ours against in-tree with the same rules; "
                  "the others against (c). `module`: the xt_connmark "
                  "loaded during the samples.\n")

        sweep = defaultdict(list)
        for f, c in samples:
            parts = c.split("-")
            if f == flows and len(parts) == 3 and parts[0] in ("ours", "intree"):
                med = statistics.median(samples[(f, c)].values())
                sweep[(parts[0], parts[1])].append((int(parts[2]), med))
        if any(len(v) > 2 for v in sweep.values()):
            md.append(f"### Cost per classification rule, {flows} flows\n")
            md.append("| module | shortcut | N: median pps | "
                      "ns/packet/rule (slope) |")
            md.append("|---|---|---|---|")
            plot = os.path.join(outdir, f"{kernel}.dat")
            with open(plot, "w", encoding="utf-8") as dat:
                for key in sorted(sweep):
                    pts = sorted(sweep[key])
                    sl = slope([(n, 1e9 / p) for n, p in pts])
                    md.append(
                        f"| {key[0]} | {'with' if key[1] == 'sc' else 'without'} | "
                        + ", ".join(f"{n}: {p:,.0f}" for n, p in pts)
                        + f" | {'-' if sl is None else f'{sl:.1f}'} |")
                    dat.write(f"# {key[0]}-{key[1]}\n")
                    for n, _ in pts:
                        vals = list(samples[(flows, f'{key[0]}-{key[1]}-{n}')].values())
                        dat.write(f"{n} {statistics.median(vals)} "
                                  f"{min(vals)} {max(vals)}\n")
                    dat.write("\n\n")
            md.append("")
            png = f"{kernel}.png"
            ref = {c: statistics.median(samples[(flows, c)].values())
                   for c in ("none", "ct", "nft-sc-3") if (flows, c) in samples}
            gnuplot(plot, os.path.join(outdir, png), kernel, flows, ref,
                    icount)
            os.unlink(plot)
            md.append(f"![throughput against classification rules]({png})\n")

    if mem:
        md.append("## Memory per connection\n")
        md.append("Each row: the rules loaded, the router's conntrack table "
                  "flushed, then one datagram per flow. `nf_conntrack` is "
                  "the slab cache of the entries (/proc/slabinfo); Slab is "
                  "/proc/meminfo's total, which also holds the entries' "
                  "extensions and the hash table's growth.\n")
        md.append("| rules | flows | new entries | nf_conntrack objsize | "
                  "nf_conntrack objects added | bytes/entry (nf_conntrack) | "
                  "bytes/entry (all slab) |")
        md.append("|---|---|---|---|---|---|---|")
        for config, flows, entries, objsize, objs, slab_kb in mem:
            e = max(int(entries), 1)
            md.append(
                f"| {NAMES.get(config, config)} | {flows} | {entries} | "
                f"{objsize} | {objs} | "
                f"{int(objs) * int(objsize) / e:.0f} | "
                f"{int(slab_kb) * 1024 / e:.0f} |")
        md.append("")

    with open(os.path.join(outdir, f"{kernel}.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")


def gnuplot(dat, png, kernel, flows, ref, icount):
    clock = ("QEMU TCG -icount: packets per 10^9 guest instructions"
             if icount else "QEMU TCG: compare lines, not absolute values")
    lines = [
        "set terminal pngcairo size 900,560 font ',10'",
        f"set output '{png}'",
        f"set title \"Forwarding throughput, {kernel}, {flows} flows\\n"
        f"{clock}\"",
        "set xlabel 'classification rules (MARK)'",
        "set ylabel 'packets/s received (median, bars: min-max)'",
        "set logscale x",
        "set xrange [0.8:260]",
        "set yrange [0:*]",
        "set key inside left bottom box opaque",
        "set grid",
    ]
    plots = []
    titles = ["in-tree, no shortcut", "in-tree, restore + shortcut",
              "ours, no shortcut", "ours, restore + shortcut"]
    for i, t in enumerate(titles):
        plots.append(f"'{dat}' index {i} using 1:2:3:4 with yerrorlines "
                     f"lw 2 title '{t}'")
    for c, v in ref.items():
        plots.append(f"{v} with lines dt 2 title '{NAMES[c]}'")
    lines.append("plot " + ", \\\n     ".join(plots))
    subprocess.run(["gnuplot"], input="\n".join(lines) + "\n", text=True,
                   check=True)


if __name__ == "__main__":
    main()
