"""Job runs and schedule firing as pure decisions: states, transitions, what to do next.

Nothing here touches the state store or a clock. The command handlers
(master/state/jobs.py) and the leader loop (framework.py) call these with what
is committed and the time the clock gave, so both the decision and its replay
on every master are the same.

Run states (Metronome's names)::

    INITIAL ──launch──► ACTIVE ──task finished (exit 0)─────────────────► SUCCESS
       ▲                  │ task failed, attempts left, no stop asked
       └──────────────────┘
    INITIAL / ACTIVE ──task failed, no attempts left / stopped / deadline──► FAILED
    INITIAL ──not launched within maxLaunchDelay──────────────────────────► FAILED

INITIAL means "waiting for an offer" (first attempt or a retry); ACTIVE means
the current attempt's task was launched (staging, starting or running).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dcosd.model.states import TaskState


class RunStatus(str, enum.Enum):
    INITIAL = "INITIAL"  # waiting for resources (first attempt or a retry)
    ACTIVE = "ACTIVE"  # the current attempt's task is launched
    SUCCESS = "SUCCESS"  # terminal: a task finished with exit code 0
    FAILED = "FAILED"  # terminal: out of attempts, stopped, past a deadline, never launched

    @property
    def terminal(self) -> bool:
        return self in (RunStatus.SUCCESS, RunStatus.FAILED)


TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.INITIAL: frozenset({RunStatus.ACTIVE, RunStatus.FAILED}),
    RunStatus.ACTIVE: frozenset({RunStatus.INITIAL, RunStatus.SUCCESS, RunStatus.FAILED}),
    RunStatus.SUCCESS: frozenset(),
    RunStatus.FAILED: frozenset(),
}


def can_transition(old: RunStatus, new: RunStatus) -> bool:
    return new in TRANSITIONS[old]


# Why a run ended FAILED (or a schedule's fire was skipped); stored and shown as is.
class StopReason(str, enum.Enum):
    STOPPED = "STOPPED"  # an operator stopped the run
    ACTIVE_DEADLINE = "ACTIVE_DEADLINE"  # ran longer than activeDeadlineSeconds
    LAUNCH_DEADLINE = "LAUNCH_DEADLINE"  # could not launch within maxLaunchDelay
    JOB_REMOVED = "JOB_REMOVED"


@dataclass(frozen=True)
class TaskEnd:
    """What the run does now that its current task ended."""

    status: RunStatus  # INITIAL (retry), SUCCESS or FAILED
    message: str


def on_task_end(task_state: TaskState, exit_code: int | None, attempt: int, max_attempts: int,
                stop_reason: str | None, restart_policy: str, started_at: float, now: float,
                restart_deadline: float | None) -> TaskEnd:
    """The run's next status after its attempt number ``attempt`` (1-based) ended in ``task_state``."""
    assert task_state.terminal, task_state
    if task_state is TaskState.FINISHED and stop_reason is None:
        return TaskEnd(RunStatus.SUCCESS, f"attempt {attempt} finished with exit code {exit_code or 0}")
    what = f"attempt {attempt} ended {task_state.value}" + (f" (exit code {exit_code})" if exit_code is not None else "")
    if stop_reason is not None:
        return TaskEnd(RunStatus.FAILED, f"{what}: {_STOP_TEXT.get(stop_reason, stop_reason)}")
    if restart_policy != "ON_FAILURE":
        return TaskEnd(RunStatus.FAILED, f"{what}; restart policy NEVER")
    if attempt >= max_attempts:
        return TaskEnd(RunStatus.FAILED, f"{what}; no attempts left ({max_attempts} allowed)")
    if restart_deadline is not None and now - started_at >= restart_deadline:
        return TaskEnd(RunStatus.FAILED, f"{what}; not restarted: the run started more than "
                                         f"{restart_deadline:g}s ago (restart.activeDeadlineSeconds)")
    return TaskEnd(RunStatus.INITIAL, f"{what}; retrying (attempt {attempt + 1} of {max_attempts})")


_STOP_TEXT = {
    StopReason.STOPPED.value: "the run was stopped",
    StopReason.ACTIVE_DEADLINE.value: "killed: the run exceeded activeDeadlineSeconds",
    StopReason.LAUNCH_DEADLINE.value: "could not be launched within maxLaunchDelay",
    StopReason.JOB_REMOVED.value: "the job was removed",
}


def stop_text(reason: str) -> str:
    return _STOP_TEXT.get(reason, reason)


def past_active_deadline(started_at: float | None, deadline: float | None, now: float) -> bool:
    """A launched run still going after ``deadline`` seconds from its start is to be killed."""
    return started_at is not None and deadline is not None and now - started_at > deadline


def past_launch_deadline(waiting_since: float, max_launch_delay: float, now: float) -> bool:
    """A run waiting for resources longer than maxLaunchDelay fails."""
    return now - waiting_since > max_launch_delay


# -- schedules -----------------------------------------------------------------------------


class FireAction(str, enum.Enum):
    START = "START"  # start a run for this fire time
    SKIP_DEADLINE = "SKIP_DEADLINE"  # too late: now is past the fire time + startingDeadlineSeconds
    SKIP_FORBID = "SKIP_FORBID"  # concurrencyPolicy FORBID and a run is still active
    MISSED = "MISSED"  # superseded by a later fire time that was also due (only the latest is tried)


@dataclass(frozen=True)
class Fire:
    due_at: float
    action: FireAction


def decide_fires(due: list[float], now: float, starting_deadline: float, policy: str,
                 active_runs: int) -> list[Fire]:
    """What to do with the fire times that are due (oldest first, all <= now).

    Like Kubernetes CronJobs: after a pause (leader change, clock jump) only the
    latest due fire time is tried; the earlier ones are MISSED. It starts a run
    unless it is older than the starting deadline or the policy is FORBID and a
    run is active.
    """
    if not due:
        return []
    out = [Fire(t, FireAction.MISSED) for t in due[:-1]]
    last = due[-1]
    if now - last > starting_deadline:
        out.append(Fire(last, FireAction.SKIP_DEADLINE))
    elif policy == "FORBID" and active_runs > 0:
        out.append(Fire(last, FireAction.SKIP_FORBID))
    else:
        out.append(Fire(last, FireAction.START))
    return out
