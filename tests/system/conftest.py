"""Fixtures of the system tests: one real systemd sandbox per session, and a way to run test bodies in it.

The sandbox is torn down (systemctl exit, SIGKILL if needed, cgroups removed depth-first) by the
session finalizer even when tests fail, and by atexit if the session dies before the finalizer runs.
Not root: every test that needs the sandbox is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PAYLOADS = HERE / "payloads.py"


def _load_sandbox_module() -> Any:
    # Loaded by path under a unique name: other test trees may have a `sandbox` module of their own.
    name = "dcosd_tests_system_sandbox"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "sandbox.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


sandbox_mod = _load_sandbox_module()


@pytest.fixture(scope="session")
def systemd_sandbox(request: pytest.FixtureRequest) -> Iterator[Any]:
    ok, why = sandbox_mod.available()
    if not ok:
        pytest.skip(why)
    sb = sandbox_mod.SystemdSandbox()
    request.addfinalizer(sb.stop)  # registered first: runs even if start() fails half-way
    # SIGTERM (a CI timeout) would end the interpreter without finalizers or atexit: turn it into
    # KeyboardInterrupt, which pytest answers by tearing the session down.
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        def on_sigterm(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, on_sigterm)
        request.addfinalizer(lambda: signal.signal(signal.SIGTERM, previous))
    sb.start()
    yield sb


class PayloadRunner:
    """Runs a scenario of payloads.py inside the sandbox, in a fresh work directory."""

    def __init__(self, sb: Any, root: Path) -> None:
        self.sb = sb
        self.root = root
        self._n = 0

    def work_dir(self) -> Path:
        self._n += 1
        return self.root / f"w{self._n}"

    def argv(self, scenario: str, work: Path, args: dict[str, Any] | None = None) -> list[str]:
        return [sys.executable, str(PAYLOADS), scenario, str(work), json.dumps(args or {})]

    def run(self, scenario: str, args: dict[str, Any] | None = None, *, work: Path | None = None,
            timeout: float = 120.0) -> dict[str, Any]:
        work = work or self.work_dir()
        r = self.sb.run(self.argv(scenario, work, args), timeout=timeout, wd=str(REPO))
        assert r.returncode == 0, f"payload {scenario} failed ({r.returncode}):\n{r.stderr[-4000:]}"
        return json.loads(r.stdout.strip().splitlines()[-1])

    def popen(self, scenario: str, args: dict[str, Any] | None = None, *,
              work: Path | None = None) -> subprocess.Popen[str]:
        work = work or self.work_dir()
        return self.sb.popen(self.argv(scenario, work, args), wd=str(REPO), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def payload(systemd_sandbox: Any) -> Iterator[PayloadRunner]:
    # Not pytest's tmp_path: its parents are 0700, and tasks run as `nobody` must reach their sandbox.
    root = Path(tempfile.mkdtemp(prefix="dcosd-systest-"))
    root.chmod(0o755)
    try:
        yield PayloadRunner(systemd_sandbox, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def no_dcosd_units(systemd_sandbox: Any) -> Iterator[None]:
    """After the test, no dcosd unit is left in the sandbox (and none leaks into the next test)."""
    yield
    out = systemd_sandbox.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", "dcosd-*.service"]).stdout
    if out.strip():
        systemd_sandbox.run(["systemctl", "stop", "dcosd-*.service"])
        pytest.fail(f"dcosd units left behind:\n{out}")
