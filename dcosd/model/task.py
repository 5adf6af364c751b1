"""Wire types of a task: what an operator submits and what agents report.

Both are parsed strictly: unknown fields and malformed values raise
ValidationError naming the field, so bad input never reaches the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from collections.abc import Mapping  # not typing's: isinstance() on it is several times slower
from typing import Any

from dcosd.errors import ValidationError
from dcosd.model.ids import BUILTIN_TASKS_FRAMEWORK, new_task_id, valid_task_id
from dcosd.model.resources import ResourceError, Resources
from dcosd.model.states import Reason, Source, TaskState

DEFAULT_KILL_GRACE = 3.0
MAX_KILL_GRACE = 3600.0

_SPEC_FIELDS = {
    "task_id", "name", "cmd", "argv", "env", "user", "resources", "kill_grace_seconds",
    "framework_id", "labels", "executor_id", "health_checks", "uris",
}


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValidationError(message)


def _str_map(value: Any, what: str) -> dict[str, str]:
    # Messages are formatted only on failure: this runs on every submitted task.
    if not isinstance(value, Mapping):
        raise ValidationError(f"{what} must be an object of strings")
    for k, v in value.items():
        if not (isinstance(k, str) and isinstance(v, str)):
            raise ValidationError(f"{what}.{k} must be a string")
        if "\0" in k or "\0" in v or "=" in k or k == "":
            raise ValidationError(f"{what}.{k} is not a valid name")
    return dict(value)


@dataclass(frozen=True)
class TaskSpec:
    """A task as submitted: a command, its environment and the resources it needs.

    Exactly one of ``cmd`` (run by ``/bin/sh -c``) or ``argv`` (executed directly) is set.
    """

    task_id: str
    name: str
    resources: Resources
    cmd: str | None = None
    argv: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    kill_grace_seconds: float = DEFAULT_KILL_GRACE
    framework_id: str = BUILTIN_TASKS_FRAMEWORK
    labels: Mapping[str, str] = field(default_factory=dict)
    executor_id: str | None = None
    # Run on the agent beside the task (agent/health.py); results travel as `healthy` in status updates.
    health_checks: tuple[Mapping[str, Any], ...] = ()
    # Fetched into the sandbox before the command starts (http(s):// and file://).
    uris: tuple[str, ...] = ()

    def command_line(self) -> list[str]:
        if self.argv is not None:
            return list(self.argv)
        assert self.cmd is not None
        return ["/bin/sh", "-c", self.cmd]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "task_id": self.task_id,
            "name": self.name,
            "resources": self.resources.to_dict(),
            "env": dict(self.env),
            "kill_grace_seconds": self.kill_grace_seconds,
            "framework_id": self.framework_id,
            "labels": dict(self.labels),
        }
        if self.cmd is not None:
            d["cmd"] = self.cmd
        if self.argv is not None:
            d["argv"] = list(self.argv)
        if self.user is not None:
            d["user"] = self.user
        if self.executor_id is not None:
            d["executor_id"] = self.executor_id
        if self.health_checks:
            d["health_checks"] = [dict(h) for h in self.health_checks]
        if self.uris:
            d["uris"] = list(self.uris)
        return d

    @classmethod
    def from_dict(cls, data: Any, *, assign_id: bool = False) -> "TaskSpec":
        _require(isinstance(data, Mapping), "a task must be a JSON object")
        unknown = set(data) - _SPEC_FIELDS
        if unknown:
            raise ValidationError(f"unknown field(s) in task: {', '.join(sorted(unknown))}")
        name = data.get("name")
        cmd = data.get("cmd")
        argv = data.get("argv")
        _require((cmd is None) != (argv is None), "a task needs exactly one of 'cmd' or 'argv'")
        if cmd is not None:
            _require(isinstance(cmd, str) and cmd.strip() != "", "cmd must be a non-empty string")
            _require("\0" not in cmd, "cmd must not contain NUL")
        if argv is not None:
            _require(
                isinstance(argv, list) and len(argv) > 0 and all(isinstance(a, str) and "\0" not in a for a in argv),
                "argv must be a non-empty list of strings",
            )
            _require(argv[0] != "", "argv[0] must name a program")
        if name is None:
            name = (argv[0] if argv else cmd.split()[0]).rsplit("/", 1)[-1]  # type: ignore[union-attr]
        _require(isinstance(name, str) and 0 < len(name) <= 200, "name must be a string of 1-200 characters")
        task_id = data.get("task_id")
        if task_id is None:
            _require(assign_id, "task_id is required")
            task_id = new_task_id(name)
        if not (isinstance(task_id, str) and valid_task_id(task_id)):
            raise ValidationError(f"task_id {task_id!r} is not a valid id")
        try:
            resources = Resources.from_dict(data.get("resources", {"cpus": 0.1, "mem": 32}))
        except ResourceError as exc:
            raise ValidationError(f"resources: {exc}") from exc
        _require(resources.get("cpus") > 0, "resources.cpus must be greater than 0")
        _require(resources.get("mem") >= 4, "resources.mem must be at least 4 (MB)")
        env = _str_map(data.get("env", {}), "env")
        labels = _str_map(data.get("labels", {}), "labels")
        if "DCOSD_VIPS" in labels:  # the task's VIPs (dcosd/vips): refused here rather than ignored later
            from dcosd.vips.table import VipError, parse_label

            try:
                parse_label(labels["DCOSD_VIPS"])
            except VipError as exc:
                raise ValidationError(f"labels.DCOSD_VIPS: {exc}") from None
        user = data.get("user")
        _require(user is None or (isinstance(user, str) and user.isprintable() and 0 < len(user) <= 64),
                 "user must be a user name")
        grace = data.get("kill_grace_seconds", DEFAULT_KILL_GRACE)
        if not (isinstance(grace, (int, float)) and not isinstance(grace, bool) and 0 <= grace <= MAX_KILL_GRACE):
            raise ValidationError(f"kill_grace_seconds must be between 0 and {MAX_KILL_GRACE:g}")
        fw = data.get("framework_id", BUILTIN_TASKS_FRAMEWORK)
        _require(isinstance(fw, str) and fw != "", "framework_id must be a string")
        ex = data.get("executor_id")
        _require(ex is None or isinstance(ex, str), "executor_id must be a string")
        checks = data.get("health_checks", [])
        _require(isinstance(checks, list) and all(isinstance(h, Mapping) for h in checks),
                 "health_checks must be a list of objects")
        uris = data.get("uris", [])
        _require(isinstance(uris, list) and all(isinstance(u, str) for u in uris), "uris must be a list of strings")
        return cls(
            task_id=task_id,
            name=name,
            resources=resources,
            cmd=cmd,
            argv=tuple(argv) if argv is not None else None,
            env=env,
            user=user,
            kill_grace_seconds=float(grace),
            framework_id=fw,
            labels=labels,
            executor_id=ex,
            health_checks=tuple(dict(h) for h in checks),
            uris=tuple(uris),
        )

    def with_resources(self, resources: Resources) -> "TaskSpec":
        return replace(self, resources=resources)


@dataclass(frozen=True)
class TaskStatus:
    """One status update about a task, as an agent (or the master) reports it."""

    task_id: str
    state: TaskState
    uuid: str
    timestamp: float
    agent_id: str | None = None
    source: Source = Source.AGENT
    reason: Reason | None = None
    message: str = ""
    exit_code: int | None = None
    healthy: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "task_id": self.task_id,
            "state": self.state.value,
            "uuid": self.uuid,
            "timestamp": self.timestamp,
            "source": self.source.value,
            "message": self.message,
        }
        if self.agent_id is not None:
            d["agent_id"] = self.agent_id
        if self.reason is not None:
            d["reason"] = self.reason.value
        if self.exit_code is not None:
            d["exit_code"] = self.exit_code
        if self.healthy is not None:
            d["healthy"] = self.healthy
        return d

    @classmethod
    def from_dict(cls, data: Any) -> "TaskStatus":
        _require(isinstance(data, Mapping), "a status update must be a JSON object")
        known = {"task_id", "state", "uuid", "timestamp", "agent_id", "source", "reason", "message",
                 "exit_code", "healthy"}
        unknown = set(data) - known
        if unknown:
            raise ValidationError(f"unknown field(s) in status update: {', '.join(sorted(unknown))}")
        try:
            state = TaskState(data["state"])
            reason = Reason(data["reason"]) if data.get("reason") else None
            source = Source(data.get("source", Source.AGENT.value))
        except (KeyError, ValueError) as exc:
            raise ValidationError(f"status update: bad or missing state/reason/source ({exc})") from exc
        for f in ("task_id", "uuid"):
            if not (isinstance(data.get(f), str) and data[f] != ""):
                raise ValidationError(f"status update: {f} must be a string")
        ts = data.get("timestamp")
        _require(isinstance(ts, (int, float)) and not isinstance(ts, bool), "status update: timestamp must be a number")
        code = data.get("exit_code")
        _require(code is None or (isinstance(code, int) and not isinstance(code, bool)), "exit_code must be an integer")
        healthy = data.get("healthy")
        _require(healthy is None or isinstance(healthy, bool), "healthy must be a boolean")
        message = data.get("message", "")
        _require(isinstance(message, str), "message must be a string")
        return cls(
            task_id=data["task_id"], state=state, uuid=data["uuid"], timestamp=float(ts),
            agent_id=data.get("agent_id"), source=source, reason=reason, message=message[:4096],
            exit_code=code, healthy=healthy,
        )
