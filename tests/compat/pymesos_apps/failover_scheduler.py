"""A pymesos command-task scheduler that lives through the loss of the leading master.

    python failover_scheduler.py HOST:PORT TOKEN N

Prints JSON lines on stdout (the test reads them as they come):
- every status update: {"phase", "task_id", "state", "reason", "uuid"};
- {"event": "registered", "framework_id"} / {"event": "reregistered", "framework_id", "master"};
- {"event": "running", "ids"} once the first N `sleep 300` tasks run — the test then kills the leader;
- after re-registering: explicit RECONCILE of every id launched (phase "reconcile"), then N more tasks
  through the new leader (phase "launch2"), then {"event": "relaunched", "ids"};
- then it waits for a line "finish" on stdin, kills every task, and prints {"done": true}.

Finding the leader: HOST:PORT is one master (a follower is fine). pymesos follows the 307 to the
leader and from then on talks only to the leader's address: when that master dies it retries the
dead address forever (only its ZooKeeper detector would tell it otherwise). So, like a detector,
``disconnected`` points the driver back at the master it was given whenever the lost connection was
to another master; that master answers 503 while there is no leader and 307 to the new one.
"""

import getpass
import json
import logging
import sys
import threading
import time

from addict import Dict
from pymesos import MesosSchedulerDriver, Scheduler

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED"}


def out(obj):
    print(json.dumps(obj), flush=True)


class FailoverScheduler(Scheduler):
    def __init__(self, seed, n):
        self.seed = seed
        self.n = n
        stamp = int(time.time() * 1000) % 10**8
        self.first = ["fo-%d-a%d" % (stamp, i) for i in range(n)]
        self.second = ["fo-%d-b%d" % (stamp, i) for i in range(n)]
        self.pending = list(self.first)
        self.states = {}
        self.phase = "launch"
        self.reregistrations = 0
        self.changed = threading.Condition()

    # -- leader finding ----------------------------------------------------------------------
    def disconnected(self, driver):
        # Also called when the seed answers 307: then driver.master is still the seed and pymesos
        # is already switching to the leader. Only a lost connection to another master needs this.
        if driver.master and driver.master != self.seed:
            logging.warning("lost master %s; asking %s for the leader again", driver.master, self.seed)
            driver.change_master(self.seed)

    def registered(self, driver, framework_id, master_info):
        out({"event": "registered", "framework_id": framework_id["value"]})

    def reregistered(self, driver, master_info):
        with self.changed:
            self.reregistrations += 1
            self.changed.notify_all()
        out({"event": "reregistered", "framework_id": driver.framework_id,
             "master": "%s:%s" % (master_info["hostname"], master_info["port"])})

    # -- tasks ----------------------------------------------------------------------------------
    def resourceOffers(self, driver, offers):
        for offer in offers:
            offer = Dict(offer)
            cpus = sum(r.scalar.value for r in offer.resources if r.name == "cpus")
            tasks = []
            with self.changed:
                while self.pending and cpus >= 0.1:
                    tid = self.pending.pop(0)
                    cpus -= 0.1
                    t = Dict()
                    t.task_id.value = tid
                    t.agent_id.value = offer.agent_id.value
                    t.name = tid
                    t.command.value = "sleep 300"
                    t.resources = [dict(name="cpus", type="SCALAR", scalar={"value": 0.1}),
                                   dict(name="mem", type="SCALAR", scalar={"value": 16})]
                    tasks.append(t)
            if tasks:
                driver.launchTasks(offer.id, tasks, {"refuse_seconds": 1})
            else:
                driver.declineOffer(offer.id, {"refuse_seconds": 1})

    def statusUpdate(self, driver, update):
        update = Dict(update)
        out({"phase": self.phase, "task_id": update.task_id.value, "state": update.state,
             "reason": update.reason or "", "uuid": bool(update.uuid), "agent_id": update.agent_id.value})
        with self.changed:
            self.states[update.task_id.value] = update.state
            self.changed.notify_all()

    def wait(self, pred, timeout):
        with self.changed:
            return self.changed.wait_for(pred, timeout)


def main(master, token, n):
    framework = Dict(user=getpass.getuser(), name="FailoverFramework", failover_timeout=120)
    sched = FailoverScheduler(master, n)
    driver = MesosSchedulerDriver(sched, framework, master, principal="dcosd", secret=token)
    driver.start()
    ok = sched.wait(lambda: all(sched.states.get(t) == "TASK_RUNNING" for t in sched.first), 60)
    if ok:
        out({"event": "running", "ids": sched.first})
        # The test kills the leading master now; pymesos loses its stream and comes back.
        ok = sched.wait(lambda: sched.reregistrations > 0, 90)
    if ok:
        sched.phase = "reconcile"
        driver.reconcileTasks([{"task_id": {"value": t}} for t in sched.first])
        time.sleep(1.0)  # answers arrive as UPDATEs; the test checks them per task
        sched.phase = "launch2"
        with sched.changed:
            sched.pending.extend(sched.second)
        driver.reviveOffers()
        ok = sched.wait(lambda: all(sched.states.get(t) == "TASK_RUNNING" for t in sched.second), 60)
    if ok:
        out({"event": "relaunched", "ids": sched.second})
        sys.stdin.readline()  # "finish": the test has looked at the agents
        sched.phase = "cleanup"
        for t in sched.first + sched.second:
            driver.killTask(Dict(value=t))
        ok = sched.wait(lambda: all(sched.states.get(t) in TERMINAL for t in sched.first + sched.second), 60)
    driver.stop()
    driver.join()
    out({"done": bool(ok)})
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
