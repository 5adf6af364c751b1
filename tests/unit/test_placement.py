"""First-fit placement over agent views (pure)."""

from dcosd.master.placement import AgentView, FirstFit, PendingTask
from dcosd.model.resources import Resources


def agent(aid, cpus, mem, used_cpus=0.0, used_mem=0.0):
    total = Resources.of(cpus=cpus, mem=mem)
    return AgentView(aid, aid, total, total - Resources.of(cpus=used_cpus, mem=used_mem))


def test_first_fit_in_order_and_respects_free_resources():
    agents = [agent("a", 1, 1000), agent("b", 4, 1000)]
    pending = [PendingTask(f"t{i}", Resources.of(cpus=0.5, mem=100)) for i in range(6)]
    result = FirstFit().place(pending, agents)
    placed = [(t, a) for t, a, _ in result.placements]
    assert placed == [("t0", "a"), ("t1", "a"), ("t2", "b"), ("t3", "b"), ("t4", "b"), ("t5", "b")]
    assert result.waiting == {}


def test_waiting_reasons_distinguish_too_large_from_busy():
    agents = [agent("a", 2, 1000, used_cpus=2)]
    result = FirstFit().place([PendingTask("big", Resources.of(cpus=8, mem=1)),
                               PendingTask("busy", Resources.of(cpus=1, mem=1))], agents)
    assert "larger than any agent" in result.waiting["big"] and "cpus 8 > 2" in result.waiting["big"]
    assert "busy" in result.waiting["busy"]
    assert FirstFit().place([PendingTask("x", Resources.of(cpus=1))], []).waiting["x"] == "no active agent"
