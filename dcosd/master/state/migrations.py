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
    # 2: two-level scheduling — frameworks, their unacknowledged status updates, executors, role
    # weights and quotas, dynamic reservations; tasks remember the role and reservation-keyed
    # resources they were allocated (to return them to the allocator when they end).
    """
    CREATE TABLE frameworks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        user TEXT NOT NULL DEFAULT '',
        roles TEXT NOT NULL,
        info TEXT NOT NULL,
        failover_timeout REAL NOT NULL DEFAULT 0,
        active INTEGER NOT NULL DEFAULT 1,
        registered_at REAL NOT NULL,
        reregistered_at REAL,
        disconnected_at REAL,
        removed_at REAL
    );
    CREATE TABLE framework_updates (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        framework_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        status TEXT
    );
    CREATE INDEX framework_updates_by_fw ON framework_updates(framework_id, seq);
    CREATE TABLE executors (
        framework_id TEXT NOT NULL,
        executor_id TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        role TEXT NOT NULL,
        alloc TEXT NOT NULL,
        info TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (framework_id, executor_id, agent_id)
    );
    CREATE TABLE role_weights (role TEXT PRIMARY KEY, weight REAL NOT NULL);
    CREATE TABLE role_quotas (role TEXT PRIMARY KEY, limits TEXT NOT NULL);
    CREATE TABLE reservations (
        agent_id TEXT NOT NULL,
        role TEXT NOT NULL,
        resources TEXT NOT NULL,
        PRIMARY KEY (agent_id, role)
    );
    ALTER TABLE tasks ADD COLUMN role TEXT;
    ALTER TABLE tasks ADD COLUMN alloc TEXT;
    ALTER TABLE tasks ADD COLUMN executor_id TEXT;
    -- Every status of a task of an external framework after STAGING is queued for that framework
    -- until it acknowledges it; in the same transaction as the status, so none is ever missed.
    CREATE TRIGGER framework_status_update AFTER INSERT ON task_statuses
    WHEN NEW.state != 'TASK_STAGING'
    BEGIN
        INSERT OR IGNORE INTO framework_updates (uuid, framework_id, task_id)
        SELECT NEW.uuid, t.framework_id, NEW.task_id FROM tasks t JOIN frameworks f ON f.id = t.framework_id
        WHERE t.id = NEW.task_id AND f.removed_at IS NULL;
    END;
    """,
    # 3: the replicated log (master/replog). raft_hard_state, raft_log and raft_snapshot belong to this
    # master's Raft node and are never copied between masters; raft_applied is part of the replicated
    # state: it advances in the same transaction that applies each committed entry.
    """
    CREATE TABLE raft_hard_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        term INTEGER NOT NULL,
        vote TEXT,
        commit_index INTEGER NOT NULL,
        rejoining INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE raft_log (
        idx INTEGER PRIMARY KEY,
        term INTEGER NOT NULL,
        kind INTEGER NOT NULL DEFAULT 0,
        data BLOB NOT NULL
    );
    CREATE TABLE raft_snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        idx INTEGER NOT NULL,
        term INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE raft_applied (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        idx INTEGER NOT NULL,
        term INTEGER NOT NULL
    );
    """,
    # 4: machine operations — nodes in maintenance (drained: no new placements), the record of every
    # `node exec` run (who, what, where, each node's result).
    """
    CREATE TABLE node_maintenance (
        agent_id TEXT PRIMARY KEY,
        since REAL NOT NULL,
        who TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE exec_runs (
        id TEXT PRIMARY KEY,
        who TEXT NOT NULL,
        command TEXT NOT NULL,
        targets TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        results TEXT,
        failed INTEGER
    );
    CREATE INDEX exec_runs_by_time ON exec_runs(started_at);
    """,
    # 5: the built-in job framework (master/jobs) — job definitions, their cron schedules with the next
    # fire time, runs (status, attempts, current task, times, exit code), one row per attempt, and the
    # fire times that did not start a run (missed, past the starting deadline, FORBID).
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE job_schedules (
        job_id TEXT NOT NULL,
        id TEXT NOT NULL,
        spec TEXT NOT NULL,
        next_fire_at REAL,
        last_fire_at REAL,
        last_action TEXT,
        PRIMARY KEY (job_id, id)
    );
    CREATE TABLE job_runs (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        status TEXT NOT NULL,
        run_spec TEXT NOT NULL,
        trigger TEXT NOT NULL,
        schedule_id TEXT,
        scheduled_for REAL,
        created_at REAL NOT NULL,
        waiting_since REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        task_id TEXT,
        exit_code INTEGER,
        stop_reason TEXT,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX job_runs_by_job ON job_runs(job_id, created_at);
    CREATE INDEX job_runs_by_status ON job_runs(status);
    CREATE TABLE job_run_tasks (
        run_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        task_id TEXT NOT NULL UNIQUE,
        agent_id TEXT NOT NULL,
        launched_at REAL NOT NULL,
        ended_at REAL,
        state TEXT,
        exit_code INTEGER,
        message TEXT,
        PRIMARY KEY (run_id, attempt)
    );
    CREATE TABLE job_schedule_skips (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        schedule_id TEXT NOT NULL,
        due_at REAL NOT NULL,
        action TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX job_schedule_skips_by_job ON job_schedule_skips(job_id, seq);
    """,
    # 6: the built-in service framework (master/services) — apps (the target definition, its version and
    # the version of its last config change, which its instances carry), every version for rollback,
    # groups with their dependencies, and running deployments (their plan and current step).
    """
    CREATE TABLE apps (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        version TEXT NOT NULL,
        config_version TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE app_versions (
        app_id TEXT NOT NULL,
        version TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (app_id, version)
    );
    CREATE TABLE app_groups (
        id TEXT PRIMARY KEY,
        dependencies TEXT NOT NULL,
        version TEXT NOT NULL
    );
    CREATE TABLE deployments (
        id TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        plan TEXT NOT NULL,
        current_step INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE INDEX tasks_by_framework ON tasks(framework_id, state);
    """,
    # 7: package repositories (master/packages) in priority order (position 0 first). The catalogue
    # shipped inside dcosd is a row like any other, last, so removing it is a committed change too.
    """
    CREATE TABLE package_repositories (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,
        position INTEGER NOT NULL
    );
    INSERT INTO package_repositories (name, url, position) VALUES ('dcosd', 'dcosd:catalogue', 0);
    """,
    # 8: the queue in submission order, and the tasks that have no reason why they wait yet: the
    # scheduler asks for those every 0.25 s, which read (and sorted) the whole queue when it was long.
    """
    CREATE INDEX queue_by_time ON queue(submitted_at, task_id);
    CREATE INDEX queue_without_reason ON queue(submitted_at, task_id) WHERE pending_reason = '';
    """,
    # 9: why a queued task waits is computed when it is read (views.py), no longer written to
    # queue.pending_reason: the index of tasks without one only cost every submit a page.
    """
    DROP INDEX queue_without_reason;
    """,
    # 10: the queue keyed by task_id itself (WITHOUT ROWID): a rowid table kept a second B-tree for the
    # task_id key, so every submit and every placement wrote one more page than the rows need.
    """
    CREATE TABLE queue_by_id (
        task_id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        submitted_at REAL NOT NULL,
        pending_reason TEXT NOT NULL DEFAULT ''
    ) WITHOUT ROWID;
    INSERT INTO queue_by_id (task_id, spec, submitted_at, pending_reason)
        SELECT task_id, spec, submitted_at, pending_reason FROM queue;
    DROP TABLE queue;
    ALTER TABLE queue_by_id RENAME TO queue;
    CREATE INDEX queue_by_time ON queue(submitted_at, task_id);
    """,
    # 11: whose state this is. raft_node belongs to this master alone (never copied, like the other
    # raft_* node tables): the --id it first started with. cluster is replicated: the cluster's id,
    # chosen by its first leader. A data directory started as another master, or brought into another
    # cluster, is refused instead of mixing two histories (master/ha.py, replog/storage.py).
    """
    CREATE TABLE raft_node (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        node_id TEXT NOT NULL
    );
    CREATE TABLE cluster (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cluster_id TEXT NOT NULL
    );
    """,
]

LATEST = len(MIGRATIONS)
