#!/usr/bin/env python3
"""An authoritative DNS server (dnslib) for fixture zones in Mailgate's tests.

Serves UDP and TCP on the SAME port of 127.0.0.1 (port 0 = any port free for both) and
prints `READY <port>` on stdout once both listen. Point a resolver (hickory-resolver's
NameServerConfig, UDP and/or TCP) at 127.0.0.1:<port>.

Zone file (--zone FILE): standard master-file text as dnslib's RR.fromZone reads it:
$ORIGIN, $TTL, `@`, relative names, a blank owner (= the previous one), `( ... )` over
several lines, `;` comments, class IN. Several zones may share one file (use $ORIGIN
again, or full names ending in `.`). A record without a TTL and no $TTL before it gets
TTL 0. A TXT string is at most 255 bytes: write a longer value (a DKIM key) as several
quoted strings, which a client joins:

  $ORIGIN example.test.
  $TTL 300
  @                 IN SOA   ns1 hostmaster 1 3600 600 86400 60
  @                 IN MX    10 mx1.example.test.
  mx1               IN A     127.0.0.1
  _submission._tcp  IN SRV   0 1 587 mx1.example.test.
  _dmarc            IN TXT   "v=DMARC1; p=reject"
  google._domainkey IN TXT   ( "v=DKIM1; k=rsa; p=MIIBIjANBgkq..."
                               "...the rest of the key" )

Answers (all with the AA flag; RA is clear, there is no recursion):
  - the records of the asked name and type (ANY: all of its records);
  - a name with a CNAME (asked for another type): the CNAME, then the chain followed
    within the zones (the final name's records, NXDOMAIN or NODATA);
  - NOERROR with no answer (NODATA) for a name that exists with other types only, or
    that only has names below it (`_tcp.example.test` when `_submission._tcp...` exists);
  - NXDOMAIN for every other name, also outside the zones;
  - `*.name` wildcard records for names below `name` that do not exist (RFC 4592);
  - negative answers carry the zone's SOA (if the file has one) in the authority section;
  - SERVFAIL for every name at or below a --servfail NAME (a domain whose DNS is broken,
    which a client must tell apart from one that has no records).
Over UDP an answer larger than the client's EDNS size (512 without EDNS) is sent
truncated (TC set, question only), so a client retries over TCP. TCP connections may carry
several queries.

Query log (--log-queries FILE): one line `<qtype> <qname>` per query, appended and flushed
before the answer is sent, qname in lower case without the final dot, e.g. `MX example.test`
or `TXT google._domainkey.example.test`.
"""
import argparse
import os
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import traceback

import dnslib.dns
from dnslib import CLASS, DNSError, DNSHeader, DNSLabel, DNSRecord, EDNS0, OPCODE, QTYPE, RCODE, RR, SRV

EDNS_SIZE = 1232  # what this server advertises and accepts at most over UDP
CNAME_CHAIN_MAX = 16


