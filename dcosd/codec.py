"""JSON on the hot paths: every replicated command is encoded once and decoded on every master.

orjson (C speed, bytes in and out) does the work; anything it refuses to encode (an int beyond 64
bits) or to decode (NaN, which the stdlib json module wrote into earlier logs) goes through json,
whose ValueError callers already handle. Unlike json, NaN and infinities encode as null (valid JSON;
validation keeps them out of commands anyway).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj, option=_OPTS)
    except TypeError:
        return json.dumps(obj).encode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # raises json.JSONDecodeError (a ValueError) for what is not JSON
