# kvstore: a small key-value store over HTTP (stdlib only). GET/PUT/DELETE /keys/<key>, GET /keys, GET /health.
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = os.environ.get("KV_FILE", "kv.json")
MAX = int(os.environ.get("KV_MAX_VALUE_BYTES", "1048576"))
LOCK = threading.Lock()
DATA = json.load(open(PATH)) if os.path.exists(PATH) else {}


def persist():
    if os.environ.get("KV_PERSIST") == "true":
        with open(PATH + ".tmp", "w") as f:
            json.dump(DATA, f)
        os.replace(PATH + ".tmp", PATH)


class Handler(BaseHTTPRequestHandler):
    def send(self, code, body, ctype="text/plain"):
        raw = body if isinstance(body, bytes) else body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def key(self):
        return self.path[len("/keys/"):] if self.path.startswith("/keys/") and len(self.path) > 6 else None

    def do_GET(self):
        if self.path == "/health":
            return self.send(200, "ok\n")
        if self.path == "/keys":
            with LOCK:
                return self.send(200, json.dumps(sorted(DATA)), "application/json")
        k = self.key()
        with LOCK:
            v = DATA.get(k) if k else None
        return self.send(200, v) if v is not None else self.send(404, "no such key\n")

    def do_PUT(self):
        k = self.key()
        n = int(self.headers.get("Content-Length") or 0)
        if not k or n > MAX:
            return self.send(400, "PUT /keys/<key> with a body of at most %d bytes\n" % MAX)
        v = self.rfile.read(n).decode("utf-8", "replace")
        with LOCK:
            DATA[k] = v
            persist()
        return self.send(204, b"")

    def do_DELETE(self):
        k = self.key()
        with LOCK:
            found = DATA.pop(k, None) is not None
            persist()
        return self.send(204 if found else 404, b"")

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ.get("KV_BIND", "0.0.0.0"), int(sys.argv[1])), Handler).serve_forever()
