"""Two revisions of this repository checked out side by side, for the A/B benchmarks.

    with revisions("HEAD~1", None) as (tree_a, tree_b, tmp):   # B = this working tree
        ...                                                     # run each tree's sources

Each revision is a detached git worktree under a temporary directory (removed afterwards, with the
worktrees); the current directory is that temporary directory meanwhile, since `python -m dcosd`
puts the current directory first on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(rev: str, where: Path) -> Path:
    r = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cannot check out {rev!r}: {r.stderr.strip()}")
    return where


@contextlib.contextmanager
def revisions(base: str, against: str | None, prefix: str) -> Iterator[tuple[Path, Path, Path]]:
    """(tree of ``base``, tree of ``against`` or this working tree, a scratch directory)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    trees: list[Path] = []
    try:
        trees.append(checkout(base, tmp / "tree-a"))
        trees.append(checkout(against, tmp / "tree-b") if against else ROOT)
        os.chdir(tmp)
        yield trees[0], trees[1], tmp
    finally:
        os.chdir(ROOT)
        for t in trees:
            if t != ROOT:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(t)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], stdout=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
