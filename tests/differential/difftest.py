#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# difftest.py - random CONNMARK rule programs and their traffic, for
# tests/differential.sh.
#
# A program is a list of mangle rules (CONNMARK operations, connmark and mark
# matches, MARK rules) in PREROUTING, INPUT, FORWARD, OUTPUT and POSTROUTING,
# one address family, one iptables backend, one plugin set (ours or
# Debian's), and a list of flows (TCP, UDP, ICMP echo, UDP and TCP to a
# closed port) between the client, the router and the server of
# setup_router_topology. Program P of seed S is a pure function of (S, P):
# "gen --seed S --first P --count 1" rebuilds it alone (with the same Python
# random module, as on the host and in the VM).
#
# Many programs run at once in the one router namespace: program slot N owns
# the client address CLIENT(N) (10.64.0.0/10, dead:40::/64, added to the
# client's veth0, routed by the router to 10.0.1.99 / dead:1::99), every flow
# of the program has it as one end, and its rules live in user chains
# xN_<CHAIN> that the built-in chain jumps to with "-s CLIENT(N)" and
# "-d CLIENT(N)". Each packet thus meets exactly its program's rules, in the
# hook the built-in chain stands for; the marks behave as if the program
# were alone in the built-in chains.
#
# Observed per program, after the traffic: every rule's packet counter (and
# the jump rules'), the final ct mark of every flow (conntrack -L), and the
# (packet mark, ct mark) pairs that each flow's packets carried when they
# left each hook's mangle chain, with their packet counts: an nftables table
# at priority mangle + 10 adds every packet to a dynamic set with counters,
# keyed by addresses, protocol, source port (ICMP type/code), packet mark and
# ct mark. The traffic is made deterministic (request/response, one round,
# TCP closed by RST, retransmissions detected through TCP_INFO and loss
# through timeouts), so that two runs give the same packets; a program whose
# traffic was disturbed is reported "unstable" and not compared.
#
# Subcommands (see tests/differential.sh):
#   gen --seed S --first P --count N --backends "legacy nft" --addrs SLOTS
#       --addrs-out F [--txlate connmark.txlate] > plan.json
#       (F: "ip -batch" input for the client; --txlate: its cases too)
#   run --plan F --out F --client NS --router NS --server NS --distro-libdir D
#       [--batch N] [--tag T] [--translate]    run with the loaded module
#       (--translate: the rules' nft translation instead of the rules)
#   compare --plan F A.json B.json [--names A B] [--first-mismatch F]
#   compare-translation --plan F RULES.json NFT.json [--reg2reg]
#   shrink-cands CUR.json > cands.json         candidate reductions
#   shrink-pick CUR.json cands.json A.json B.json > NEXT.json
#   repro CUR.json                             the reproducer, as text

import argparse
import ctypes
import ipaddress
import json
import os
import random
import re
import select
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
CHAIN_WEIGHTS = (3, 1, 3, 1, 2)
HOOKS = tuple(c.lower() for c in CHAINS)

TCP_PORT = 5001
UDP_PORT = 5002
UDP_CLOSED = 5003
TCP_CLOSED = 5004
SPORT_BASE = 20000
MAX_FLOWS = 8		# per program: ports SPORT_BASE + slot * MAX_FLOWS + i
MAX_BATCH = (65535 - SPORT_BASE) // MAX_FLOWS
TIMEOUT = 10.0

CLIENT_NET = {4: ipaddress.ip_network("10.64.0.0/10"),
              6: ipaddress.ip_network("dead:40::/64")}
ROLE_ADDR = {
    4: {"router": "10.0.1.1", "server": "10.0.2.99", "gw": "10.0.1.99"},
    6: {"router": "dead:1::1", "server": "dead:2::99", "gw": "dead:1::99"},
}
ICMP_NAME = {4: "icmp", 6: "ipv6-icmp"}
AF = {4: socket.AF_INET, 6: socket.AF_INET6}

# Linux constants the socket module may lack.
IP_PKTINFO = 8
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
TCP_INFO = 11
TCPI_TOTAL_RETRANS = 100	# offset of tcpi_total_retrans in struct tcp_info
CLONE_NEWNET = 0x40000000


def client_addr(fam, slot):
    """The client address of program slot SLOT."""
    return str(CLIENT_NET[fam].network_address + slot + 1)


# --- generator --------------------------------------------------------------

