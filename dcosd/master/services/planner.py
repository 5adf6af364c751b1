"""What to do next for one app, and how deployments are laid out — pure.

``plan_app`` looks at an app's target definition and its live instances and
says how many to launch and which to kill. It is evaluated again after every
change, so it only ever decides the next safe move:

- no stale instances: launch up to ``instances``, kill the surplus (not-ready
  first, then by killSelection);
- stale instances (an older config version): a rolling replacement that keeps
  at least ceil(instances × minimumHealthCapacity) ready and never runs more than
  floor(instances × (1 + maximumOverCapacity)) instances at once;
- instances on a draining node (``Instance.draining``): moved, not replaced in
  place — replacements start first (within maximumOverCapacity, and always room
  for one more, so with 0 they move one at a time) and a draining instance is
  killed only when the app has more than ``instances`` ready without it, i.e.
  once its replacement is ready. Draining instances that are not ready serve
  nothing and go at once. The app never loses a ready instance to a drain.

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
    draining: bool = False  # on a node in maintenance: to be moved elsewhere

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
    moving = [i for i in live if i.draining]
    new = [i for i in live if not i.draining and i.config_version == config_version]
    old = [i for i in live if not i.draining and i.config_version != config_version]
    plan = AppPlan()
    ready_new = sum(i.ready(checked) for i in new)
    plan.ready = ready_new
    if len(new) > n:
        surplus = _kill_order(new, selection, checked)[: len(new) - n]
        plan.kill.extend(i.task_id for i in surplus)
        ready_new -= sum(i.ready(checked) for i in surplus)
        new = [i for i in new if i not in surplus]
    if not old and not moving:
        plan.launch = max(0, n - len(new))
        plan.done = len(new) == n and ready_new == n
        if not plan.done:
            plan.note = f"{ready_new}/{n} ready" if len(new) == n else f"{len(new)}/{n} launched"
        return plan
    # Rolling replacement (stale instances) and moving off draining nodes.
    floor_ready = min_healthy(app)
    cap = max(max_capacity(app), n)
    if moving:
        cap = max(cap, n + 1)  # a drain starts the replacement before the instance goes: room for one
    unready = [i for i in old + moving if not i.ready(checked)]
    plan.kill.extend(i.task_id for i in unready)  # stale or leaving, and not serving: nothing to keep
    ready_total = ready_new + sum(i.ready(checked) for i in old + moving)
    killed: list[Instance] = []
    # Draining instances first: each goes only when the others cover the target without it.
    for i in _kill_order([i for i in moving if i.ready(checked)], selection, checked):
        if ready_total - len(killed) - 1 < n:
            break
        killed.append(i)
    ready_olds = _kill_order([i for i in old if i.ready(checked)], selection, checked)
    can_kill = max(0, ready_total - len(killed) - floor_ready)
    killed_old = ready_olds[: min(can_kill, len(ready_olds))]
    remaining_old = len(ready_olds) - len(killed_old)
    remaining_moving = sum(i.ready(checked) for i in moving) - sum(i.draining for i in killed)
    plan.launch = max(0, min(n - len(new), cap - (remaining_old + remaining_moving + len(new))))
    if not killed_old and plan.launch == 0 and remaining_old and all(i.ready(checked) for i in new):
        # Nothing starting and no room either way (e.g. one instance with maximumOverCapacity 0):
        # the only way forward is one instance at a time.
        killed_old = ready_olds[:1]
        remaining_old -= 1
    killed.extend(killed_old)
    plan.kill.extend(i.task_id for i in killed)
    plan.note = f"replacing: {ready_new}/{n} new ready, {remaining_old} old left"
    if moving:
        plan.note += f", {remaining_moving} to move off draining nodes"
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
