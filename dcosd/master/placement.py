"""Placement of queued tasks onto agents — pure.

The foundation's placer is first-fit: each queued task, oldest first, goes to
the first active agent (in a stable order) whose free resources contain what
it asks for. It sits behind the ``Placer`` protocol so the DRF allocator of the
two-level scheduling issue can replace it without touching its callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from dcosd.model.resources import Resources


@dataclass(frozen=True)
class AgentView:
    agent_id: str
    hostname: str
    total: Resources
    free: Resources


@dataclass(frozen=True)
class PendingTask:
    task_id: str
    resources: Resources


@dataclass
class PlacementResult:
    # (task_id, agent_id, resources the task holds there)
    placements: list[tuple[str, str, Resources]] = field(default_factory=list)
    # task_id -> why it is still waiting
    waiting: dict[str, str] = field(default_factory=dict)


class Placer(Protocol):
    def place(self, pending: Sequence[PendingTask], agents: Sequence[AgentView]) -> PlacementResult: ...


def _why_waiting(task: PendingTask, agents: Sequence[AgentView]) -> str:
    if not agents:
        return "no active agent"
    if not any(a.total.contains(task.resources) for a in agents):
        largest = max(agents, key=lambda a: (a.total.get("cpus"), a.total.get("mem")))
        short = "; ".join(largest.total.shortfall(task.resources))
        return f"larger than any agent ({short} on the largest, {largest.hostname})"
    return "waiting for resources: every agent that could run it is busy"


class FirstFit:
    def place(self, pending: Sequence[PendingTask], agents: Sequence[AgentView]) -> PlacementResult:
        result = PlacementResult()
        free = {a.agent_id: a.free for a in agents}
        for task in pending:
            for a in agents:
                if free[a.agent_id].contains(task.resources):
                    free[a.agent_id] = free[a.agent_id] - task.resources
                    result.placements.append((task.task_id, a.agent_id, task.resources))
                    break
            else:
                result.waiting[task.task_id] = _why_waiting(task, agents)
        return result
