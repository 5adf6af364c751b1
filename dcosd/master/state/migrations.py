"""Numbered schema migrations of the master's SQLite state.

A migration is appended, never edited: a database at version N runs every
migration after N in one transaction at open. `PRAGMA user_version` holds N.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the foundation — the command log, agents, tasks with status history, the pending queue.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE log (
        idx INTEGER PRIMARY KEY,
        term INTEGER NOT NULL,
        command TEXT NOT NULL
    );
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        ip TEXT NOT NULL,
        address TEXT NOT NULL,
        resources TEXT NOT NULL,
        attributes TEXT NOT NULL,
        backend TEXT NOT NULL,
        state TEXT NOT NULL,
        registered_at REAL NOT NULL,
        reregistered_at REAL,
        unreachable_since REAL,
        version TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        framework_id TEXT NOT NULL,
        agent_id TEXT,
        state TEXT NOT NULL,
        spec TEXT NOT NULL,
        resources TEXT NOT NULL,
        reason TEXT,
        message TEXT NOT NULL DEFAULT '',
        exit_code INTEGER,
        healthy INTEGER,
        kill_requested INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX tasks_by_agent ON tasks(agent_id, state);
    CREATE INDEX tasks_by_state ON tasks(state);
    CREATE TABLE task_statuses (
        task_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        message TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        uuid TEXT NOT NULL UNIQUE,
        timestamp REAL NOT NULL,
        exit_code INTEGER,
        healthy INTEGER,
        PRIMARY KEY (task_id, seq)
    );
    CREATE TABLE queue (
        task_id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        submitted_at REAL NOT NULL,
        pending_reason TEXT NOT NULL DEFAULT ''
    );
    """,
]

LATEST = len(MIGRATIONS)
