"""A pymesos scheduler of command tasks (no executor): launch, kill, reconcile.

Prints every status update as a JSON line, with "phase" saying what the scheduler
was doing. Phases: launch N `sleep 300` tasks; once all run, kill the first
(expects TASK_KILLED); then reconcile explicitly (all ids + one unknown id) and
implicitly; then kill the rest and stop.

    python command_scheduler.py HOST:PORT TOKEN N
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


class CommandScheduler(Scheduler):
    def __init__(self, n):
        self.n = n
        self.ids = ["cmd-%d-%d" % (int(time.time() * 1000) % 10**8, i) for i in range(n)]
        self.pending = list(self.ids)
        self.states = {}
        self.phase = "launch"
        self.changed = threading.Condition()

    def resourceOffers(self, driver, offers):
        for offer in offers:
            offer = Dict(offer)
            cpus = sum(r.scalar.value for r in offer.resources if r.name == "cpus")
            tasks = []
            while self.pending and cpus >= 0.1:
                tid = self.pending.pop(0)
                cpus -= 0.1
                t = Dict()
                t.task_id.value = tid
                t.agent_id.value = offer.agent_id.value
                t.name = tid
                t.command.value = "sleep 300"
                t.resources = [dict(name="cpus", type="SCALAR", scalar={"value": 0.1}),
                               dict(name="mem", type="SCALAR", scalar={"value": 32})]
                tasks.append(t)
            if tasks:
                driver.launchTasks(offer.id, tasks, {"refuse_seconds": 5})
            else:
                driver.declineOffer(offer.id, {"refuse_seconds": 60})

    def statusUpdate(self, driver, update):
        update = Dict(update)
        print(json.dumps({"phase": self.phase, "task_id": update.task_id.value, "state": update.state,
                          "reason": update.reason or "", "uuid": bool(update.uuid)}), flush=True)
        with self.changed:
            self.states[update.task_id.value] = update.state
            self.changed.notify_all()

    def wait(self, pred, timeout=60):
        with self.changed:
            return self.changed.wait_for(pred, timeout)


def main(master, token, n):
    framework = Dict(user=getpass.getuser(), name="CommandFramework", failover_timeout=30)
    sched = CommandScheduler(n)
    driver = MesosSchedulerDriver(sched, framework, master, principal="dcosd", secret=token)
    driver.start()
    ok = sched.wait(lambda: all(sched.states.get(t) == "TASK_RUNNING" for t in sched.ids))
    if ok:
        sched.phase = "kill"
        driver.killTask(Dict(value=sched.ids[0]))
        ok = sched.wait(lambda: sched.states.get(sched.ids[0]) == "TASK_KILLED")
    if ok:
        sched.phase = "reconcile"
        driver.reconcileTasks([{"task_id": {"value": t}} for t in sched.ids] +
                              [{"task_id": {"value": "never-launched"}}])
        time.sleep(1.0)
        sched.phase = "implicit"
        driver.reconcileTasks([])
        time.sleep(1.0)
        sched.phase = "cleanup"
        for t in sched.ids[1:]:
            driver.killTask(Dict(value=t))
        ok = sched.wait(lambda: all(sched.states.get(t) in TERMINAL for t in sched.ids))
    driver.stop()
    driver.join()
    print(json.dumps({"done": bool(ok)}), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
