"""Mesos task states and reasons, defined once.

Every other module takes its states from here; nothing else invents one. The
names are Mesos' (include/mesos/v1/mesos.proto) so that frameworks and tools
written for Mesos read them unchanged.
"""

from __future__ import annotations

import enum


class TaskState(str, enum.Enum):
    # Initial state: the master has recorded the task and sent it to an agent.
    STAGING = "TASK_STAGING"
    # The agent accepted the task and is starting it (sandbox, fetch, unit start).
    STARTING = "TASK_STARTING"
    # The task's process is running.
    RUNNING = "TASK_RUNNING"
    # A kill was asked for and the task is in its grace period.
    KILLING = "TASK_KILLING"
    # Terminal: the command exited 0.
    FINISHED = "TASK_FINISHED"
    # Terminal: the command exited non-zero, was signalled, hit a limit, or could not start.
    FAILED = "TASK_FAILED"
    # Terminal: the task was killed on request.
    KILLED = "TASK_KILLED"
    # Terminal: the task description was invalid.
    ERROR = "TASK_ERROR"
    # Terminal: the task's fate is unknown and it is presumed gone (agent lost for good).
    LOST = "TASK_LOST"
    # Terminal: the task never reached an agent (invalid offer, agent gone before launch).
    DROPPED = "TASK_DROPPED"
    # Non-terminal: the agent is partitioned; the task may still be running there.
    UNREACHABLE = "TASK_UNREACHABLE"
    # Terminal: the task is known to be gone (agent removed).
    GONE = "TASK_GONE"
    # Terminal: an operator declared the task's agent gone.
    GONE_BY_OPERATOR = "TASK_GONE_BY_OPERATOR"
    # Non-terminal: the master has no information about the task (reconciliation answer).
    UNKNOWN = "TASK_UNKNOWN"

    def __str__(self) -> str:  # so f-strings print the Mesos name
        return self.value

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[TaskState] = frozenset(
    {
        TaskState.FINISHED,
        TaskState.FAILED,
        TaskState.KILLED,
        TaskState.ERROR,
        TaskState.LOST,
        TaskState.DROPPED,
        TaskState.GONE,
        TaskState.GONE_BY_OPERATOR,
    }
)

# States in which a task holds resources on its agent.
ACTIVE_STATES: frozenset[TaskState] = frozenset(
    {TaskState.STAGING, TaskState.STARTING, TaskState.RUNNING, TaskState.KILLING, TaskState.UNREACHABLE}
)


def is_terminal(state: TaskState) -> bool:
    return state in TERMINAL_STATES


def can_transition(old: TaskState | None, new: TaskState) -> bool:
    """Whether a task may move from ``old`` to ``new``.

    ``old is None`` means the task does not exist yet: only STAGING starts a
    task's life (reconciliation may also introduce a task the agent reports, as
    RUNNING or terminal, which is why those are allowed from None too).
    A terminal state is final. STAGING is never re-entered. UNREACHABLE may
    return to any live state when the agent comes back.
    """
    if old is None:
        return new is not TaskState.UNKNOWN
    if old in TERMINAL_STATES:
        return False
    if new is TaskState.STAGING:
        return False
    if new is TaskState.UNKNOWN:
        return False
    if old is new:
        # Repeated updates of the same live state (e.g. a health change while RUNNING) are allowed.
        return True
    if old is TaskState.RUNNING and new is TaskState.STARTING:
        return False
    if old is TaskState.KILLING and new in (TaskState.STARTING, TaskState.RUNNING):
        return False
    return True


class Reason(str, enum.Enum):
    """The subset of Mesos' TaskStatus.Reason that dcosd produces."""

    COMMAND_EXECUTOR_FAILED = "REASON_COMMAND_EXECUTOR_FAILED"
    CONTAINER_LAUNCH_FAILED = "REASON_CONTAINER_LAUNCH_FAILED"
    CONTAINER_LIMITATION_MEMORY = "REASON_CONTAINER_LIMITATION_MEMORY"
    CONTAINER_LIMITATION_DISK = "REASON_CONTAINER_LIMITATION_DISK"
    EXECUTOR_TERMINATED = "REASON_EXECUTOR_TERMINATED"
    TASK_KILLED_DURING_LAUNCH = "REASON_TASK_KILLED_DURING_LAUNCH"
    AGENT_DISCONNECTED = "REASON_SLAVE_DISCONNECTED"
    AGENT_REMOVED = "REASON_SLAVE_REMOVED"
    AGENT_RESTARTED = "REASON_SLAVE_RESTARTED"
    AGENT_UNKNOWN = "REASON_SLAVE_UNKNOWN"
    INVALID_OFFERS = "REASON_INVALID_OFFERS"
    RECONCILIATION = "REASON_RECONCILIATION"
    TASK_INVALID = "REASON_TASK_INVALID"
    TASK_UNKNOWN = "REASON_TASK_UNKNOWN"
    FRAMEWORK_REMOVED = "REASON_FRAMEWORK_REMOVED"
    MAX_COMPLETION_TIME_REACHED = "REASON_MAX_COMPLETION_TIME_REACHED"

    def __str__(self) -> str:
        return self.value


class Source(str, enum.Enum):
    MASTER = "SOURCE_MASTER"
    AGENT = "SOURCE_SLAVE"
    EXECUTOR = "SOURCE_EXECUTOR"

    def __str__(self) -> str:
        return self.value
