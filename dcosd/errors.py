"""The dcosd error tree.

    DcosdError                      anything dcosd reports to a user, with a clear message
    ├── ConfigError                 a setting or flag that cannot be used
    ├── ValidationError             a request or definition that is malformed (HTTP 400/422)
    ├── NotFound                    an unknown task, agent, framework ... (HTTP 404)
    ├── Conflict                    the request clashes with existing state (HTTP 409)
    ├── Unauthorized                missing or wrong credentials (HTTP 401)
    ├── NotLeader                   this master cannot serve the write; ``leader`` says who can
    ├── Unavailable                 a peer (master, agent) cannot be reached (HTTP 503)
    ├── StorageError                the state database cannot be read or written (disk full, corrupt)
    └── ExecutorError               a task could not be launched or controlled by the backend

Third-party errors are wrapped at the boundary with ``raise ... from exc`` so the
CLI can print one line and exit non-zero, never a traceback.
"""

from __future__ import annotations


class DcosdError(Exception):
    http_status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(DcosdError):
    http_status = 400
    exit_code = 2


class ValidationError(DcosdError):
    http_status = 400
    exit_code = 2


class NotFound(DcosdError):
    http_status = 404
    exit_code = 3


class Conflict(DcosdError):
    http_status = 409
    exit_code = 4


class Unauthorized(DcosdError):
    http_status = 401
    exit_code = 5


class NotLeader(DcosdError):
    http_status = 503

    def __init__(self, message: str = "this master is not the leader", leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class Unavailable(DcosdError):
    http_status = 503
    exit_code = 6


class StorageError(DcosdError):
    http_status = 507


class ExecutorError(DcosdError):
    pass
