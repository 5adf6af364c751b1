"""What to do next for one app, and how deployments are laid out — pure.

``plan_app`` looks at an app's target definition and its live instances and
says how many to launch and which to kill. It is evaluated again after every
change, so it only ever decides the next safe move:

- no stale instances: launch up to ``instances``, kill the surplus (not-ready
  first, then by killSelection);
- stale instances (an older config version): a rolling replacement that keeps
  at least ceil(instances × minimumHealthCapacity) ready and never runs more than
  floor(instances × (1 + maximumOverCapacity)) instances at once.

An instance is *ready* when it is TASK_RUNNING and, if the app has health
checks, its last health result is healthy.

``deployment_steps`` orders the apps of one change by their dependencies;
``backoff_delay`` is the crash-loop delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from dcosd.master.services.appdef import max_capacity, min_healthy


@dataclass(frozen=True)
class Instance:
    task_id: str
    config_version: str
    state: str  # a TaskState value
    healthy: bool | None
    started: float  # when launched (for killSelection)

    def ready(self, checked: bool) -> bool:
        return self.state == "TASK_RUNNING" and (not checked or self.healthy is True)


@dataclass
class AppPlan:
    launch: int = 0
    kill: list[str] = field(default_factory=list)
    ready: int = 0
    done: bool = False
    note: str = ""


def _kill_order(instances: Sequence[Instance], selection: str, checked: bool) -> list[Instance]:
    """Not-ready first; then youngest (default) or oldest first."""
    youngest = selection != "OLDEST_FIRST"
    return sorted(instances, key=lambda i: (i.ready(checked), -i.started if youngest else i.started, i.task_id))


def plan_app(app: Mapping, config_version: str, live: Sequence[Instance]) -> AppPlan:
    """``live``: the app's instances that are not terminal and not being killed."""
    n = app["instances"]
    checked = bool(app["healthChecks"])
    selection = app["killSelection"]
    new = [i for i in live if i.config_version == config_version]
    old = [i for i in live if i.config_version != config_version]
    plan = AppPlan()
    ready_new = sum(i.ready(checked) for i in new)
    ready_old = sum(i.ready(checked) for i in old)
    plan.ready = ready_new
    if len(new) > n:
        surplus = _kill_order(new, selection, checked)[: len(new) - n]
        plan.kill.extend(i.task_id for i in surplus)
        ready_new -= sum(i.ready(checked) for i in surplus)
        new = [i for i in new if i not in surplus]
    if not old:
        plan.launch = max(0, n - len(new))
        plan.done = len(new) == n and ready_new == n
        if not plan.done:
            plan.note = f"{ready_new}/{n} ready" if len(new) == n else f"{len(new)}/{n} launched"
        return plan
    # Rolling replacement.
    floor_ready = min_healthy(app)
    cap = max(max_capacity(app), n)
    unready_old = [i for i in old if not i.ready(checked)]
    plan.kill.extend(i.task_id for i in unready_old)  # stale and not serving: nothing to keep
    ready_olds = _kill_order([i for i in old if i.ready(checked)], selection, checked)
    can_kill = max(0, ready_new + ready_old - floor_ready)
    # Never kill more stale instances than the new ones will replace.
    killed = ready_olds[: min(can_kill, len(ready_olds))]
    remaining_old = len(ready_olds) - len(killed)
    plan.launch = max(0, min(n - len(new), cap - (remaining_old + len(new))))
    if not killed and plan.launch == 0 and remaining_old and all(i.ready(checked) for i in new):
        # Nothing starting and no room either way (e.g. one instance with maximumOverCapacity 0):
        # the only way forward is one instance at a time.
        killed = ready_olds[:1]
        remaining_old -= 1
    plan.kill.extend(i.task_id for i in killed)
    plan.note = f"replacing: {ready_new}/{n} new ready, {remaining_old} old left"
    return plan


def backoff_delay(failures: int, backoff_seconds: float, factor: float, max_delay: float) -> float:
    """The delay before the next launch after ``failures`` consecutive failures (0 after none)."""
    if failures <= 0:
        return 0.0
    return min(max_delay, backoff_seconds * factor ** (failures - 1))


def deployment_steps(apps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Apps (id → its dependencies) in steps: each step's apps depend only on earlier steps' or on apps
    outside this change. A dependency cycle is refused with ValueError naming the apps."""
    remaining = {a: {d for d in deps if d in apps} for a, deps in apps.items()}
    steps: list[list[str]] = []
    done: set[str] = set()
    while remaining:
        step = sorted(a for a, deps in remaining.items() if deps <= done)
        if not step:
            raise ValueError("dependency cycle between " + ", ".join(sorted(remaining)))
        steps.append(step)
        done.update(step)
        for a in step:
            del remaining[a]
    return steps