class ProgramGen:
    """Program PID of seed SEED, from its own random stream."""

    def __init__(self, seed, pid, backends):
        self.r = random.Random("xt_connmark differential %d %d" % (seed, pid))
        r = self.r
        self.seed = seed
        self.pid = pid
        self.backends = backends
        # Values the program reuses, so that matches meet earlier writes.
        self.pool = [r.getrandbits(32) for _ in range(3)]
        self.pool += [r.randrange(16), 1 << r.randrange(32)]

    def value(self):
        r = self.r
        c = r.random()
        if c < 0.5:
            return r.choice(self.pool)
        if c < 0.6:
            return 0
        if c < 0.7:
            return 0xffffffff
        if c < 0.8:
            return r.randrange(256)
        return r.getrandbits(32)

    def mask(self):
        r = self.r
        c = r.randrange(16)
        fixed = (0xffffffff, 0xffffffff, 0xff, 0xff00, 0xffff, 0xffff0000,
                 0xff000000, 0xf, 0xf0, 0x1, 0x3, 0x80000000, 0)
        if c < len(fixed):
            return fixed[c]
        if c == 13:
            return 1 << r.randrange(32)
        return r.getrandbits(32)

    def mark_match(self, name):
        r = self.r
        m = self.mask()
        v = self.value()
        if r.random() < 0.8:
            v &= m
        neg = "! " if r.random() < 0.3 else ""
        if m == 0xffffffff and r.random() < 0.5:
            return "-m %s %s--mark 0x%x" % (name, neg, v)
        return "-m %s %s--mark 0x%x/0x%x" % (name, neg, v, m)

    def connmark_target(self):
        r = self.r
        op = r.choices(("set", "save", "restore"), (4, 3, 3))[0]
        if op == "set":
            v = self.value()
            m = self.mask()
            args = r.choice((
                "--set-xmark 0x%x/0x%x" % (v, m), "--set-xmark 0x%x" % v,
                "--set-mark 0x%x/0x%x" % (v, m), "--set-mark 0x%x" % v,
                "--and-mark 0x%x" % m, "--or-mark 0x%x" % v,
                "--xor-mark 0x%x" % v))
        else:
            args = "--save-mark" if op == "save" else "--restore-mark"
            form = r.randrange(5)
            if form == 1:
                args += " --mask 0x%x" % self.mask()
            elif form == 2:
                args += " --nfmask 0x%x" % self.mask()
            elif form == 3:
                args += " --ctmask 0x%x" % self.mask()
            elif form == 4:
                args += " --nfmask 0x%x --ctmask 0x%x" % (self.mask(),
                                                          self.mask())
        # Revision 2: valid shifts only (32 is a deliberate difference).
        if r.random() < 0.35:
            args += " --%s-shift-mark %d" % (r.choice(("left", "right")),
                                             r.randrange(32))
        return "-j CONNMARK " + args

    def mark_target(self):
        r = self.r
        v = self.value()
        m = self.mask()
        return "-j MARK " + r.choice((
            "--set-xmark 0x%x/0x%x" % (v, m), "--set-mark 0x%x" % v,
            "--and-mark 0x%x" % m, "--or-mark 0x%x" % v,
            "--xor-mark 0x%x" % v))

    def rule(self, fam):
        r = self.r
        conds = []
        if r.random() < 0.25:
            conds.append("-p " + r.choice(("tcp", "udp", ICMP_NAME[fam])))
        if r.random() < 0.35:
            conds.append(self.mark_match("connmark"))
        if r.random() < 0.2:
            conds.append(self.mark_match("mark"))
        ct = []
        if r.random() < 0.1:
            ct.append("--ctstate " + r.choice(
                ("NEW", "ESTABLISHED", "RELATED", "NEW,RELATED")))
        if r.random() < 0.15:
            ct.append("--ctdir " + r.choice(("ORIGINAL", "REPLY")))
        if ct:
            conds.append("-m conntrack " + " ".join(ct))
        c = r.random()
        if c < 0.7 or not conds:
            target = self.connmark_target()
        elif c < 0.85:
            target = self.mark_target()
        else:
            target = ""
        return {"chain": r.choices(CHAINS, CHAIN_WEIGHTS)[0],
                "args": " ".join(conds + [target]).strip()}

    def flow(self):
        r = self.r
        ends = r.choices((("client", "server"), ("server", "client"),
                          ("client", "router"), ("router", "client")),
                         (4, 3, 2, 2))[0]
        kind = r.choices(("tcp", "udp", "icmp", "udp_closed", "tcp_closed"),
                         (3, 3, 2, 1, 1))[0]
        count = {"udp": r.randint(1, 3), "icmp": r.randint(1, 2),
                 "udp_closed": r.randint(1, 2)}.get(kind, 1)
        return {"from": ends[0], "to": ends[1], "kind": kind, "count": count}

    def program(self):
        r = self.r
        fam = r.choice((4, 6))
        prog = {"id": self.pid, "seed": self.seed, "family": fam,
                "backend": r.choice(self.backends),
                "plugin": r.choice(("ours", "distro"))}
        prog["rules"] = [self.rule(fam) for _ in range(r.randint(3, 12))]
        prog["flows"] = [self.flow() for _ in range(r.randint(3, 6))]
        return prog


# The flows of a translation case: every hook, both directions, each kind
# of conntrack entry; what the initiators send has a DSCP (EF, AF41, CS1;
# "tos" is the whole DS field), their peers' answers have none.
CASE_FLOWS = (
    {"from": "client", "to": "server", "kind": "tcp", "count": 1,
     "tos": 0xb8},
    {"from": "server", "to": "client", "kind": "udp", "count": 2,
     "tos": 0x88},
    {"from": "client", "to": "router", "kind": "icmp", "count": 2,
     "tos": 0x20},
    {"from": "router", "to": "client", "kind": "udp", "count": 1},
)
CASE_ID_BASE = 1000000	# program ids of the cases, after the random ones
CASE_VARIANTS = 3


def txlate_cases(path):
    """(family, chain, rule arguments, command) of each case of PATH."""
    cases = []
    for line in open(path):
        words = line.split()
        if not words or words[0] not in ("iptables-translate",
                                         "ip6tables-translate"):
            continue
        fam = 6 if words[0].startswith("ip6") else 4
        chain, args, i = None, [], 1
        while i < len(words):
            if words[i] == "-t":
                i += 2
                continue
            if words[i] == "-A":
                chain = words[i + 1]
                i += 2
                continue
            args.append(words[i])
            i += 1
        cases.append((fam, chain, " ".join(args), line.strip()))
    return cases


def case_programs(path, seed, backends):
    """Each case of PATH as programs: its rule in a mangle chain of its hook,
    after rules that give every packet a packet mark and every new
    connection a ct mark: the complement of one of the case's numbers
    (variant 0: no bit of a mask, no match), or one of them with random
    other bits (1: every bit of a mask, a match), or random full-width
    values (2); random for a case without numbers. Each variant runs
    with our plugins and with Debian's (which lack --set-dscpmark)."""
    progs = []
    for ci, (fam, chain, args, cmd) in enumerate(txlate_cases(path)):
        nums = [int(x, 16) for x in re.findall(r"0x[0-9a-f]+", args)]
        for v in range(CASE_VARIANTS):
            r = random.Random("xt_connmark translation %d %d %d" %
                              (seed, ci, v))

            def pick():
                x = r.getrandbits(32)
                if not nums or v == 2:
                    return x
                n = r.choice(nums)
                return ~n & 0xffffffff if v == 0 else n | x
            mark, ctmark = pick(), pick()
            rules = []
            for first in ("PREROUTING", "OUTPUT"):
                rules.append({"chain": first, "args":
                              "-j MARK --set-xmark 0x%x/0xffffffff" % mark})
                rules.append({"chain": first, "args":
                              "-m conntrack --ctstate NEW -j CONNMARK "
                              "--set-xmark 0x%x/0xffffffff" % ctmark})
            rules.append({"chain": chain, "args": args})
            for plugin in ("ours", "distro"):
                if plugin == "distro" and "--set-dscpmark" in args:
                    continue
                progs.append({
                    "id": CASE_ID_BASE + len(progs), "seed": seed,
                    "family": fam, "backend": backends[v % len(backends)],
                    "plugin": plugin, "rules": rules,
                    "flows": list(CASE_FLOWS), "case": cmd})
    return progs


def cmd_gen(a):
    backends = a.backends.split()
    progs = [ProgramGen(a.seed, p, backends).program()
             for p in range(a.first, a.first + a.count)]
    if a.txlate:
        progs += case_programs(a.txlate, a.seed, backends)
    json.dump({"seed": a.seed, "programs": progs}, sys.stdout)
    with open(a.addrs_out, "w") as f:
        for slot in range(a.addrs):
            f.write("addr add %s/32 dev veth0\n" % client_addr(4, slot))
            f.write("addr add %s/128 dev veth0 nodad\n" %
                    client_addr(6, slot))


# --- rendering a batch ------------------------------------------------------

def chain_name(slot, chain):
    return "x%d_%s" % (slot, chain)


