"""Identifiers: task, agent and framework ids, and names made safe for other namespaces."""

from __future__ import annotations

import re
import uuid

_NAME_OK = re.compile(r"[^a-zA-Z0-9_.-]+")
_TASK_ID_OK = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")

# The framework id of tasks submitted through dcosd's own task API (`dcosd run`).
BUILTIN_TASKS_FRAMEWORK = "dcosd-tasks"


def sanitize_name(name: str) -> str:
    cleaned = _NAME_OK.sub("-", name).strip("-.")
    return cleaned[:64] or "task"


def new_task_id(name: str) -> str:
    # Like Marathon's `<app>.<uuid>`: readable in listings, unique forever.
    return f"{sanitize_name(name)}.{uuid.uuid4()}"


def valid_task_id(task_id: str) -> bool:
    return bool(_TASK_ID_OK.fullmatch(task_id)) and task_id not in (".", "..")


def new_agent_id() -> str:
    return f"{uuid.uuid4()}-S0"


def new_framework_id() -> str:
    return f"{uuid.uuid4()}-0000"


def new_uuid() -> str:
    return str(uuid.uuid4())
