"""pymesos' examples/scheduler.py, corrected for Python 3 and made to finish.

Corrections: ``encode_data`` takes bytes; ``logging`` imported at module level;
the framework authenticates with the cluster's operator token (principal/secret);
it launches a fixed number of tasks, at most ``per_agent`` on each agent, prints
every status update as a JSON line, and stops (tearing the framework down) once
every task has ended.

    python example_scheduler.py HOST:PORT TOKEN EXECUTOR_PY TASKS PER_AGENT
"""

import getpass
import json
import logging
import socket
import sys
import threading
import uuid
from os.path import abspath

from addict import Dict
from pymesos import MesosSchedulerDriver, Scheduler, encode_data

TASK_CPU = 0.1
TASK_MEM = 32
EXECUTOR_CPUS = 0.1
EXECUTOR_MEM = 64
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED"}


class MinimalScheduler(Scheduler):
    def __init__(self, executor, tasks, per_agent):
        self.executor = executor
        self.wanted = tasks
        self.per_agent = per_agent
        self.launched = {}
        self.on_agent = {}
        self.ended = set()
        self.done = threading.Event()
        self.lock = threading.Lock()

    def resourceOffers(self, driver, offers):
        filters = {'refuse_seconds': 5}
        for offer in offers:
            offer = Dict(offer)
            cpus = self.getResource(offer.resources, 'cpus')
            mem = self.getResource(offer.resources, 'mem')
            agent = offer.agent_id.value
            with self.lock:
                full = len(self.launched) >= self.wanted or self.on_agent.get(agent, 0) >= self.per_agent
            if full or cpus < TASK_CPU + EXECUTOR_CPUS or mem < TASK_MEM + EXECUTOR_MEM:
                driver.declineOffer(offer.id, filters)
                continue

            task = Dict()
            task_id = str(uuid.uuid4())
            task.task_id.value = task_id
            task.agent_id.value = agent
            task.name = 'task {}'.format(task_id)
            task.executor = self.executor
            task.data = encode_data('Hello from task {}!'.format(task_id).encode())
            task.resources = [
                dict(name='cpus', type='SCALAR', scalar={'value': TASK_CPU}),
                dict(name='mem', type='SCALAR', scalar={'value': TASK_MEM}),
            ]
            with self.lock:
                self.launched[task_id] = agent
                self.on_agent[agent] = self.on_agent.get(agent, 0) + 1
            driver.launchTasks(offer.id, [task], filters)

    def getResource(self, res, name):
        for r in res:
            if r.name == name:
                return r.scalar.value
        return 0.0

    def statusUpdate(self, driver, update):
        update = Dict(update)
        print(json.dumps({"task_id": update.task_id.value, "state": update.state,
                          "agent_id": update.agent_id.value, "message": update.message or ""}), flush=True)
        with self.lock:
            if update.state in TERMINAL:
                self.ended.add(update.task_id.value)
            if len(self.ended) >= self.wanted:
                self.done.set()


def main(master, token, executor_py, tasks, per_agent):
    executor = Dict()
    executor.executor_id.value = 'MinimalExecutor'
    executor.name = executor.executor_id.value
    executor.command.value = '%s %s' % (sys.executable, abspath(executor_py))
    executor.resources = [
        dict(name='mem', type='SCALAR', scalar={'value': EXECUTOR_MEM}),
        dict(name='cpus', type='SCALAR', scalar={'value': EXECUTOR_CPUS}),
    ]

    framework = Dict()
    framework.user = getpass.getuser()
    framework.name = "MinimalFramework"
    framework.hostname = socket.gethostname()

    sched = MinimalScheduler(executor, tasks, per_agent)
    driver = MesosSchedulerDriver(sched, framework, master, principal="dcosd", secret=token)
    driver.start()
    ok = sched.done.wait(120)
    framework_id = driver.framework_id  # TEARDOWN (in stop) forgets it
    driver.stop()
    driver.join()
    print(json.dumps({"done": ok, "framework_id": framework_id}), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