# dnslib 0.9.26 reads an SRV target as given, ignoring $ORIGIN: `_imaps._tcp SRV 0 1 993 mx1`
# would point at `mx1.` instead of `mx1.<origin>`. Read it as every other name is read.
SRV.fromZone = classmethod(
    lambda cls, rd, origin=None: cls(int(rd[0]), int(rd[1]), int(rd[2]), dnslib.dns.label(rd[3], origin)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0,
                   help="UDP and TCP port on 127.0.0.1; 0 picks one that is free for both")
    p.add_argument("--zone", required=True, metavar="FILE", help="zone file (master-file format)")
    p.add_argument("--log-queries", metavar="FILE", help="append one line `<qtype> <qname>` per query")
    p.add_argument("--servfail", action="append", default=[], metavar="NAME",
                   help="answer SERVFAIL for NAME and every name below it (repeatable)")
    p.add_argument("--watch-stdin", action="store_true",
                   help="exit when standard input reaches EOF (the parent test process died)")
    return p.parse_args(argv)


def key(label) -> tuple:
    """A name as a case-insensitive key: its labels in lower case, without the root."""
    if not isinstance(label, DNSLabel):
        label = DNSLabel(label)
    return tuple(part.lower() for part in label.label)


def text(name_key: tuple) -> str:
    return ".".join(part.decode("utf-8", "replace") for part in name_key)


def is_below(name_key: tuple, apex_key: tuple) -> bool:
    """name_key is apex_key or below it."""
    return len(name_key) >= len(apex_key) and name_key[len(name_key) - len(apex_key):] == apex_key


class Zones:
    """All records of the zone file, by owner name."""

    def __init__(self, rrs):
        self.records = {}  # name key -> [RR] in file order
        for rr in rrs:
            if rr.rclass != CLASS.IN:
                continue
            self.records.setdefault(key(rr.rname), []).append(rr)
        self.soas = {}  # apex name key -> its SOA record
        for k, rrs in self.records.items():
            for rr in rrs:
                if rr.rtype == QTYPE.SOA:
                    self.soas.setdefault(k, rr)
        # Names that exist without records of their own (empty non-terminals): every
        # ancestor of an owner name, down from its zone's apex (or, in a file without any
        # SOA, ancestors with at least two labels).
        self.existing = set(self.records)
        for k in self.records:
            apex = self.apex(k)
            floor = len(apex) if apex is not None else 2
            for i in range(1, len(k) - floor + 1):
                self.existing.add(k[i:])

    def apex(self, name_key):
        """The longest SOA owner that name_key is at or below, or None."""
        best = None
        for apex in self.soas:
            if is_below(name_key, apex) and (best is None or len(apex) > len(best)):
                best = apex
        return best

    def lookup(self, name_key):
        """(exists, records of the name); wildcard records are taken for a name that does not exist."""
        if name_key in self.existing:
            return True, self.records.get(name_key, [])
        # Closest encloser: the longest existing ancestor; then its `*` child.
        for i in range(1, len(name_key)):
            encloser = name_key[i:]
            if encloser in self.existing:
                wild = self.records.get((b"*",) + encloser)
                if wild:
                    return True, wild
                break
        return False, []


def copy_rr(rr, owner) -> RR:
    return RR(rname=owner, rtype=rr.rtype, rclass=rr.rclass, ttl=rr.ttl, rdata=rr.rdata)


class Resolver:
    def __init__(self, zones: Zones, log_path, servfail=()):
        self.zones = zones
        self.servfail = [key(name) for name in servfail]
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.log_lock = threading.Lock()

    def log_query(self, request):
        if self.log is None:
            return
        for q in request.questions:
            line = "%s %s\n" % (QTYPE[q.qtype], text(key(q.qname)))
            with self.log_lock:
                self.log.write(line)
                self.log.flush()

    def resolve(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply(ra=0, aa=1)
        if request.header.opcode != OPCODE.QUERY:
            reply.header.rcode = RCODE.NOTIMP
            return reply
        if len(request.questions) != 1:
            reply.header.rcode = RCODE.FORMERR
            return reply
        q = request.q
        if q.qclass not in (CLASS.IN, 255):  # IN or ANY
            reply.header.rcode = RCODE.REFUSED
            return reply
        owner = q.qname  # the first answers carry the name as asked
        name_key = key(owner)
        if any(is_below(name_key, broken) for broken in self.servfail):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        seen = set()
        while True:
            seen.add(name_key)
            exists, rrs = self.zones.lookup(name_key)
            if not exists:
                reply.header.rcode = RCODE.NXDOMAIN
                break
            cname = [rr for rr in rrs if rr.rtype == QTYPE.CNAME]
            if cname and q.qtype not in (QTYPE.CNAME, QTYPE.ANY):
                reply.add_answer(copy_rr(cname[0], owner))
                target = cname[0].rdata.label
                target_key = key(target)
                # Follow only within the zones (a target elsewhere is the client's to look up).
                if (target_key in seen or len(seen) >= CNAME_CHAIN_MAX
                        or (self.zones.soas and self.zones.apex(target_key) is None)
                        or (not self.zones.soas and not self.zones.lookup(target_key)[0])):
                    return reply
                owner, name_key = target, target_key
                continue
            answers = [rr for rr in rrs if q.qtype == QTYPE.ANY or rr.rtype == q.qtype]
            for rr in answers:
                reply.add_answer(copy_rr(rr, owner))
            break
        if not reply.rr:
            apex = self.zones.apex(name_key)
            if apex is not None:
                soa = self.zones.soas[apex]
                # Negative-caching TTL: the smaller of the SOA's TTL and its MINIMUM (RFC 2308).
                reply.add_auth(RR(rname=soa.rname, rtype=QTYPE.SOA, rclass=CLASS.IN,
                                  ttl=min(soa.ttl, soa.rdata.times[-1]), rdata=soa.rdata))
        return reply


def answer(resolver: Resolver, data: bytes, udp: bool):
    """The wire-format answer to one query, or None to stay silent."""
    try:
        request = DNSRecord.parse(data)
    except (DNSError, struct.error, IndexError, ValueError):
        if len(data) >= 12:  # echo the ID with FORMERR
            header = bytearray(data[:12])
            header[2] = (header[2] | 0x80) & 0xF9
            header[3] = RCODE.FORMERR
            header[4:12] = bytes(8)
            return bytes(header)
        return None
    if request.header.qr:
        return None  # a response, not a query
    resolver.log_query(request)
    opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
    try:
        reply = resolver.resolve(request)
    except Exception:  # a bug here: say so in the log and answer SERVFAIL
        traceback.print_exc()
        reply = request.reply(ra=0, aa=1)
        reply.header.rcode = RCODE.SERVFAIL
    limit = 512
    if opts:
        limit = max(512, min(opts[0].rclass, EDNS_SIZE))
        reply.add_ar(EDNS0(udp_len=EDNS_SIZE))
    packed = reply.pack()
    if udp and len(packed) > limit:
        truncated = DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, tc=1), q=request.q)
        if opts:
            truncated.add_ar(EDNS0(udp_len=EDNS_SIZE))
        packed = truncated.pack()
    return packed


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        out = answer(self.server.resolver, data, udp=True)
        if out is not None:
            sock.sendto(out, self.client_address)