def render_rules(prog, slot, with_ndp):
    """iptables-restore text of one program in slot SLOT (no COMMIT)."""
    cp = client_addr(prog["family"], slot)
    lines = [":%s - [0:0]" % chain_name(slot, c) for c in CHAINS]
    if with_ndp:
        # Neighbour discovery is no flow of ours: keep it out of the
        # programs (ACCEPT ends the mangle table for it).
        for c in CHAINS:
            for t in ("neighbour-solicitation", "neighbour-advertisement"):
                lines.append("-A %s -p ipv6-icmp -m icmp6 --icmpv6-type %s"
                             " -j ACCEPT" % (c, t))
    for c in CHAINS:
        lines.append("-A %s -s %s -j %s" % (c, cp, chain_name(slot, c)))
        lines.append("-A %s -d %s -j %s" % (c, cp, chain_name(slot, c)))
    for c in CHAINS:
        for rule in prog["rules"]:
            if rule["chain"] == c:
                lines.append(("-A %s %s" % (chain_name(slot, c),
                                            rule["args"])).rstrip())
    return lines


def render_flows(batch):
    """The concrete flows of a batch: addresses, ports, ICMP ids."""
    flows = []
    for slot, prog in enumerate(batch):
        if prog is None:
            continue
        fam = prog["family"]
        for i, f in enumerate(prog["flows"]):
            k = slot * MAX_FLOWS + i
            addr = dict(ROLE_ADDR[fam], client=client_addr(fam, slot))
            dport = {"tcp": TCP_PORT, "udp": UDP_PORT, "icmp": 0,
                     "udp_closed": UDP_CLOSED,
                     "tcp_closed": TCP_CLOSED}[f["kind"]]
            flows.append(dict(f, slot=slot, index=i, fam=fam,
                              src=addr[f["from"]], dst=addr[f["to"]],
                              sport=SPORT_BASE + k, dport=dport,
                              icmp_id=k + 1))
    return flows


def flow_text(f):
    if f["kind"] == "icmp":
        what = "icmp echo id %d, %d request(s)" % (f["icmp_id"], f["count"])
        return "%s %s -> %s %s: %s" % (f["from"], f["src"], f["to"],
                                       f["dst"], what)
    what = {"tcp": "tcp: connect, 1 byte each way, close with RST",
            "udp": "udp: %d datagram(s), each answered" % f["count"],
            "udp_closed": "udp to a closed port: %d datagram(s), each "
                          "answered by ICMP port unreachable" % f["count"],
            "tcp_closed": "tcp to a closed port: SYN, answered by RST"}
    return "%s %s port %d -> %s %s port %d %s" % (
        f["from"], f["src"], f["sport"], f["to"], f["dst"], f["dport"],
        what[f["kind"]])


# --- traffic agents ---------------------------------------------------------

def setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns %s: %s" % (path, os.strerror(err)))
    os.close(fd)


def icmp_checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def tcp_retrans(sock):
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 104)
        return struct.unpack_from("I", info, TCPI_TOTAL_RETRANS)[0]
    except OSError:
        return 0


