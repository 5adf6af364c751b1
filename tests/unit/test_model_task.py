"""Task wire types are parsed strictly: every malformed field is refused by name."""

import re

import pytest

from dcosd.errors import ValidationError
from dcosd.model.states import TaskState
from dcosd.model.task import TaskSpec, TaskStatus


def test_spec_defaults_and_round_trip():
    spec = TaskSpec.from_dict({"argv": ["/bin/echo", "hi"]}, assign_id=True)
    assert spec.name == "echo" and spec.task_id.startswith("echo.")
    assert spec.command_line() == ["/bin/echo", "hi"]
    assert TaskSpec.from_dict(spec.to_dict()) == spec
    shell = TaskSpec.from_dict({"cmd": "exit 3", "task_id": "t1"})
    assert shell.command_line() == ["/bin/sh", "-c", "exit 3"]


@pytest.mark.parametrize("data,needle", [
    ([], "JSON object"),
    ({"argv": ["x"], "extra": 1}, "unknown field"),
    ({}, "exactly one"),
    ({"argv": ["x"], "cmd": "y"}, "exactly one"),
    ({"argv": []}, "non-empty list"),
    ({"argv": [""]}, "argv[0]"),
    ({"argv": ["a\0b"]}, "non-empty list"),
    ({"cmd": "   "}, "non-empty"),
    ({"argv": ["x"], "task_id": "../etc"}, "not a valid id"),
    ({"argv": ["x"], "task_id": "a/b"}, "not a valid id"),
    ({"argv": ["x"], "task_id": "a\n"}, "not a valid id"),  # `$` alone would take a trailing newline
    ({"argv": ["x"], "resources": {"cpus": 0, "mem": 32}}, "greater than 0"),
    ({"argv": ["x"], "resources": {"cpus": 1, "mem": 1}}, "at least 4"),
    ({"argv": ["x"], "env": {"A": 1}}, "env.A"),
    ({"argv": ["x"], "env": {"A=B": "1"}}, "valid name"),
    ({"argv": ["x"], "kill_grace_seconds": -1}, "kill_grace"),
    ({"argv": ["x"], "user": ""}, "user"),
])
def test_spec_refuses(data, needle):
    with pytest.raises(ValidationError, match=re.escape(needle)):
        TaskSpec.from_dict(data, assign_id=True)


def test_status_round_trip_and_refusals():
    st = TaskStatus.from_dict({"task_id": "t", "state": "TASK_FAILED", "uuid": "u", "timestamp": 1.5,
                               "reason": "REASON_CONTAINER_LIMITATION_MEMORY", "exit_code": 137})
    assert st.state is TaskState.FAILED
    assert TaskStatus.from_dict(st.to_dict()) == st
    for bad in ({"task_id": "t", "state": "TASK_NOPE", "uuid": "u", "timestamp": 1},
                {"task_id": "t", "state": "TASK_RUNNING", "uuid": "u", "timestamp": "now"},
                {"task_id": "t", "state": "TASK_RUNNING", "uuid": "u", "timestamp": 1, "zzz": 1},
                {"task_id": "t", "state": "TASK_RUNNING", "uuid": "u", "timestamp": 1, "exit_code": "1"}):
        with pytest.raises(ValidationError):
            TaskStatus.from_dict(bad)