class TCPHandler(socketserver.BaseRequestHandler):
    """Length-prefixed messages (RFC 1035 4.2.2, RFC 7766), as many as the client sends."""

    def read_exact(self, n: int):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def handle(self):
        self.request.settimeout(30)
        try:
            while True:
                prefix = self.read_exact(2)
                if prefix is None:
                    return
                data = self.read_exact(struct.unpack("!H", prefix)[0])
                if data is None:
                    return
                out = answer(self.server.resolver, data, udp=False)
                if out is not None:
                    self.request.sendall(struct.pack("!H", len(out)) + out)
        except (OSError, socket.timeout):
            return


class UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True
    # SO_REUSEADDR on UDP would let two servers share a port on Linux: not wanted.
    allow_reuse_address = False


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True  # only TIME_WAIT leftovers; an active listener still conflicts
    request_queue_size = 64


def bind(port: int):
    """UDP and TCP servers on the same port of 127.0.0.1."""
    if port:
        udp = UDPServer(("127.0.0.1", port), UDPHandler)
        try:
            return udp, TCPServer(("127.0.0.1", port), TCPHandler)
        except OSError:
            udp.server_close()
            raise
    last = None
    for _ in range(100):
        udp = UDPServer(("127.0.0.1", 0), UDPHandler)
        try:
            return udp, TCPServer(("127.0.0.1", udp.server_address[1]), TCPHandler)
        except OSError as e:  # that port is taken for TCP: try another
            last = e
            udp.server_close()
    raise OSError("no port free for both UDP and TCP: %s" % last)


def load_zones(path: str) -> Zones:
    try:
        with open(path, encoding="utf-8") as f:
            zone_text = f.read()
        rrs = list(RR.fromZone(zone_text))
    except (OSError, DNSError, ValueError, KeyError, AttributeError, IndexError) as e:
        hint = ""
        if "too long" in str(e):
            hint = " (a TXT string is at most 255 bytes: split it into several quoted strings)"
        sys.exit("dns_server.py: cannot read zone file %s: %s%s" % (path, e, hint))
    if not rrs:
        sys.exit("dns_server.py: no records in zone file %s" % path)
    return Zones(rrs)


def wait_for_stop(watch_stdin: bool) -> None:
    """Returns on SIGTERM/SIGINT, or (watch_stdin) when standard input reaches EOF."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    fds = [wake_r] + ([sys.stdin.fileno()] if watch_stdin else [])
    while not stop:
        try:
            readable, _, _ = select.select(fds, [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 512)
        if watch_stdin and sys.stdin.fileno() in readable:
            if not os.read(sys.stdin.fileno(), 4096):
                return


def main(args) -> None:
    zones = load_zones(args.zone)
    resolver = Resolver(zones, args.log_queries, args.servfail)
    try:
        udp, tcp = bind(args.port)
    except OSError as e:
        sys.exit("dns_server.py: cannot listen on 127.0.0.1:%d: %s" % (args.port, e))
    threads = []
    for server in (udp, tcp):
        server.resolver = resolver
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        t.start()
        threads.append(t)
    print("READY %d" % udp.server_address[1], flush=True)
    wait_for_stop(args.watch_stdin)
    for server in (udp, tcp):
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main(parse_args())
