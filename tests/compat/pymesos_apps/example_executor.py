"""pymesos' examples/executor.py, corrected: Python 3 (print to stderr of bytes decoded), and a short task."""

import sys
import time
from threading import Thread

from addict import Dict
from pymesos import Executor, MesosExecutorDriver, decode_data

RUN_SECONDS = 1.0


class MinimalExecutor(Executor):
    def launchTask(self, driver, task):
        def run_task(task):
            update = Dict()
            update.task_id.value = task.task_id.value
            update.state = 'TASK_RUNNING'
            update.timestamp = time.time()
            driver.sendStatusUpdate(update)

            print(decode_data(task.data).decode(), file=sys.stderr)
            time.sleep(RUN_SECONDS)

            update = Dict()
            update.task_id.value = task.task_id.value
            update.state = 'TASK_FINISHED'
            update.timestamp = time.time()
            driver.sendStatusUpdate(update)

        thread = Thread(target=run_task, args=(Dict(task),))
        thread.start()


if __name__ == '__main__':
    import logging
    logging.basicConfig(level=logging.DEBUG)
    driver = MesosExecutorDriver(MinimalExecutor(), use_addict=True)
    driver.run()
