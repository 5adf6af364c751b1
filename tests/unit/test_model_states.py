"""Task states: the terminal set and the transition rule, checked over every pair."""

import itertools

import pytest

from dcosd.model.states import ACTIVE_STATES, TERMINAL_STATES, TaskState, can_transition, is_terminal


def test_terminal_and_active_partition_the_known_states():
    assert TERMINAL_STATES.isdisjoint(ACTIVE_STATES)
    assert TaskState.UNKNOWN not in TERMINAL_STATES | ACTIVE_STATES
    assert TERMINAL_STATES | ACTIVE_STATES | {TaskState.UNKNOWN} == set(TaskState)
    for s in TaskState:
        assert s.terminal == is_terminal(s) == (s in TERMINAL_STATES)
        assert str(s) == s.value and s.value.startswith("TASK_")


@pytest.mark.parametrize("old,new", list(itertools.product(list(TaskState), list(TaskState))))
def test_transition_rule(old, new):
    allowed = can_transition(old, new)
    if old.terminal or new in (TaskState.STAGING, TaskState.UNKNOWN):
        assert not allowed
    elif old is TaskState.RUNNING and new is TaskState.STARTING:
        assert not allowed
    elif old is TaskState.KILLING and new in (TaskState.STARTING, TaskState.RUNNING):
        assert not allowed
    else:
        assert allowed


def test_unreachable_may_return_to_running_and_then_end():
    path = [TaskState.STAGING, TaskState.RUNNING, TaskState.UNREACHABLE, TaskState.RUNNING, TaskState.FINISHED]
    assert can_transition(None, path[0])
    assert all(can_transition(a, b) for a, b in zip(path, path[1:]))
    assert not can_transition(TaskState.LOST, TaskState.RUNNING)