class Agent:
    """The client, router or server end of every flow of a batch."""

    def __init__(self, role, flows):
        self.role = role
        self.flows = flows
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.unstable = {}
        # Address -> slot, to blame a disturbed connection on its program.
        self.slot_of = {}
        for f in flows:
            self.slot_of[f["src"] if f["from"] == "client" else f["dst"]] = \
                f["slot"]

    def blame(self, slot, why):
        with self.lock:
            self.unstable.setdefault(str(slot), []).append(
                "%s: %s" % (self.role, why))

    def blame_addr(self, addrs, why):
        for addr in addrs:
            slot = self.slot_of.get(addr.split("%")[0])
            if slot is not None:
                self.blame(slot, why)
                return

    # Responders: one TCP listener and one UDP socket per family, all
    # served by one thread.
    def start(self):
        self.sel = selectors.DefaultSelector()
        self.conns = {}
        for fam in (4, 6):
            wild = "0.0.0.0" if fam == 4 else "::"
            ls = socket.socket(AF[fam], socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == 6:
                ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            ls.bind((wild, TCP_PORT))
            ls.listen(1024)
            ls.setblocking(False)
            self.sel.register(ls, selectors.EVENT_READ,
                              lambda ls=ls: self.tcp_accept(ls))
            us = socket.socket(AF[fam], socket.SOCK_DGRAM)
            if fam == 4:
                us.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            else:
                us.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                us.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            us.bind((wild, UDP_PORT))
            us.setblocking(False)
            self.sel.register(us, selectors.EVENT_READ,
                              lambda us=us, fam=fam: self.udp_echo(us, fam))
        self.server = threading.Thread(target=self.serve, daemon=True)
        self.server.start()

    def serve(self):
        try:
            deadline = None
            while True:
                for key, _ in self.sel.select(0.1):
                    key.data()
                if self.stop.is_set():
                    # The last connections end with the initiators' RSTs.
                    deadline = deadline or time.monotonic() + TIMEOUT
                    if not self.conns or time.monotonic() > deadline:
                        break
            for conn in list(self.conns):
                self.tcp_done(conn, "not reset by the initiator")
        except Exception as e:	# a broken agent fails the run
            self.blame(-1, "responder: %r" % e)

    def tcp_accept(self, ls):
        try:
            conn, peer = ls.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        conn.setblocking(False)
        self.conns[conn] = (peer[0], conn.getsockname()[0])
        self.sel.register(conn, selectors.EVENT_READ,
                          lambda conn=conn: self.tcp_serve(conn))

    def tcp_serve(self, conn):
        try:
            data = conn.recv(16)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data = b""
        if data == b"q":
            try:
                conn.send(b"r")
            except OSError as e:
                self.tcp_done(conn, "cannot answer: %s" % e)
        elif data:
            self.tcp_done(conn, "unexpected request %r" % data)
        else:
            self.tcp_done(conn, None)

    def tcp_done(self, conn, why):
        if why:
            self.blame_addr(self.conns[conn], "tcp responder: %s" % why)
        if tcp_retrans(conn):
            self.blame_addr(self.conns[conn], "tcp responder retransmitted")
        self.sel.unregister(conn)
        del self.conns[conn]
        conn.close()

    def udp_echo(self, us, fam):
        try:
            data, anc, _, peer = us.recvmsg(64, 256)
        except BlockingIOError:
            return
        for level, typ, val in anc:
            if fam == 4 and typ == IP_PKTINFO:
                info = struct.pack("=i4s4s", 0, val[8:12], b"\0" * 4)
                cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, info)]
            elif fam == 6 and typ == IPV6_PKTINFO:
                info = struct.pack("=16si", val[:16], 0)
                cmsg = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, info)]
            else:
                continue
            # From the address the datagram went to.
            us.sendmsg([b"r"], cmsg, 0, peer)

    # Initiators: PARALLEL threads take the flows one after the other.
    def run_flows(self, parallel):
        todo = [f for f in self.flows if f["from"] == self.role]
        todo.reverse()

        def worker():
            while True:
                with self.lock:
                    if not todo:
                        return
                    f = todo.pop()
                start = time.monotonic()
                try:
                    getattr(self, "flow_" + f["kind"])(f)
                except (OSError, ValueError) as e:
                    self.blame(f["slot"], "flow %d (%s): %s" %
                               (f["index"], f["kind"], e))
                # Each wait of a flow has TIMEOUT and a lost answer or a
                # retransmission raises; a flow that got every answer is
                # only slow (a stalled guest under CI's load: 8 and 11 of
                # 100 programs on sid at TIMEOUT), unless far slower.
                if time.monotonic() - start > 3 * TIMEOUT:
                    self.blame(f["slot"], "flow %d took too long" %
                               f["index"])
        threads = [threading.Thread(target=worker, daemon=True)
                   for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def sock(self, f, typ, proto=0):
        s = socket.socket(AF[f["fam"]], typ, proto)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if f.get("tos"):
            if f["fam"] == 4:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, f["tos"])
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS,
                             f["tos"])
        s.settimeout(TIMEOUT)
        return s

    def flow_tcp(self, f):
        s = self.sock(f, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        try:
            s.bind((f["src"], f["sport"]))
            s.connect((f["dst"], f["dport"]))
            s.sendall(b"q")
            if s.recv(16) != b"r":
                raise ValueError("no answer")
            # The ACK of the answer went out before recv() returned.
            if tcp_retrans(s):
                raise ValueError("retransmitted")
        finally:
            s.close()	# linger 0: RST

    def flow_tcp_closed(self, f):
        s = self.sock(f, socket.SOCK_STREAM)
        try:
            s.bind((f["src"], f["sport"]))
            try:
                s.connect((f["dst"], f["dport"]))
            except ConnectionRefusedError:
                if tcp_retrans(s):
                    raise ValueError("retransmitted")
                return
            raise ValueError("connected to a closed port")
        finally:
            s.close()

    def flow_udp(self, f, closed=False):
        """Each datagram answered "r", or, to a closed port, refused."""
        s = self.sock(f, socket.SOCK_DGRAM)
        try:
            s.bind((f["src"], f["sport"]))
            s.connect((f["dst"], f["dport"]))
            for _ in range(f["count"]):
                s.send(b"u")
                try:
                    answer = s.recv(16)
                except ConnectionRefusedError:
                    if closed:
                        continue
                    raise
                if closed:
                    raise ValueError("answer from a closed port")
                if answer != b"r":
                    raise ValueError("wrong answer")
        finally:
            s.close()

    def flow_udp_closed(self, f):
        self.flow_udp(f, closed=True)

    def flow_icmp(self, f):
        fam = f["fam"]
        proto = socket.IPPROTO_ICMP if fam == 4 else socket.IPPROTO_ICMPV6
        req, rep = (8, 0) if fam == 4 else (128, 129)
        s = self.sock(f, socket.SOCK_RAW, proto)
        try:
            s.bind((f["src"], 0))
            for seq in range(1, f["count"] + 1):
                body = struct.pack("!BBHHH", req, 0, 0, f["icmp_id"], seq)
                body += b"xtcm"
                if fam == 4:
                    csum = icmp_checksum(body)
                    body = body[:2] + struct.pack("!H", csum) + body[4:]
                s.sendto(body, (f["dst"], 0))
                deadline = time.monotonic() + TIMEOUT
                while True:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    data = s.recv(2048)
                    if fam == 4:
                        data = data[(data[0] & 0xf) * 4:]
                    if len(data) < 8:
                        continue
                    typ, _, _, ident, sq = struct.unpack("!BBHHH", data[:8])
                    if typ == rep and ident == f["icmp_id"] and sq == seq:
                        break
        finally:
            s.close()

    def finish(self):
        self.stop.set()
        self.server.join(3 * TIMEOUT)


def agent_child(role, nspath, flows, parallel, rfd, wfd):
    """Forked: enter the namespace, serve, initiate on "go", report."""
    rd = os.fdopen(rfd, "r")
    wr = os.fdopen(wfd, "w")
    try:
        if nspath:
            setns(nspath)
        # Every packet is sent from CPU 0, so every veth hop queues it to
        # CPU 0's backlog: the router sees a flow's packets in the order
        # they were made (two CPUs could reorder, say, a softirq's ACK and
        # the RST that the woken application sends right after it).
        os.sched_setaffinity(0, {0})
        ag = Agent(role, flows)
        ag.start()
        wr.write("ready\n")
        wr.flush()
        if rd.readline().strip() != "go":
            os._exit(1)
        ag.run_flows(parallel)
        wr.write("done\n")
        wr.flush()
        rd.readline()
        ag.finish()
        wr.write(json.dumps(ag.unstable) + "\n")
        wr.flush()
    except Exception as e:	# report everything to the parent
        wr.write(json.dumps({"-1": ["%s agent: %r" % (role, e)]}) + "\n")
        wr.flush()
    os._exit(0)


def run_agents(flows, nspaths, parallel, deadline_s=900):
    """Run the three agents (router: this namespace); unstable slots."""
    kids = []
    for role in ("client", "router", "server"):
        p2c = os.pipe()
        c2p = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(p2c[1])
            os.close(c2p[0])
            agent_child(role, nspaths.get(role), flows, parallel, p2c[0],
                        c2p[1])
        os.close(p2c[0])
        os.close(c2p[1])
        kids.append((pid, os.fdopen(c2p[0], "r"), os.fdopen(p2c[1], "w")))
    deadline = time.monotonic() + deadline_s

    def expect(what):
        for _, rd, _ in kids:
            ready, _, _ = select.select([rd], [], [],
                                        max(0, deadline - time.monotonic()))
            line = rd.readline().strip() if ready else ""
            if line != what:
                raise RuntimeError("agent: want %s, got '%s'" % (what, line))

    def tell(what):
        for _, _, wr in kids:
            wr.write(what + "\n")
            wr.flush()

    unstable = {}
    try:
        expect("ready")
        tell("go")
        expect("done")
        tell("stop")
        for _, rd, _ in kids:
            for slot, why in json.loads(rd.readline()).items():
                unstable.setdefault(slot, []).extend(why)
    finally:
        for pid, rd, wr in kids:
            try:
                wr.close()
            except OSError:
                pass
            rd.close()
            os.waitpid(pid, 0)
    return unstable


# --- running a batch in the router namespace -------------------------------

def sh(cmd, stdin=None, env=None, check=True):
    p = subprocess.run(cmd, input=stdin, env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (
            " ".join(cmd), p.returncode, p.stdout + p.stderr,
            "\ninput:\n" + stdin if stdin else ""))
    return p.stdout


def ipt(backend, fam, what):
    return "%s-%s-%s" % ("iptables" if fam == 4 else "ip6tables", backend,
                         what)


def observer_ruleset():
    """nft: a clean start, and the table that records the marks."""
    lines = []
    for t in ("inet xtcm_obs", "ip mangle", "ip6 mangle"):
        lines += ["table %s" % t, "delete table %s" % t]
    lines.append("table inet xtcm_obs {")
    # The client's port identifies a TCP or UDP flow: the source port of
    # what the client sends, the destination port of what it receives. ICMP
    # has the type and code there ("th sport"; "th dport" would be the
    # checksum). No meta l4proto: with it, IPv6's key is too long for nft
    # 1.0.6.
    key = "%s saddr . %s daddr . th %s . meta mark"
    for hook in HOOKS:
        for fam, l3 in ((4, "ip"), (6, "ip6")):
            k = key % (l3, l3, "sport")
            lines.append("set %s%d { typeof %s . ct mark; flags dynamic; "
                         "counter; size 65535; }" % (hook, fam, k))
            lines.append("set %s%dn { typeof %s; flags dynamic; counter; "
                         "size 65535; }" % (hook, fam, k))
    for hook in HOOKS:
        lines.append("chain %s { type filter hook %s priority mangle + 10;"
                     % (hook, hook))
        lines.append("icmpv6 type { 130, 131, 132, 133, 134, 135, 136, 137, "
                     "143 } return")
        for fam, l3 in ((4, "ip"), (6, "ip6")):
            for d, proto, port in (
                    ("saddr", "", "sport"),
                    ("daddr", " meta l4proto { tcp, udp }", "dport"),
                    ("daddr", " meta l4proto != { tcp, udp }", "sport")):
                k = key % (l3, l3, port)
                sel = "%s %s %s%s" % (l3, d, CLIENT_NET[fam], proto)
                lines.append("%s ct state invalid add @%s%dn { %s }"
                             % (sel, hook, fam, k))
                lines.append("%s add @%s%d { %s . ct mark }"
                             % (sel, hook, fam, k))
        lines.append("}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def reset_router(backends):
    """No rule, no observer, no conntrack entry left in the router."""
    for fam in (4, 6):
        if "legacy" in backends:
            sh([ipt("legacy", fam, "restore")], "*mangle\nCOMMIT\n")
    sh(["nft", "-f", "-"], "\n".join(
        "table %s\ndelete table %s" % (t, t)
        for t in ("inet xtcm_obs", "ip mangle", "ip6 mangle")) + "\n")
    sh(["conntrack", "-F"], check=False)


RULE_RE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")


def collect(batch, backends, res):
    slot_of = {}
    for slot, prog in enumerate(batch):
        slot_of[client_addr(prog["family"], slot)] = slot

    def count(chain, pkts, jump, direction):
        x = re.match(r"x(\d+)_(\w+)$", chain)
        if x:
            r = res[int(x.group(1))]["rules"]
            r.setdefault(x.group(2), []).append(pkts)
            return
        j = re.match(r"x(\d+)_\w+$", jump or "")
        if j and direction:
            res[int(j.group(1))]["jumps"]["%s -%s" % (chain, direction)] = \
                pkts

    # iptables-legacy's counters from its save; iptables-nft's below, from
    # the nft ruleset (one process instead of two iptables-nft-save).
    if "legacy" in backends:
        for fam in (4, 6):
            for line in sh([ipt("legacy", fam, "save"), "-c", "-t",
                            "mangle"]).splitlines():
                m = RULE_RE.match(line)
                if m:
                    j = re.match(r"-([sd]) \S+ -j (x\d+_\w+)$", m.group(4))
                    count(m.group(3), int(m.group(1)),
                          j and j.group(2), j and j.group(1))
    ruleset = json.loads(sh(["nft", "-j", "list", "ruleset"]))
    for item in ruleset.get("nftables", []):
        rule = item.get("rule")
        if not rule or rule["table"] != "mangle":
            continue
        pkts, jump, direction = None, None, None
        for e in rule["expr"]:
            if "counter" in e:
                pkts = e["counter"]["packets"]
            elif "jump" in e:
                jump = e["jump"]["target"]
            elif "match" in e:
                field = e["match"]["left"].get("payload", {}).get("field")
                direction = {"saddr": "s", "daddr": "d"}.get(field, direction)
        count(rule["chain"], pkts, jump, direction)

    # conntrack -L lists both families from 1.4.7; 1.4.6 (Debian 11) IPv4's.
    listing = "".join(sh(["conntrack", "-L", "-f", family], check=False)
                      for family in ("ipv4", "ipv6"))
    for line in listing.splitlines():
        f = line.split()
        if len(f) < 4 or "=" in f[0]:
            continue
        kv = {}
        for tok in f:
            if "=" in tok:
                k, v = tok.split("=", 1)
                kv.setdefault(k, v)
        src, dst = kv.get("src"), kv.get("dst")
        slot = slot_of.get(src, slot_of.get(dst))
        if slot is None or "mark" not in kv:
            continue
        if "sport" in kv:
            key = "%s %s:%s > %s:%s" % (f[0], src, kv["sport"], dst,
                                       kv["dport"])
        else:
            key = "%s %s > %s type %s id %s" % (f[0], src, dst,
                                               kv.get("type"), kv.get("id"))
        res[slot]["ct"][key] = "0x%x" % int(kv["mark"])

    for item in ruleset.get("nftables", []):
        s = item.get("set")
        if not s or s["table"] != "xtcm_obs":
            continue
        for e in s.get("elem", []):
            if isinstance(e, dict) and "elem" in e:
                val, pkts = e["elem"]["val"], e["elem"]["counter"]["packets"]
            else:
                val, pkts = e, 0
            v = val["concat"]
            saddr, daddr, sport, mark = v[:4]
            ctmark = "0x%x" % v[4] if len(v) > 4 else "none"
            slot = slot_of.get(saddr, slot_of.get(daddr))
            if slot is None:
                continue
            hook = s["name"].rstrip("46n")
            key = "%s: %s > %s, client port or ICMP type/code %d" % (
                hook, saddr, daddr, sport)
            marks = res[slot]["marks"].setdefault(key, {})
            mk = "mark 0x%x ct mark %s" % (mark, ctmark)
            marks[mk] = marks.get(mk, 0) + pkts


class Timer:
    """Seconds per step, for the "# timing" line."""

    def __init__(self):
        self.steps = {}
        self.last = time.monotonic()

    def __call__(self, step):
        now = time.monotonic()
        self.steps[step] = self.steps.get(step, 0) + now - self.last
        self.last = now

    def __str__(self):
        return ", ".join("%s %.1f s" % kv for kv in self.steps.items())


def plugin_env(plugin, a):
    """The environment of iptables tools with PLUGIN's plugins."""
    env = dict(os.environ)
    if plugin == "distro":
        env["XTABLES_LIBDIR"] = a.distro_libdir
    return env


SLOT_RE = re.compile(r"\bx(\d+)_[A-Z]+\b")


def load_translation(batch, a, res):
    """The batch's rules through iptables-restore-translate, with the
    program's plugins, loaded by nft. A program with a rule that the plugin
    refuses (a "# ..." line) is left out, its "refused" says which rule; one
    that nft rejects too, its "rejected" says why. "nft" keeps the
    program's translation."""
    header = []
    by_slot = {}
    ndp_done = False
    for plugin in ("distro", "ours"):
        env = plugin_env(plugin, a)
        for fam in (4, 6):
            lines = []
            for slot, prog in enumerate(batch):
                if (prog["plugin"], prog["family"]) == (plugin, fam):
                    lines += render_rules(prog, slot, fam == 6 and
                                          not ndp_done)
                    ndp_done |= fam == 6
            if not lines:
                continue
            tool = "iptables" if fam == 4 else "ip6tables"
            with tempfile.NamedTemporaryFile("w", suffix=".rules") as f:
                f.write("*mangle\n%s\n%s\nCOMMIT\n" % (
                    "\n".join(":%s ACCEPT [0:0]" % c for c in CHAINS),
                    "\n".join(lines)))
                f.flush()
                out = sh([tool + "-restore-translate", "-f", f.name],
                         env=env)
            for line in out.splitlines():
                m = SLOT_RE.search(line)
                if line.startswith("# "):
                    if m:
                        res[int(m.group(1))]["refused"].append(line[2:])
                elif m:
                    by_slot.setdefault(int(m.group(1)), []).append(line)
                elif line:
                    header.append(line)
    for slot, lines in by_slot.items():
        res[slot]["nft"] = lines
    load_programs(header, by_slot,
                  [s for s in sorted(by_slot) if not res[s]["refused"]], res)


def load_programs(header, by_slot, todo, res):
    """nft -f of HEADER and the lines of the programs TODO. nft names the
    line of each rule it rejects: leave those programs out and load again,
    until all that is left loads. Where nft names no line (nft 1.0.6 aborts
    on "( 0x1 ) << 3"), each half on its own."""
    while todo:
        owner = [None] * len(header)
        for slot in todo:
            owner += [slot] * len(by_slot[slot])
        err = nft_load("\n".join(header + [x for s in todo
                                           for x in by_slot[s]]) + "\n")
        if err is None:
            return
        bad = {}
        for m in re.finditer(r"^/dev/stdin:(\d+):.*$", err, re.M):
            n = int(m.group(1)) - 1
            bad.setdefault(owner[n] if n < len(owner) else None, m.group(0))
        if None in bad:
            raise RuntimeError("nft -f of the translations failed: " + err)
        if not bad and len(todo) == 1:
            bad[todo[0]] = err.splitlines()[0]
        elif not bad:
            half = len(todo) // 2
            load_programs(header, by_slot, todo[:half], res)
            load_programs(header, by_slot, todo[half:], res)
            return
        for slot, why in bad.items():
            res[slot]["rejected"] = why
        todo = [s for s in todo if s not in bad]


def nft_load(text):
    """nft -f of TEXT: None, or nft's complaint."""
    p = subprocess.run(["nft", "-f", "-"], input=text, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode == 0:
        return None
    return p.stdout.strip() or "exit status %d" % p.returncode


def load_rules(batch, a):
    """The batch's rules through iptables-restore, with the program's
    backend and plugins: Debian's first (iptables-nft-restore --noflush
    must not meet a revision 3 rule it cannot parse)."""
    backends = a.backends.split()
    ndp_done = set()
    for plugin in ("distro", "ours"):
        env = plugin_env(plugin, a)
        for backend in backends:
            for fam in (4, 6):
                lines = []
                for slot, prog in enumerate(batch):
                    if (prog["plugin"], prog["backend"],
                            prog["family"]) != (plugin, backend, fam):
                        continue
                    ndp = fam == 6 and (backend, fam) not in ndp_done
                    ndp_done.add((backend, fam))
                    lines += render_rules(prog, slot, ndp)
                if lines:
                    sh([ipt(backend, fam, "restore"), "--noflush"],
                       "*mangle\n" + "\n".join(lines) + "\nCOMMIT\n",
                       env=env)


def run_batch(batch, a, nspaths, timer):
    backends = a.backends.split()
    res = [{"slot": slot, "rules": {}, "jumps": {}, "ct": {}, "marks": {},
            "unstable": [], "refused": [], "rejected": None, "nft": []}
           for slot in range(len(batch))]
    # The router is clean: a new namespace, or reset_router() after the
    # last batch. The observer's ruleset deletes any stale nft table.
    sh(["nft", "-f", "-"], observer_ruleset())
    timer("reset")
    if a.translate:
        load_translation(batch, a, res)
    else:
        load_rules(batch, a)
    timer("rules")
    flows = render_flows(batch)
    for slot, why in run_agents(flows, nspaths, a.parallel).items():
        if int(slot) < 0:
            raise RuntimeError("; ".join(why))
        res[int(slot)]["unstable"] += why
    timer("traffic")
    collect(batch, backends, res)
    timer("collect")
    reset_router(backends)
    timer("reset")
    return res


def cmd_run(a):
    plan = json.load(open(a.plan))
    progs = plan["programs"]
    nspaths = {r: "/run/netns/" + getattr(a, r)
               for r in ("client", "server")}
    setns("/run/netns/" + a.router)
    out = {}
    start = time.monotonic()
    timer = Timer()
    for first in range(0, len(progs), min(a.batch, MAX_BATCH)):
        batch = progs[first:first + min(a.batch, MAX_BATCH)]
        for prog, res in zip(batch, run_batch(batch, a, nspaths, timer)):
            out[str(prog["id"])] = res
    json.dump(out, open(a.out, "w"))
    print("# %s: ran %d programs in %.1f s (%s)" % (
        a.tag, len(progs), time.monotonic() - start, timer))


# --- comparing --------------------------------------------------------------

def rule_label(prog, chain, i):
    rules = [r for r in prog["rules"] if r["chain"] == chain]
    if i < len(rules):
        return "%s rule %d (%s)" % (chain, i + 1, rules[i]["args"])
    return "%s rule %d" % (chain, i + 1)


def differences(prog, ra, rb, names):
    """Lines describing how results RA and RB of PROG differ."""
    out = []
    na, nb = names
    for chain in CHAINS:
        la = ra["rules"].get(chain, [])
        lb = rb["rules"].get(chain, [])
        for i in range(max(len(la), len(lb))):
            va = la[i] if i < len(la) else None
            vb = lb[i] if i < len(lb) else None
            if va != vb:
                out.append("packets of %s: %s %s, %s %s" % (
                    rule_label(prog, chain, i), na, va, nb, vb))
    for k in sorted(set(ra["jumps"]) | set(rb["jumps"])):
        va, vb = ra["jumps"].get(k), rb["jumps"].get(k)
        if va != vb:
            out.append("packets of the jump %s: %s %s, %s %s" %
                       (k, na, va, nb, vb))
    for k in sorted(set(ra["ct"]) | set(rb["ct"])):
        va, vb = ra["ct"].get(k), rb["ct"].get(k)
        if va != vb:
            out.append("ct mark of %s: %s %s, %s %s" % (k, na, va, nb, vb))
    for k in sorted(set(ra["marks"]) | set(rb["marks"])):
        va, vb = ra["marks"].get(k, {}), rb["marks"].get(k, {})
        if va != vb:
            fmt = lambda d: "{%s}" % ", ".join(
                "%s: %d pkt" % (m, n) for m, n in sorted(d.items())) or "none"
            out.append("marks leaving %s: %s %s, %s %s" %
                       (k, na, fmt(va), nb, fmt(vb)))
    return out


def harness_problems(prog, r):
    """Traffic that a stable run must have produced, whatever the module."""
    out = []
    # Conntrack deletes a connection whose only answer is a RST at once.
    want = sum(f["kind"] != "tcp_closed" for f in prog["flows"])
    if len(r["ct"]) != want:
        out.append("%d conntrack entries, want %d" % (len(r["ct"]), want))
    if not any(r["jumps"].values()) or len(r["jumps"]) != 2 * len(CHAINS):
        out.append("jump counters %s" % r["jumps"])
    for chain in CHAINS:
        want = sum(x["chain"] == chain for x in prog["rules"])
        if len(r["rules"].get(chain, [])) != want:
            out.append("%d counters in %s, want %d" % (
                len(r["rules"].get(chain, [])), chain, want))
    return out


def too_unstable(unstable, programs):
    """More than 10% of the programs had disturbed traffic: say so."""
    if unstable * 10 <= programs:
        return False
    print("FAIL: %d of %d programs had disturbed traffic" %
          (unstable, programs))
    return True


def cmd_compare(a):
    plan = json.load(open(a.plan))
    ra = json.load(open(a.a))
    rb = json.load(open(a.b))
    names = a.names or ("A", "B")
    stats = {"programs": 0, "rules": 0, "flows": 0, "unstable": 0,
             "legacy": 0, "nft": 0, "v4": 0, "v6": 0, "ours": 0,
             "distro": 0, "packets": 0}
    mismatches = []
    harness = []
    for prog in plan["programs"]:
        pid = str(prog["id"])
        x, y = ra[pid], rb[pid]
        stats["programs"] += 1
        if x["unstable"] or y["unstable"]:
            stats["unstable"] += 1
            print("# seed %d program %s: traffic disturbed, not compared: %s"
                  % (plan["seed"], pid, "; ".join(x["unstable"] +
                                                  y["unstable"])[:300]))
            continue
        for r, n in ((x, names[0]), (y, names[1])):
            for p in harness_problems(prog, r):
                harness.append("seed %d program %s (%s): %s" %
                               (plan["seed"], pid, n, p))
        stats["rules"] += len(prog["rules"])
        stats["flows"] += len(prog["flows"])
        stats[prog["backend"]] += 1
        stats["v%d" % prog["family"]] += 1
        stats[prog["plugin"]] += 1
        stats["packets"] += sum(x["jumps"].values()) // 2
        diff = differences(prog, x, y, names)
        if diff:
            mismatches.append(dict(prog, diff=diff, slot=x["slot"]))
    for h in harness:
        print("FAIL: harness: %s" % h)
    for m in mismatches[:20]:
        print("FAIL: seed %d program %d: %s and %s differ (%d differences), "
              "e.g. %s" % (m["seed"], m["id"], names[0], names[1],
                           len(m["diff"]), m["diff"][0]))
    if len(mismatches) > 20:
        print("FAIL: ... and %d more programs" % (len(mismatches) - 20))
    print("# compared %(programs)d programs (%(unstable)d with disturbed "
          "traffic skipped): %(rules)d rules, %(flows)d flows, about "
          "%(packets)d packets; legacy %(legacy)d, nft %(nft)d; IPv4 %(v4)d, "
          "IPv6 %(v6)d; our plugins %(ours)d, Debian's %(distro)d" % stats)
    if a.first_mismatch and mismatches:
        json.dump(mismatches[0], open(a.first_mismatch, "w"))
    if too_unstable(stats["unstable"], stats["programs"]):
        return 1
    return 1 if mismatches or harness else 0


# A translation that combines two runtime values, a mark or the DSCP with
# another mark (register-to-register bitwise: nftables 1.1.2, Linux 6.13).
REG2REG_RE = re.compile(
    r"\b(?:and|or|xor) (?:\( )?(?:(?:ct |meta )?mark|ip6? dscp)\b")
PLUGIN_NAME = {"ours": "ours", "distro": "Debian's"}


def translation_outcome(prog, x, y):
    """(outcome, detail) of PROG's translation: X ran the iptables rules,
    Y their translation."""
    if x["unstable"] or y["unstable"]:
        return "unstable", "; ".join(x["unstable"] + y["unstable"])[:300]
    if y["refused"]:
        return "refused", y["refused"][0]
    if y["rejected"]:
        return "rejected", y["rejected"].splitlines()[0]
    diff = differences(prog, x, y, ("iptables", "nft"))
    if diff:
        return "wrong", "%d differences, e.g. %s" % (len(diff), diff[0])
    return "exact", ""


def translation_problem(prog, outcome, y, reg2reg):
    """Why OUTCOME of our translation of PROG fails the test, or None."""
    if outcome == "wrong":
        return "behaves otherwise than the iptables rules"
    if outcome == "refused":
        return "refused a rule that has an exact translation"
    if outcome == "rejected":
        if reg2reg:
            return "rejected by an nft and kernel with register-to-" \
                "register bitwise"
        if not any(REG2REG_RE.search(line) for line in y["nft"]):
            return "rejected, with no register-to-register expression"
    return None


def cmd_compare_translation(a):
    plan = json.load(open(a.plan))
    ra = json.load(open(a.a))
    rb = json.load(open(a.b))
    fails = []
    counts = {}
    cases = {}
    for prog in plan["programs"]:
        pid = str(prog["id"])
        x, y = ra[pid], rb[pid]
        outcome, detail = translation_outcome(prog, x, y)
        name = "%s %s" % (PLUGIN_NAME[prog["plugin"]],
                          "case" if "case" in prog else "random")
        counts.setdefault(name, {}).setdefault(outcome, 0)
        counts[name][outcome] += 1
        what = "seed %d program %s (%s plugins)" % (
            plan["seed"], pid, PLUGIN_NAME[prog["plugin"]])
        if outcome != "unstable":
            problems = harness_problems(prog, x)
            if outcome in ("exact", "wrong"):
                problems += harness_problems(prog, y)
            fails += ["harness: %s: %s" % (what, h) for h in problems]
        if prog["plugin"] == "ours":
            why = translation_problem(prog, outcome, y, a.reg2reg)
            if why:
                fails.append("%s: our translation %s: %s%s" % (
                    what, why, detail, "".join(
                        "\n#   " + line for line in y["nft"])))
        elif outcome == "wrong" and "case" not in prog:
            print("# Debian's translation of %s is wrong: %s" %
                  (what, detail))
        if "case" in prog:
            c = cases.setdefault((prog["case"], prog["plugin"]), [])
            c.append((outcome, detail))
    for (case, plugin), outs in cases.items():
        kinds = [o for o, _ in outs]
        for worst in ("wrong", "rejected", "refused", "unstable", "exact"):
            if worst in kinds:
                break
        detail = next(d for o, d in outs if o == worst)
        print("# %s: %s (%d of %d runs)%s: %s" % (
            PLUGIN_NAME[plugin], worst, kinds.count(worst), len(kinds),
            ": " + detail if detail else "", case))
    for f in fails[:20]:
        print("FAIL: " + f)
    if len(fails) > 20:
        print("FAIL: ... and %d more" % (len(fails) - 20))
    for name, c in sorted(counts.items()):
        print("# %s programs: %s" % (name, ", ".join(
            "%s %d" % kv for kv in sorted(c.items()))))
    total = sum(sum(c.values()) for c in counts.values())
    unstable = sum(c.get("unstable", 0) for c in counts.values())
    if too_unstable(unstable, total):
        return 1
    if not counts.get("ours case", {}).get("exact"):
        print("FAIL: no case of our translations ran exactly")
        return 1
    return 1 if fails else 0


# --- shrinking --------------------------------------------------------------

def cmd_shrink_cands(a):
    cur = json.load(open(a.cur))
    rules, flows = cur["rules"], cur["flows"]
    cands = []

    def add(rs, fs, what):
        if fs and (rs != rules or fs != flows):
            c = dict(cur, rules=rs, flows=fs, what=what, id=len(cands))
            c.pop("diff", None)
            c.pop("slot", None)
            cands.append(c)
    n = len(rules)
    if n > 1:
        add(rules[:n // 2], flows, "first half of the rules")
        add(rules[n // 2:], flows, "second half of the rules")
    for chain in CHAINS:
        rs = [r for r in rules if r["chain"] != chain]
        if len(rs) not in (0, n):
            add(rs, flows, "no %s rule" % chain)
    for i in range(n):
        add(rules[:i] + rules[i + 1:], flows, "without rule %d" % (i + 1))
    for j in range(len(flows)):
        add(rules, [flows[j]], "only flow %d" % (j + 1))
        if len(flows) > 1:
            add(rules, flows[:j] + flows[j + 1:], "without flow %d" % (j + 1))
    json.dump({"seed": cur["seed"], "programs": cands}, sys.stdout)
    return 0 if cands else 1


def cmd_shrink_pick(a):
    cur = json.load(open(a.cur))
    cands = json.load(open(a.cands))["programs"]
    ra = json.load(open(a.a))
    rb = json.load(open(a.b))
    best = None
    for c in cands:
        x, y = ra[str(c["id"])], rb[str(c["id"])]
        if x["unstable"] or y["unstable"]:
            continue
        diff = differences(c, x, y, a.names)
        size = (len(c["rules"]), len(c["flows"]))
        if diff and (best is None or size < best[0]):
            best = (size, dict(c, diff=diff, slot=x["slot"]))
    if best is None:
        return 1
    nxt = best[1]
    nxt["id"] = cur["id"]
    print("# shrink: %s: %d rules, %d flows" % (nxt.pop("what"),
                                                len(nxt["rules"]),
                                                len(nxt["flows"])),
          file=sys.stderr)
    json.dump(nxt, sys.stdout)
    return 0


def cmd_repro(a):
    cur = json.load(open(a.cur))
    fam = cur["family"]
    slot = cur["slot"]
    print("# Reproducer: seed %d program %d, shrunk to %d rules and %d "
          "flows (rebuild the whole program with XTCM_DIFF_SEED=%d "
          "XTCM_DIFF_FIRST=%d XTCM_DIFF_PROGRAMS=1)" % (
              cur["seed"], cur["id"], len(cur["rules"]), len(cur["flows"]),
              cur["seed"], cur["id"]))
    print("# Router of tests/lib.sh's setup_router_topology; the client also "
          "has %s (the router routes %s via %s). Backend %s, plugins %s:" % (
              client_addr(fam, slot), CLIENT_NET[fam], ROLE_ADDR[fam]["gw"],
              cur["backend"], "ours (libxt/)" if cur["plugin"] == "ours"
              else "Debian's"))
    print("#   ip netns exec $nsrouter %s <<EOF" %
          ipt(cur["backend"], fam, "restore"))
    print("*mangle")
    for line in render_rules(cur, slot, False):
        print(line)
    print("COMMIT")
    print("#   EOF")
    print("# Traffic, one flow after the other:")
    for f in render_flows([None] * slot + [cur]):
        print("#   " + flow_text(f))
    print("# Differences:")
    for d in cur["diff"]:
        print("#   " + d)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("gen")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--first", type=int, default=0)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--backends", default="legacy nft")
    s.add_argument("--addrs", type=int, required=True)
    s.add_argument("--addrs-out", required=True)
    s.add_argument("--txlate", help="connmark.txlate: its cases too")
    s = sub.add_parser("run")
    for opt in ("plan", "out", "client", "router", "server",
                "distro_libdir"):
        s.add_argument("--" + opt.replace("_", "-"), required=True)
    s.add_argument("--backends", default="legacy nft")
    s.add_argument("--batch", type=int, default=250)
    s.add_argument("--tag", default="run")
    s.add_argument("--parallel", type=int, default=8)
    s.add_argument("--translate", action="store_true",
                   help="load the rules' nft translation instead")
    s = sub.add_parser("compare")
    s.add_argument("--plan", required=True)
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--names", nargs=2)
    s.add_argument("--first-mismatch")
    s = sub.add_parser("compare-translation")
    s.add_argument("--plan", required=True)
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--reg2reg", action="store_true",
                   help="nft and kernel have register-to-register bitwise")
    s = sub.add_parser("shrink-cands")
    s.add_argument("cur")
    s = sub.add_parser("shrink-pick")
    for opt in ("cur", "cands", "a", "b"):
        s.add_argument(opt)
    s.add_argument("--names", nargs=2, default=("A", "B"))
    s = sub.add_parser("repro")
    s.add_argument("cur")
    a = p.parse_args()
    fn = {"gen": cmd_gen, "run": cmd_run,
          "compare": cmd_compare,
          "compare-translation": cmd_compare_translation,
          "shrink-cands": cmd_shrink_cands,
          "shrink-pick": cmd_shrink_pick, "repro": cmd_repro}[a.cmd]
    sys.exit(fn(a) or 0)


if __name__ == "__main__":
    main()
