"""DNS label rules of Mesos-DNS (records/labels, RFC 1123 flavour). Pure: stdlib only.

A *label* is one component of a name: ASCII letters are lower-cased, digits kept,
``.``, ``_`` and ``-`` become ``-``, everything else (spaces, ``$``, non-ASCII…) is
dropped; leading ``-`` are trimmed, the result is cut at 63 characters and trailing
``-`` trimmed. When trimming at the cut leaves room, Mesos-DNS refills it from the
characters after the cut (so ``hello----…----f`` keeps its ``f``); we do the same.

Mesos-DNS can, in a corner of that refill, end a label with ``-`` (``ab--c-d`` cut
at 4 → ``abc-``); we trim once more so a label never ends with ``-``, as RFC 1123 wants.

A *domain fragment* (framework names, discovery names) keeps its dots: the name is
split at ``.``, each part made a label, empty parts dropped.
"""

from __future__ import annotations

import functools
import re

MAX_LABEL = 63
# A name on the wire is at most 255 octets: 253 characters in dotted form plus the root.
MAX_NAME = 253

_TABLE: dict[int, int | None] = {}
for _c in range(128):
    _ch = chr(_c)
    if "a" <= _ch <= "z" or "0" <= _ch <= "9":
        _TABLE[_c] = _c
    elif "A" <= _ch <= "Z":
        _TABLE[_c] = _c + 32
    elif _ch in ".-_":
        _TABLE[_c] = ord("-")
    else:
        _TABLE[_c] = None

_VALID_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?")


@functools.lru_cache(maxsize=65536)
def _label_ok(part: str) -> bool:
    return _VALID_LABEL.fullmatch(part) is not None


def label(name: str, maxlen: int = MAX_LABEL) -> str:
    """``name`` mangled into one DNS label (may be empty when nothing usable is left)."""
    mapped = name.encode("ascii", "ignore").decode("ascii").translate(_TABLE)
    trimmed = mapped.lstrip("-")
    size = min(len(trimmed), maxlen)
    head = trimmed[:size].rstrip("-")
    if len(head) == size:
        return head
    tail = trimmed[size:].lstrip("-")
    if tail:
        head += tail[: size - len(head)]
    return head.rstrip("-")


def domain_frag(name: str) -> str:
    """``name`` as one or more labels joined by dots (empty parts dropped)."""
    return ".".join(lab for part in name.split(".") if (lab := label(part)))


def valid_name(name: str) -> bool:
    """Whether a dotted name (trailing dot optional) can be put on the wire.

    Every label 1..63 characters of ``[a-z0-9_-]`` not starting or ending with ``-``
    (the ``_`` is for SRV service labels), the whole name at most 253 characters.
    """
    body = name[:-1] if name.endswith(".") else name
    if not 0 < len(body) <= MAX_NAME:
        return False
    for part in body.split("."):
        if not _label_ok(part):
            return False
    return True


def slave_id_tail(agent_id: str) -> str:
    """The last ``-`` field of an agent id, lower-cased: ``…-S3`` → ``s3`` (as Mesos-DNS)."""
    return label(agent_id.rsplit("-", 1)[-1])
