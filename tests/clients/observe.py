#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The observer and the traffic of tests/clients/.

ruleset [traffic]  an nftables table (inet xtcm_obs) that drops MLD and
                   router solicitations before any rule (with "traffic",
                   all neighbour discovery), and records, at every
                   hook after mangle (priority mangle + 10), the packet
                   mark and ct mark of each packet, per addresses and layer 4
                   protocol, and at postrouting the interface it leaves by
                   (the route it took), in dynamic sets with counters
marks              from "nft -j list table inet xtcm_obs" on stdin, one line
                   per element: what was seen and how many packets
ct                 from "conntrack -L" on stdin, one line per entry: the
                   tuple (ports below 32768 only: the traffic's own are
                   fixed, ephemeral ones differ between runs) and the mark
disturbed          from "marks" on stdin: the TCP exchanges that did not
                   send their packets (a stalled guest: a retransmission,
                   a window update), one line each; fails if there is one
counters           from "iptables-save -c" on stdin, one line per rule that
                   counts: the chain, the rule and its packets (no bytes)
serve PORT         TCP and UDP servers on PORT, both families, until killed
send PORT MARK ADDR...
                   one exchange of each kind with each ADDR: TCP (connect,
                   request, reply, "bye", the server closes first, then the
                   client)
                   and UDP (request, reply), from fixed source ports, with
                   the socket mark MARK (SO_MARK; 0: none)

