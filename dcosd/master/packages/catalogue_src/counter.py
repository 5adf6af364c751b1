# redis-counter: a web page counting its visits in redis. Redis is found through DNS: the SRV record
# of the redis app (_<app>._tcp.marathon.<domain>), asked of the cluster's DNS server (stdlib only).
import os, random, socket, struct, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SRV = os.environ["REDIS_SRV"]
KEY = os.environ.get("COUNTER_KEY", "hits")


def dns_server():
    given = os.environ.get("DNS_SERVER", "")
    if given:
        host, _, port = given.rpartition(":") if given.count(":") == 1 else (given, "", "53")
        return host or given, int(port or 53)
    for line in open("/etc/resolv.conf"):
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1], 53
    return "127.0.0.1", 53


def read_name(msg, off):
    labels, jumped, end = [], False, off
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off, jumped = ((n & 0x3F) << 8) | msg[off + 1], True
            continue
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode())
        off += n
    return ".".join(labels).lower(), (end if jumped else off)


def lookup_srv(name):
    """[(target host, port)] of an SRV name, targets resolved from the additional section or by A query."""
    def query(qname, qtype):
        qid = random.randrange(65536)
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in qname.strip(".").split(".")) + b"\0"
        q += struct.pack(">HH", qtype, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(q, dns_server())
            msg = s.recv(65535)
        qd, an, ns, ar = struct.unpack(">HHHH", msg[4:12])
        off = 12
        for _ in range(qd):
            _, off = read_name(msg, off)
            off += 4
        records = []
        for _ in range(an + ns + ar):
            rname, off = read_name(msg, off)
            rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            if rtype == 33:
                _, _, port = struct.unpack(">HHH", msg[off:off + 6])
                records.append(("SRV", rname, (read_name(msg, off + 6)[0], port)))
            elif rtype == 1:
                records.append(("A", rname, socket.inet_ntoa(msg[off:off + 4])))
            off += rdlen
        return records

    recs = query(name, 33)
    addrs = {n: v for t, n, v in recs if t == "A"}
    out = []
    for t, _, (target, port) in [r for r in recs if r[0] == "SRV"]:
        ip = addrs.get(target) or next((v for t2, _, v in query(target, 1) if t2 == "A"), None)
        if ip:
            out.append((ip, port))
    return sorted(out)  # always the same instance first: redis nodes are independent


def redis(*args):
    """One command on the first redis instance that answers (RESP)."""
    last = None
    for host, port in lookup_srv(SRV):
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                cmd = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)
                s.sendall(cmd.encode())
                reply = s.recv(4096).decode()
                if reply[:1] == "-":
                    raise OSError(reply.strip())
                return reply[1:].split("\r\n")[0]
        except OSError as exc:
            last = exc
    raise OSError("no redis instance answered at %s: %s" % (SRV, last or "no SRV records"))


class Handler(BaseHTTPRequestHandler):
    def send(self, code, text):
        raw = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        try:
            if self.path == "/health":
                return self.send(200, redis("PING") + "\n")
            return self.send(200, "visits: %s\n" % redis("INCR", KEY))
        except OSError as exc:
            return self.send(503, "redis unavailable: %s\n" % exc)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
