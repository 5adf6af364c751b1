"""What persisting one Raft entry costs: the master's SQLite commit vs a bare append-only log file.

Three masters on one machine flush the same disk at once, and at one client a write waits for a
follower's persist. This runs W writer processes side by side (default 3), each alternating rounds
of the two ways of making one ~250-byte entry durable:

- ``sqlite``: RaftStorage.write_ready of a Ready with the entry (the master's code: BEGIN, log row,
  COMMIT with synchronous=FULL, i.e. WAL frames + fdatasync), followed by the apply of that entry
  in its own unsynced transaction, as a master does;
- ``file`` (the baseline, what etcd's WAL does): pwrite of the entry's bytes at the end of a
  preallocated file + fdatasync, followed by the same SQLite apply (unsynced).

It prints the p50/p99 of the persist alone for each, and sqlite/file. The gap is what a separate
log file could take off each write's critical path; it is not a design (entries, truncation and
the state's durability would need their own crash story). It flatters the file somewhat: the SQLite
persist's fsync also flushes the previous apply's WAL frames, while with a separate log the state's
own durability would be paid elsewhere (at checkpoints), which this does not charge.

    python bench/log_persist.py [--writers 3] [--entries 500] [--rounds 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOG_BYTES = 8 << 20


def _writer(k: int, root: str, entries: int, rounds: int, barrier, out) -> None:
    from dcosd import codec
    from dcosd.master.replog.messages import Entry, EntryKind, HardState, Ready
    from dcosd.master.replog.storage import RaftStorage
    from dcosd.master.state.store import migrate, open_db

    d = Path(root) / f"w{k}"
    d.mkdir()
    db = open_db(d / "state.db")
    migrate(db)
    storage = RaftStorage(db, d / "state.db")
    storage.load()
    fd = os.open(d / "raft.log", os.O_WRONLY | os.O_CREAT, 0o600)
    os.pwrite(fd, b"\0" * LOG_BYTES, 0)  # preallocated, as etcd's WAL segments: no size change per write
    os.fsync(fd)
    offset = 0
    times: dict[str, list[float]] = {"sqlite": [], "file": []}
    index = 0
    for r in range(rounds):
        way = "sqlite" if r % 2 == 0 else "file"
        barrier.wait()  # every writer runs the same way at the same time
        for _ in range(entries):
            index += 1
            spec = {"task_id": f"t-{k}-{index}", "name": "b", "argv": ["true"], "env": {}, "labels": {},
                    "resources": {"cpus": 0.01, "mem": 4.0, "disk": 0.0}, "framework_id": "dcosd-tasks",
                    "kill_grace_seconds": 3.0}
            e = Entry(1, index, codec.dumps({"type": "task_submit", "time": time.time(), "spec": spec}),
                      EntryKind.NORMAL)
            t0 = time.perf_counter()
            if way == "sqlite":
                storage.write_ready(Ready(entries=[e], hard_state=HardState(1, "m1", index - 1)))
            else:
                if offset + len(e.data) > LOG_BYTES:
                    offset = 0
                os.pwrite(fd, e.data, offset)
                offset += len(e.data)
                os.fdatasync(fd)
            times[way].append(time.perf_counter() - t0)
            storage.write_ready(Ready(committed_entries=[e], hard_state=HardState(1, "m1", index)))
    os.close(fd)
    db.close()
    out.put(times)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writers", type=int, default=3, help="processes persisting at once (masters on one disk)")
    ap.add_argument("--entries", type=int, default=500, help="entries per round")
    ap.add_argument("--rounds", type=int, default=4, help="rounds, alternating the two ways (even: both equally)")
    args = ap.parse_args()
    if args.writers < 1 or args.entries < 1 or args.rounds < 2:
        ap.error("--writers and --entries must be at least 1, --rounds at least 2")
    root = tempfile.mkdtemp(prefix="dcosd-logpersist-")
    try:
        barrier, out = mp.Barrier(args.writers), mp.Queue()
        procs = [mp.Process(target=_writer, args=(k, root, args.entries, args.rounds, barrier, out))
                 for k in range(args.writers)]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    merged = {way: [t for r in results for t in r[way]] for way in ("sqlite", "file")}
    print(f"{args.writers} writers at once, {args.rounds} alternating rounds of {args.entries} entries each")
    for way, label in (("sqlite", "SQLite commit (the master's RaftStorage)"), ("file", "append + fdatasync (baseline)")):
        print(f"  {label:42} p50 {_pct(merged[way], 0.5):6.0f} us   p99 {_pct(merged[way], 0.99):6.0f} us")
    print(f"  sqlite/file: p50 {_pct(merged['sqlite'], 0.5) / _pct(merged['file'], 0.5):.2f}x, "
          f"p99 {_pct(merged['sqlite'], 0.99) / _pct(merged['file'], 0.99):.2f}x")


if __name__ == "__main__":
    main()