The traffic is deterministic: the same packets every run, whatever the
timing, given "quickack" routes (no delayed ACK merges two packets into
one) and a long "rto_min"; a TCP retransmission is reported on stderr
(and fails "send"), a stalled guest can still cause one.
"""

import json
import re
import select
import socket
import sys

HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
CLIENT_PORT = 20000
IP_PKTINFO = 8  # linux/in.h: Python has it only from 3.12
TCP_INFO_TOTAL_RETRANS = 100  # offset in struct tcp_info (linux/tcp.h)


def ruleset(traffic):
    out = ["table inet xtcm_obs", "delete table inet xtcm_obs",
           "table inet xtcm_obs {"]
    for hook in HOOKS:
        for l3 in ("ip", "ip6"):
            out.append("set %s_%s { typeof %s saddr . %s daddr . "
                       "meta l4proto . meta mark . ct mark; flags dynamic; "
                       "counter; size 65535; }" % (hook, l3, l3, l3))
    for l3 in ("ip", "ip6"):
        out.append("set route_%s { typeof oifname . %s daddr . "
                   "meta l4proto . meta mark; flags dynamic; counter; "
                   "size 65535; }" % (l3, l3))
    # Before every rule: no MLD and no router solicitation (their timers,
    # not the traffic, decide when they come); for the traffic, whose
    # neighbours are permanent, no neighbour discovery either.
    quiet = [130, 131, 132, 133, 143]
    if traffic:
        quiet += [134, 135, 136, 137]
    for hook in ("prerouting", "output"):
        out.append("chain quiet_%s { type filter hook %s priority raw - 10; "
                   "icmpv6 type { %s } drop; }"
                   % (hook, hook, ", ".join(map(str, quiet))))
    for hook in HOOKS:
        out.append("chain %s { type filter hook %s priority mangle + 10;"
                   % (hook, hook))
        # Neighbour discovery and MLD come and go with timers.
        out.append("icmpv6 type { 130, 131, 132, 133, 134, 135, 136, 137, "
                   "143 } return")
        for l3 in ("ip", "ip6"):
            out.append("meta nfproto %s add @%s_%s { %s saddr . %s daddr . "
                       "meta l4proto . meta mark . ct mark }"
                       % ({"ip": "ipv4", "ip6": "ipv6"}[l3], hook, l3, l3,
                          l3))
            if hook == "postrouting":
                out.append("meta nfproto %s add @route_%s { oifname . "
                           "%s daddr . meta l4proto . meta mark }"
                           % ({"ip": "ipv4", "ip6": "ipv6"}[l3], l3, l3))
        out.append("}")
    out.append("}")
    print("\n".join(out))


def hexval(v):
    return "0x%x" % v if isinstance(v, int) else str(v)


def marks():
    lines = []
    for item in json.load(sys.stdin).get("nftables", []):
        s = item.get("set")
        if not s:
            continue
        for e in s.get("elem", []):
            if isinstance(e, dict) and "elem" in e:
                val, pkts = e["elem"]["val"], e["elem"]["counter"]["packets"]
            else:
                val, pkts = e, 0
            # nft's name of ICMPv6, conntrack's
            v = [hexval(x).replace("ipv6-icmp", "icmpv6")
                 for x in val["concat"]]
            if s["name"].startswith("route_"):
                lines.append("route: out %s to %s %s mark %s: %d packets"
                             % (v[0], v[1], v[2], v[3], pkts))
            else:
                lines.append("%s: %s > %s %s mark %s ct mark %s: %d packets"
                             % (s["name"].split("_")[0], v[0], v[1], v[2],
                                v[3], v[4], pkts))
    print("\n".join(sorted(lines)))


# A TCP exchange of "send": SYN, ACK, request, ACK, "bye", ACK of the FIN,
# FIN from the client; SYN-ACK, ACK, reply, ACK, FIN, ACK of the FIN from
# the server.
TCP_PACKETS = (7, 6)


def disturbed():
    """Each packet meets the router's prerouting or its output: per address
    pair, the TCP packets there, over every mark."""
    line_re = re.compile(r"^(prerouting|output): (\S+) > (\S+) tcp .*: "
                         r"(\d+) packets$")
    sums = {}
    for line in sys.stdin:
        m = line_re.match(line)
        if m:
            key = (m.group(2), m.group(3))
            sums[key] = sums.get(key, 0) + int(m.group(4))
    bad = False
    for (src, dst), n in sorted(sums.items()):
        back = sums.get((dst, src), 0)
        if src > dst and (dst, src) in sums:
            continue
        if tuple(sorted((n, back), reverse=True)) != TCP_PACKETS:
            print("TCP %s <> %s: %d and %d packets, not %d and %d"
                  % ((src, dst, n, back) + TCP_PACKETS))
            bad = True
    return not bad


def ct():
    lines = []
    for line in sys.stdin:
        f = line.split()
        if len(f) < 4 or "=" in f[0]:
            continue
        tup = []
        for tok in f:
            k, _, v = tok.partition("=")
            if k in ("src", "dst", "type", "code", "zone"):
                tup.append(tok)
            elif k in ("sport", "dport"):
                tup.append(tok if int(v) < 32768 else k + "=*")
            elif k == "mark":
                tup.append(tok)
        lines.append("%s %s" % (f[0], " ".join(tup)))
    print("\n".join(sorted(lines)))


def counters():
    chain_rule = re.compile(r"^\[(\d+):\d+\] (-A \S+.*)$")
    table = ""
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.startswith("*"):
            table = line[1:]
        m = chain_rule.match(line)
        if m:
            print("%s %s: %s packets" % (table, m.group(2), m.group(1)))


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve(port):
    socks = []
    for fam, any_addr in ((socket.AF_INET, "0.0.0.0"),
                          (socket.AF_INET6, "::")):
        for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(fam, typ)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((any_addr, port))
            if typ == socket.SOCK_STREAM:
                s.listen(16)
            elif fam == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            socks.append(s)
    print("ready", flush=True)
    while True:
        for s in select.select(socks, [], [])[0]:
            if s.type == socket.SOCK_DGRAM:
                udp_reply(s)
                continue
            conn, _ = s.accept()
            conn.settimeout(10)
            conn.sendall(b"reply " + recv_line(conn))
            # The FIN only once the client has the reply: never in the
            # reply's segment.
            recv_line(conn)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(512):
                pass
            if retransmits(conn):
                print("TCP from %s: retransmitted" % conn.getpeername()[0],
                      file=sys.stderr, flush=True)
            conn.close()


def udp_reply(s):
    """The reply from the address the request went to (not the one the
    route back would choose), through the request's own pktinfo: its
    destination as the source, no interface."""
    data, anc, _, peer = s.recvmsg(512, socket.CMSG_SPACE(20))
    out = []
    for level, typ, info in anc:
        if typ == IP_PKTINFO and level == socket.IPPROTO_IP:
            # struct in_pktinfo: ifindex, spec_dst (the source to use),
            # addr (the header's destination)
            out.append((level, typ, bytes(4) + info[8:12] + bytes(4)))
        elif typ == socket.IPV6_PKTINFO and level == socket.IPPROTO_IPV6:
            # struct in6_pktinfo: addr, ifindex
            out.append((level, typ, info[:16] + bytes(4)))
    s.sendmsg([b"reply " + data], out, 0, peer)


def recv_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(512)
        if not chunk:
            break
        data += chunk
    return data


def retransmits(sock):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    off = TCP_INFO_TOTAL_RETRANS
    return int.from_bytes(info[off:off + 4], sys.byteorder)


def socket_marked(fam, typ, mark):
    s = socket.socket(fam, typ)
    if mark:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    return s


def send(port, mark, addrs):
    ok = True
    for n, addr in enumerate(addrs):
        fam = family(addr)
        sport = CLIENT_PORT + 2 * n
        t = socket_marked(fam, socket.SOCK_STREAM, mark)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.settimeout(10)
        t.bind(("", sport))
        t.connect((addr, port))
        t.sendall(b"tcp %s\n" % addr.encode())
        reply = recv_line(t)
        t.sendall(b"bye\n")
        while t.recv(512):
            pass
        if retransmits(t):
            print("TCP to %s: retransmitted" % addr, file=sys.stderr)
            ok = False
        t.close()
        u = socket_marked(fam, socket.SOCK_DGRAM, mark)
        u.settimeout(5)
        u.bind(("", sport + 1))
        u.sendto(b"udp", (addr, port))
        try:
            _, peer = u.recvfrom(512)
            if peer[0] != addr:
                print("UDP to %s: reply from %s" % (addr, peer[0]),
                      file=sys.stderr)
                ok = False
        except socket.timeout:
            print("UDP to %s: no reply" % addr, file=sys.stderr)
            ok = False
        u.close()
        if not reply.startswith(b"reply tcp"):
            print("TCP to %s: reply %r" % (addr, reply), file=sys.stderr)
            ok = False
    return ok


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "ruleset" and len(sys.argv) <= 3:
        ruleset(sys.argv[2:] == ["traffic"])
    elif cmd == "marks":
        marks()
    elif cmd == "ct":
        ct()
    elif cmd == "counters":
        counters()
    elif cmd == "disturbed":
        sys.exit(0 if disturbed() else 1)
    elif cmd == "serve" and len(sys.argv) == 3:
        serve(int(sys.argv[2]))
    elif cmd == "send" and len(sys.argv) > 4:
        sys.exit(0 if send(int(sys.argv[2]), int(sys.argv[3], 0),
                           sys.argv[4:]) else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
