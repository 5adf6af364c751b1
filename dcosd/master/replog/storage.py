"""The Raft node's durable side, in the master's SQLite file (migration 3).

Tables: ``raft_hard_state`` (term, vote, rejoining, and the commit index as of their last change),
``raft_log`` (entries after the last snapshot), ``raft_snapshot`` (the last state image and its
index/term) — this master's own, never copied — and ``raft_applied``, part of the replicated state,
advanced in the transaction that applies each committed entry. So one Ready is one transaction:
snapshot, entries, hard state, restore, apply, applied index; a kill -9 leaves either all of it or
none of it.

Snapshot image: SQLite's online backup API copies the whole database into a scratch file; the
node-local tables are emptied there and the file vacuumed; that file is the image, kept beside the
database as ``<db>.snapshot-<index>`` (image.py: the core holds an ``ImageFile``, not the bytes).
Restoring an image copies every replicated table from it (ATTACHed) inside the Ready's transaction,
with the triggers dropped meanwhile so the copy does not fire them, and leaves the raft_* node
tables alone. A received image is made durable at that same place first, so the row in
``raft_snapshot`` never holds the image (masters from before image files stored received ones there;
such a row still loads).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import apsw

from dcosd import codec
from dcosd.errors import DcosdError, StorageError
from dcosd.master.state import machine
from dcosd.master.state.store import rollback, why_not_written

from .image import RECEIVED, ImageFile, received_index
from .messages import (
    Entry,
    EntryKind,
    HardState,
    PersistedState,
    Ready,
    Snapshot,
    SnapshotMeta,
)

NODE_TABLES = ("raft_hard_state", "raft_log", "raft_snapshot", "raft_node")

# (ok, value) per applied NORMAL entry: value is apply()'s result or the DcosdError that refused it.
TRUNCATE_STEP = 1000
# (entry, applied without error, apply()'s result or the error, the decoded command or None)
Outcome = tuple[Entry, bool, Any, Any]


class RaftStorage:
    """Owned by the Raft thread: every method runs there, on the writer connection."""

    def __init__(self, db: apsw.Connection, path: Path) -> None:
        self.db = db
        self.path = Path(path)
        self.applied_term = 0
        self._vouched: tuple[int, str | None, bool] | None = None  # (term, vote, rejoining) last made durable
        self._synchronous = "FULL"  # open_db's setting
        self._held: tuple | None = None  # write_ready(hold=True)'s open transaction: what _committed() takes
        self._to_record: tuple[int, int] | None = None  # a saved image write_ready() must record
        # Log rows at or below the snapshot are dead weight (load() skips them); they are deleted
        # TRUNCATE_STEP at a time by the following Readys, not all 10,000 inside one write.
        self._truncate_to = 0
        self._truncated = 0
        # The highest index a log row may have (None: not known). New entries past it replace nothing,
        # so their write skips the DELETE of a conflicting suffix: one statement fewer in every
        # follower's write before its fsync, which its acknowledgment waits for.
        self._log_end: int | None = None

    # -- load -----------------------------------------------------------------------------------
    def load(self) -> tuple[PersistedState, int]:
        db = self.db
        hs = HardState()
        for term, vote, commit, rejoining in db.execute(
                "SELECT term, vote, commit_index, rejoining FROM raft_hard_state WHERE id = 1"):
            hs = HardState(term, vote, commit, bool(rejoining))
            self._vouched = (hs.term, hs.vote, hs.rejoining)
        snap = Snapshot()
        image = None  # the image lives in a file beside the database (in the row: from an older dcosd)
        for idx, term, data in db.execute("SELECT idx, term, data FROM raft_snapshot WHERE id = 1"):
            if data:
                snap = Snapshot(SnapshotMeta(idx, term), bytes(data))
            else:
                image = idx
                path = self._image_path(idx)
                try:
                    snap = Snapshot(SnapshotMeta(idx, term), ImageFile(path, path.stat().st_size))
                except OSError as exc:
                    raise StorageError(f"the snapshot at index {idx} is missing ({exc}); restore this master's "
                                       f"data directory, or wipe it and start with --rejoin") from exc
        self._remove_stray_images(keep=image)  # never recorded, superseded, or half-written by a crash
        self._truncate_to, self._truncated = snap.meta.index, 0  # rows a crash left below the snapshot
        entries = tuple(Entry(t, i, bytes(d), EntryKind(k)) for i, t, k, d in db.execute(
            "SELECT idx, term, kind, data FROM raft_log WHERE idx > ? ORDER BY idx", (snap.meta.index,)))
        self._log_end = entries[-1].index if entries else snap.meta.index  # rows below the snapshot: lower
        applied = 0
        for idx, term in db.execute("SELECT idx, term FROM raft_applied WHERE id = 1"):
            applied, self.applied_term = idx, term
        applied = max(applied, snap.meta.index)
        # The stored commit index is only as recent as the last change of term or vote (write_ready);
        # every applied entry was committed, and the core must never see applied above commit (it
        # would apply those entries again).
        hs = dataclasses.replace(hs, commit=max(hs.commit, applied))
        return PersistedState(hs, snap, entries), applied

    def claim(self, node_id: str) -> None:
        """This data directory is master ``node_id``'s: recorded at its first start, refused to any
        other id (its term, vote and log are that master's; as another, it could vote twice)."""
        try:
            for (owner,) in self.db.execute("SELECT node_id FROM raft_node WHERE id = 1"):
                if owner != node_id:
                    raise StorageError(
                        f"{self.path.parent} holds the state of master {owner!r}, not {node_id!r}: start it with "
                        f"--id {owner}, or give master {node_id} an empty data directory and start it with --rejoin")
                return
            with self.db:
                self.db.execute("INSERT INTO raft_node (id, node_id) VALUES (1, ?)", (node_id,))
        except apsw.Error as exc:
            raise StorageError(f"cannot write {self.path}: {why_not_written(exc)}") from exc

    def mark_rejoining(self) -> None:
        """A replacement master's first act (--rejoin): make durable that it is rejoining, before it
        answers any peer. Without it, a master killed before its first Ready was written came back
        (restarted without the flag, as one is) as a member that had never voted and held nothing;
        the leader, which remembered its predecessor's log, told it a commit beyond its last index,
        and it stopped, at every restart."""
        try:
            with self.db:
                self.db.execute("INSERT INTO raft_hard_state (id, term, vote, commit_index, rejoining)"
                                " VALUES (1, 0, NULL, 0, 1)")
        except apsw.Error as exc:
            raise StorageError(f"cannot write {self.path}: {why_not_written(exc)}") from exc
        self._vouched = (0, None, True)

    def is_rejoining(self) -> bool:
        """Still marked as a replacement that has not caught up (a --rejoin that did not finish)."""
        for (rejoining,) in self.db.execute("SELECT rejoining FROM raft_hard_state WHERE id = 1"):
            return bool(rejoining)
        return False

    def is_empty(self) -> bool:
        """No Raft history and no state: what --rejoin requires."""
        for (n,) in self.db.execute("SELECT (SELECT COUNT(*) FROM raft_hard_state) + (SELECT COUNT(*) FROM raft_log)"
                                    " + (SELECT COUNT(*) FROM raft_snapshot) + (SELECT COUNT(*) FROM raft_applied)"):
            return n == 0
        return True

    # -- one Ready: persist + restore + apply, one transaction ---------------------------------
    def write_ready(self, rd: Ready, *, hold: bool = False) -> list[Outcome]:
        """Steps 1 and 3 of the I/O contract in ONE fsynced transaction (persist before apply holds
        inside it). Raises StorageError and changes nothing if SQLite fails.

        ``hold``: if nothing in the transaction needs an fsync (it applies committed entries, nothing
        else durable), leave it open once applied — ``holding`` is then True, ``commit_held()`` commits
        it and ``rollback_held()`` drops it; nothing else may use the writer meanwhile. The outcomes are
        final already: the entries are committed, so a crash before the commit re-applies them to the
        same outcomes at the restart (shell.py answers some proposers in between)."""
        if self._held is not None:
            raise StorageError("a held transaction must be committed or rolled back first")
        db = self.db
        attached = False
        if rd.snapshot is not None:
            self._attach_image(self._place_image(rd.snapshot))
            attached = True
        outcomes: list[Outcome] = []
        hs = rd.hard_state
        vouched = (hs.term, hs.vote, hs.rejoining) if hs is not None else self._vouched
        # The commit index alone is not written: Raft never needs it durable, load() takes it as at
        # least the applied index, and its row cost a WAL page in almost every transaction. It rides
        # along when term, vote or rejoining change.
        write_hs = self.vouches(hs)
        # fsync only what something may vouch for: entries, a snapshot, term/vote/rejoining. A Ready that
        # only applies committed entries is committed without fsync: a crash may lose it — whole, WAL
        # frames are ordered and every later fsync covers it — and the restart re-applies those entries
        # from the durable log.
        record = self._to_record
        if record is not None and rd.snapshot is not None and rd.snapshot.meta.index >= record[0]:
            record = None  # a leader's snapshot supersedes ours
        if (rd.snapshot is None and record is None and not rd.entries and not write_hs and not rd.committed_entries
                and self._truncated >= self._truncate_to):
            return outcomes  # nothing durable in it (a Ready of messages, or of a commit index alone)
        durable = bool(rd.entries) or rd.snapshot is not None or write_hs or record is not None
        self._set_synchronous("FULL" if durable else "NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if rd.snapshot is not None:  # its image is durable beside the database (_place_image)
                    meta = rd.snapshot.meta
                    db.execute("INSERT OR REPLACE INTO raft_snapshot (id, idx, term, data) VALUES (1, ?, ?, ?)",
                               (meta.index, meta.term, b""))
                    db.execute("DELETE FROM raft_log")
                    self._restore_from_attached()
                    db.execute("INSERT OR REPLACE INTO raft_applied (id, idx, term) VALUES (1, ?, ?)",
                               (meta.index, meta.term))
                if record is not None:
                    db.execute("INSERT OR REPLACE INTO raft_snapshot (id, idx, term, data) VALUES (1, ?, ?, ?)",
                               (record[0], record[1], b""))
                truncate_to = max(self._truncate_to, record[0] if record is not None else 0)
                truncated = self._truncated
                if rd.snapshot is not None:
                    truncate_to = truncated = max(truncate_to, rd.snapshot.meta.index)  # all deleted above
                if truncated < truncate_to:
                    truncated = min(truncate_to, truncated + TRUNCATE_STEP)
                    db.execute("DELETE FROM raft_log WHERE idx <= ?", (truncated,))
                if rd.entries:
                    if self._log_end is None or rd.entries[0].index <= self._log_end:
                        db.execute("DELETE FROM raft_log WHERE idx >= ?", (rd.entries[0].index,))
                    db.executemany("INSERT INTO raft_log (idx, term, kind, data) VALUES (?, ?, ?, ?)",
                                   [(e.index, e.term, int(e.kind), e.data) for e in rd.entries])
                if write_hs:
                    h = rd.hard_state
                    db.execute("INSERT OR REPLACE INTO raft_hard_state (id, term, vote, commit_index, rejoining)"
                               " VALUES (1, ?, ?, ?, ?)", (h.term, h.vote, h.commit, int(h.rejoining)))
                if rd.committed_entries:
                    outcomes = [self._apply(e) for e in rd.committed_entries]
                    last = rd.committed_entries[-1]
                    db.execute("INSERT OR REPLACE INTO raft_applied (id, idx, term) VALUES (1, ?, ?)",
                               (last.index, last.term))
                if hold and not durable:
                    self._held = (rd, vouched, record, truncate_to, truncated)
                    return outcomes
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise
        except apsw.Error as exc:
            raise StorageError(f"cannot write the replicated log in {self.path}: {why_not_written(exc)}") from exc
        finally:
            if attached:
                self._detach_image()
        self._committed(rd, vouched, record, truncate_to, truncated)
        return outcomes

    @property
    def holding(self) -> bool:
        """A transaction write_ready(hold=True) left open."""
        return self._held is not None

    def commit_held(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        try:
            try:
                self.db.execute("COMMIT")
            except BaseException:
                rollback(self.db)
                raise
        except apsw.Error as exc:
            raise StorageError(f"cannot write the replicated log in {self.path}: {why_not_written(exc)}") from exc
        self._committed(*held)

    def rollback_held(self) -> None:
        if self._held is not None:
            self._held = None
            rollback(self.db)

    def _committed(self, rd: Ready, vouched: tuple, record: tuple[int, int] | None, truncate_to: int,
                   truncated: int) -> None:
        """What this object keeps of the disk's state, once ``rd``'s transaction is committed."""
        self._vouched = vouched
        self._truncate_to, self._truncated = truncate_to, truncated
        if record is not None or rd.snapshot is not None:
            self._to_record = None
            # Older images only: a later one may be in the making, or saved and not recorded yet.
            self._remove_images_below(record[0] if record is not None else rd.snapshot.meta.index)
        if rd.snapshot is not None:
            self._remove_received_up_to(rd.snapshot.meta.index)
            self._log_end = rd.snapshot.meta.index  # every row was deleted
        if rd.entries:
            self._log_end = rd.entries[-1].index  # the suffix from the first was replaced
        if rd.committed_entries:
            self.applied_term = rd.committed_entries[-1].term
        elif rd.snapshot is not None:
            self.applied_term = rd.snapshot.meta.term

    def vouches(self, hs: HardState | None) -> bool:
        """Whether persisting ``hs`` changes what messages vouch for (term, vote, rejoining)."""
        return hs is not None and (hs.term, hs.vote, hs.rejoining) != self._vouched

    def _set_synchronous(self, mode: str) -> None:
        if mode != self._synchronous:
            self.db.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    def _apply(self, e: Entry) -> Outcome:
        if e.kind != EntryKind.NORMAL:
            return (e, True, None, None)
        db = self.db
        db.execute("SAVEPOINT cmd")
        command = None
        try:
            command = codec.loads(e.data)
            result = machine.apply(db, command)
            db.execute("RELEASE cmd")
            return (e, True, result, command)
        except apsw.Error:
            raise  # not deterministic (disk, I/O): the whole Ready fails, nothing advances
        except DcosdError as exc:
            db.execute("ROLLBACK TO cmd")
            db.execute("RELEASE cmd")
            return (e, False, exc, command)
        except Exception as exc:  # noqa: BLE001 — a bug in apply(): deterministic, so every master refuses it alike
            db.execute("ROLLBACK TO cmd")
            db.execute("RELEASE cmd")
            return (e, False, StorageError(f"internal error applying a command: {type(exc).__name__}: {exc}"),
                    command)

    # -- snapshots ------------------------------------------------------------------------------
    # A snapshot of our own state is taken beside the writer, not in its way: pin_state() opens a read
    # transaction at exactly the snapshot's index (on the writer's thread, between transactions),
    # image_file_of() copies that state on another thread while the writer goes on, save_image_file()
    # makes it a durable file, the next write_ready() records it (fsynced), and the log rows it covers are
    # deleted TRUNCATE_STEP per write.
    # (It used to be imaged, VACUUMed and stored as a blob in the writer's path: a 300 ms stall.)

    def pin_state(self) -> apsw.Connection:
        try:
            conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
            conn.setbusytimeout(5000)
            conn.execute("BEGIN")
            list(conn.execute("SELECT idx FROM raft_applied"))  # the read transaction starts here
        except apsw.Error as exc:
            raise StorageError(f"cannot take a snapshot of the state: {exc}") from exc
        return conn

    def image_file_of(self, pinned: apsw.Connection, index: int, scratch_name: str = "snap-out") -> Path:
        """The pinned state as a compact database image, without the Raft tables, in a scratch file
        beside the database that the caller then owns. Any thread."""
        scratch = self.path.with_name(f"{self.path.name}.{scratch_name}-{index}")
        _unlink(scratch)
        done = False
        try:
            dst = apsw.Connection(str(scratch))
            try:
                with dst.backup("main", pinned, "main") as b:
                    b.step(-1)
                for t in NODE_TABLES:
                    dst.execute(f"DELETE FROM {t}")
                dst.execute("PRAGMA journal_mode=DELETE")
                dst.execute("VACUUM")
            finally:
                dst.close()
            done = True
            return scratch
        except (apsw.Error, OSError) as exc:
            raise StorageError(f"cannot take a snapshot of the state: {exc}") from exc
        finally:
            try:
                pinned.execute("ROLLBACK")
            except apsw.Error:
                pass
            pinned.close()
            if not done:
                _unlink(scratch)

    def save_image_file(self, index: int, scratch: Path) -> ImageFile:
        """Make the image in ``scratch`` (image_file_of) the durable image of ``index``. Any thread."""
        final = self._image_path(index)
        try:
            _durably_move(scratch, final)
            return ImageFile(final, final.stat().st_size)
        except OSError as exc:
            _unlink(scratch)
            raise StorageError(f"cannot store a snapshot: {exc}") from exc

    def record_snapshot(self, index: int, term: int) -> None:
        """The next write_ready() points raft_snapshot at the saved image of ``index`` (fsynced); it and
        the following ones delete the log rows it covers, TRUNCATE_STEP at a time."""
        self._to_record = (index, term)

    def _image_path(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.snapshot-{index}")

    def _images(self) -> list[tuple[int, Path]]:
        out = []
        for p in self.path.parent.glob(f"{self.path.name}.snapshot-*"):
            index = p.name.rsplit("-", 1)[1]
            out.append((int(index) if index.isdigit() else -1, p))  # -1: a .tmp a crash left behind
        return out

    def _remove_images_below(self, index: int) -> None:
        for i, p in self._images():
            if 0 <= i < index:
                _unlink(p)

    def _remove_received_up_to(self, index: int) -> None:
        """Received images (whole, not installed) a snapshot at ``index`` makes useless: the core takes
        no snapshot at or below its commit index. Ones still arriving (.part) are their receiver's."""
        for p in self.path.parent.glob(f"{self.path.name}.{RECEIVED}*"):
            i = received_index(self.path, p)
            if i is not None and i <= index:
                _unlink(p)

    def _remove_stray_images(self, keep: int | None) -> None:
        """At start, before any snapshot thread runs: every image but the recorded one, and scratch."""
        for i, p in self._images():
            if keep is None or i != keep:
                _unlink(p)
        for pattern in ("snap-out-*", "backup-*", "restore-*", f"{RECEIVED}*", "snap-in"):
            for p in self.path.parent.glob(f"{self.path.name}.{pattern}"):
                _unlink(p)

    # -- a backup of the whole cluster (`dcosd cluster backup`, `dcosd master --restore-from`) -----
    def backup_file(self) -> tuple[Path, int, int]:
        """The replicated state as applied now, as an image (as for a snapshot) in a scratch file beside
        the database that the caller then owns (and deletes), with its index and term. Any thread; the
        writer goes on meanwhile."""
        pinned = self.pin_state()
        index, term = next(iter(pinned.execute("SELECT idx, term FROM raft_applied WHERE id = 1")), (0, 0))
        tag = f"backup-{os.getpid()}-{threading.get_native_id()}"
        return self.image_file_of(pinned, index, tag), index, term

    def restore_backup(self, image: bytes | Path) -> tuple[int, int]:
        """Seed an empty data directory with a backup (its bytes, or the file holding them), as if a
        leader had sent it as a snapshot: the state at its index, nothing logged after. The restored
        cluster is a new one: it gets its own id (the same on every master restored from the same
        backup), so masters that still hold the old cluster's state are refused by it."""
        scratch = self.path.with_name(f"{self.path.name}.restore-{os.getpid()}")
        _unlink(scratch)
        digest = hashlib.sha256(b"restored\0")
        try:
            if isinstance(image, Path):
                with open(image, "rb") as src, open(scratch, "wb") as dst:
                    while piece := src.read(1 << 20):
                        digest.update(piece)
                        dst.write(piece)
            else:
                digest.update(image)
                scratch.write_bytes(image)
            db = apsw.Connection(str(scratch))
            try:
                row = next(iter(db.execute("SELECT idx, term FROM raft_applied WHERE id = 1")), None)
                if row is None:
                    raise StorageError("the backup holds no replicated state (no applied index): is it a "
                                       "file from `dcosd cluster backup`?")
                index, term = row
                with db:
                    db.execute("DELETE FROM cluster")
                    db.execute("INSERT INTO cluster (id, cluster_id) VALUES (1, ?)", (digest.hexdigest()[:32],))
                db.execute("PRAGMA journal_mode=DELETE")
            finally:
                db.close()
            restored = ImageFile(scratch, scratch.stat().st_size)
            self.write_ready(Ready(hard_state=HardState(term, None, index),
                                   snapshot=Snapshot(SnapshotMeta(index, term), restored)))
        except apsw.Error as exc:
            raise StorageError(f"the backup is not a dcosd state image ({type(exc).__name__}: {exc})") from exc
        except OSError as exc:
            raise StorageError(f"cannot restore the backup into {self.path.parent}: {exc}") from exc
        finally:
            _unlink(scratch)  # moved into place by write_ready, unless something failed
        return index, term

    def _place_image(self, snapshot: Snapshot) -> Path:
        """The snapshot's image, made durable as this master's image of its index before the
        transaction that records it (a crash in between leaves a stray file, removed at start)."""
        final = self._image_path(snapshot.meta.index)
        data = snapshot.data
        try:
            if isinstance(data, ImageFile):  # received in chunks (or a backup being restored)
                if data.path != final:
                    _durably_move(data.path, final)
                    data.path = final  # the core's snapshot holds this object: it follows
            else:  # bytes: from a master that sends no chunks
                tmp = final.with_name(final.name + ".tmp")  # removed at start if left by a crash
                try:
                    tmp.write_bytes(data)
                    _durably_move(tmp, final)
                finally:
                    _unlink(tmp)
        except OSError as exc:
            raise StorageError(f"cannot store a received snapshot: {why_not_written(exc)}") from exc
        return final

    def _attach_image(self, image: Path) -> None:
        try:
            self.db.execute("ATTACH DATABASE ? AS snap", (str(image),))
        except apsw.Error as exc:
            raise StorageError(f"cannot open a received snapshot: {exc}") from exc

    def _detach_image(self) -> None:
        try:
            self.db.execute("DETACH DATABASE snap")
        except apsw.Error:
            pass

    def _restore_from_attached(self) -> None:
        db = self.db
        mine = next(iter(db.execute("PRAGMA main.user_version")))[0]
        theirs = next(iter(db.execute("PRAGMA snap.user_version")))[0]
        if mine != theirs:
            raise StorageError(f"snapshot is of schema {theirs}, this master is at {mine}: run one dcosd version")
        tables = [n for (n,) in db.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")
                  if n not in NODE_TABLES and (not n.startswith("sqlite_") or n == "sqlite_sequence")]
        in_snap = {n for (n,) in db.execute("SELECT name FROM snap.sqlite_master WHERE type = 'table'")}
        triggers = list(db.execute("SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger'"))
        for name, _ in triggers:
            db.execute(f'DROP TRIGGER main."{name}"')
        for t in tables:
            db.execute(f'DELETE FROM main."{t}"')
            if t in in_snap:
                db.execute(f'INSERT INTO main."{t}" SELECT * FROM snap."{t}"')
        for _, sql in triggers:
            db.execute(sql)


def _durably_move(src: Path, dst: Path) -> None:
    """``src`` becomes ``dst``, its content and the rename both durable (same directory)."""
    _fsync(src)
    os.replace(src, dst)
    _fsync(dst.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


