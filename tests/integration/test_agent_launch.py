"""An agent's launch survives the end of the work stream that delivered it (real checkpoint, real
process backend): the stream task is cancelled whenever the session ends, and a launch caught between
its checkpoint write and its start used to stay STAGING forever."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from dcosd.agent.service import Agent, AgentConfig
from dcosd.executor.process import ProcessBackend
from dcosd.model.states import TaskState


async def _until(cond, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_a_launch_cancelled_with_its_stream_still_starts_once(tmp_path: Path):
    agent = Agent(AgentConfig(master="http://127.0.0.1:1", work_dir=tmp_path))
    agent.backend = ProcessBackend(tmp_path, agent._on_exit)
    spec = {"task_id": "t1", "name": "t1", "argv": ["echo", "started"],
            "resources": {"cpus": 0.1, "mem": 32}}
    msg = {"type": "launch", "task": spec, "resources": {"cpus": 0.1, "mem": 32}, "term": 1}
    try:
        stream = asyncio.create_task(agent._accept_launch(msg))
        await asyncio.sleep(0)  # it is writing the checkpoint (on the checkpoint's thread) now
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream
        await _until(lambda: "t1" in agent.tasks and agent.tasks["t1"].state.terminal)
        assert agent.tasks["t1"].state is TaskState.FINISHED
        # The master re-sends the launch when it reconciles: the task is not run a second time.
        await agent._accept_launch(msg)
        await asyncio.sleep(0.3)
        sandbox = agent.backend.sandbox_path("t1")
        assert (sandbox / "stdout").read_text() == "started\n", sorted(p.name for p in sandbox.iterdir())
        states = {t["task_id"]: t["state"] for t in await agent.checkpoint.load_tasks()}
        assert states == {"t1": TaskState.FINISHED.value}
    finally:
        await agent.backend.close()
        await agent.checkpoint.close()
