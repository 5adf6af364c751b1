"""Marathon's event bus: committed changes of apps, deployments and instances as events (/v2/events).

Fed by the store's commit listeners on every master (so any master can stream
events), fanned out to subscribers' bounded queues; a subscriber that falls
behind is dropped rather than slowing the master.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dcosd.master.services import reads
from dcosd.master.services.appdef import fmt_time

QUEUE_LIMIT = 10_000


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue] = set()
        self.store: Any = None

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)

    def publish(self, event_type: str, **data: Any) -> None:
        if not self._subscribers:
            return
        event = {"eventType": event_type, "timestamp": fmt_time(time.time()), **data}
        for q in list(self._subscribers):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(q)
                q.put_nowait  # noqa: B018 — the reader sees the queue gone and ends its stream

    def on_commit(self, command: dict[str, Any], result: Any) -> None:
        if not self._subscribers or self.store is None:
            return
        kind = command["type"]
        if kind == "app_deploy" and isinstance(result, dict):
            self.publish("deployment_info", plan={"id": result["deploymentId"], "version": result["version"]},
                         currentStep=None)
            self.publish("group_change_success", groupId="/", version=result["version"])
        elif kind == "deployment_finish" and isinstance(result, dict):
            if command.get("outcome") == "cancelled":
                self.publish("deployment_failed", id=command["deployment_id"])
            else:
                self.publish("deployment_success", id=command["deployment_id"])
        elif kind == "deployment_step" and result:
            self.publish("deployment_step_success", plan={"id": command["deployment_id"]})
        elif kind in ("task_status", "task_master_status"):
            ids = result.get("applied", []) if isinstance(result, dict) else result
            if not isinstance(ids, list):
                return
            health = {u["task_id"]: u.get("healthy") for u in command.get("updates", []) if "healthy" in u}
            for t in reads.tasks_by_id(self.store, ids):
                self.publish("status_update_event", slaveId=t.agent_id, taskId=t.id, taskStatus=t.state,
                             message=t.message, appId=t.app_id, host="", ports=[], ipAddresses=[],
                             version=t.config_version)
                if t.id in health:
                    self.publish("health_status_changed_event", appId=t.app_id, taskId=t.id, instanceId=t.id,
                                 version=t.config_version, alive=bool(health[t.id]))
