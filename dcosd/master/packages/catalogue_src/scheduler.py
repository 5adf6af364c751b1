# offer-runner: a Mesos framework in one file (stdlib only). It subscribes to the master's scheduler API
# (/api/v1/scheduler, RecordIO), launches TASK_COUNT copies of TASK_CMD from the offers it is sent,
# relaunches the ones that end, and tears itself down (its tasks killed) when stopped.
import http.client, json, os, signal, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MASTER = urlsplit(os.environ["FW_MASTER"])
TOKEN = os.environ.get("FW_TOKEN", "")
NAME = os.environ.get("FW_NAME", "offer-runner")
COUNT = int(os.environ.get("TASK_COUNT", "2"))
CMD = os.environ.get("TASK_CMD", "sleep 3600")
CPUS, MEM = float(os.environ.get("TASK_CPUS", "0.1")), float(os.environ.get("TASK_MEM", "32"))
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED", "TASK_GONE"}
state = {"framework_id": None, "stream_id": None, "tasks": {}, "lock": threading.Lock()}


def headers():
    h = {"Content-Type": "application/json", "Accept": "application/json"}
    if TOKEN:
        h["Authorization"] = "Bearer " + TOKEN
    if state["stream_id"]:
        h["Mesos-Stream-Id"] = state["stream_id"]
    return h


def call(body):
    body["framework_id"] = {"value": state["framework_id"]}
    conn = http.client.HTTPConnection(MASTER.hostname, MASTER.port or 5050, timeout=10)
    try:
        conn.request("POST", "/api/v1/scheduler", json.dumps(body), headers())
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def scalar(offer, name):
    return sum(r.get("scalar", {}).get("value", 0) for r in offer.get("resources", []) if r["name"] == name)


def on_offers(offers):
    for offer in offers:
        cpus, mem, infos = scalar(offer, "cpus"), scalar(offer, "mem"), []
        with state["lock"]:
            while len(state["tasks"]) < COUNT and cpus >= CPUS and mem >= MEM:
                tid = "%s-%s" % (NAME, uuid.uuid4().hex[:8])
                state["tasks"][tid] = "TASK_STAGING"
                cpus, mem = cpus - CPUS, mem - MEM
                infos.append({"name": "worker", "task_id": {"value": tid}, "agent_id": offer["agent_id"],
                              "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": CPUS}},
                                            {"name": "mem", "type": "SCALAR", "scalar": {"value": MEM}}],
                              "command": {"value": CMD, "shell": True}})
        if infos:
            call({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 1},
                                               "operations": [{"type": "LAUNCH", "launch": {"task_infos": infos}}]}})
        else:
            call({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": 5}}})


def on_update(status):
    tid = status["task_id"]["value"]
    with state["lock"]:
        if status["state"] in TERMINAL:
            state["tasks"].pop(tid, None)
        elif tid in state["tasks"]:
            state["tasks"][tid] = status["state"]
    if status.get("uuid"):
        call({"type": "ACKNOWLEDGE", "acknowledge": {"agent_id": status["agent_id"], "task_id": status["task_id"],
                                                     "uuid": status["uuid"]}})


def subscribe():
    conn = http.client.HTTPConnection(MASTER.hostname, MASTER.port or 5050, timeout=60)
    info = {"name": NAME, "user": os.environ.get("FW_USER") or "nobody", "roles": ["*"], "failover_timeout": 0,
            "capabilities": [{"type": "MULTI_ROLE"}]}
    conn.request("POST", "/api/v1/scheduler", json.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}),
                 {**headers(), "Accept": "application/recordio"})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit("SUBSCRIBE refused: HTTP %d %s" % (resp.status, resp.read()[:300]))
    state["stream_id"] = resp.getheader("Mesos-Stream-Id")
    while True:
        size = b""
        while not size.endswith(b"\n"):
            c = resp.read(1)
            if not c:
                sys.exit("the master closed the subscription")
            size += c
        event = json.loads(resp.read(int(size)))
        kind = event.get("type")
        if kind == "SUBSCRIBED":
            state["framework_id"] = event["subscribed"]["framework_id"]["value"]
            print("subscribed as", state["framework_id"], flush=True)
        elif kind == "OFFERS":
            on_offers(event["offers"]["offers"])
        elif kind == "UPDATE":
            on_update(event["update"]["status"])
        elif kind == "ERROR":
            sys.exit("master error: %s" % event.get("error", {}).get("message"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with state["lock"]:
            body = json.dumps({"frameworkId": state["framework_id"], "tasks": dict(state["tasks"]), "target": COUNT})
        self.send_response(200 if state["framework_id"] else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def stop(*_):
    if state["framework_id"]:
        call({"type": "TEARDOWN"})  # our tasks go with us: an uninstall leaves nothing running
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
threading.Thread(target=ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever, daemon=True).start()
subscribe()
