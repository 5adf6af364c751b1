"""``--peers``: the static membership every master is started with (master/ha.py)."""

from __future__ import annotations

import pytest

from dcosd.errors import ConfigError
from dcosd.master.ha import parse_peers


def test_ids_map_to_urls_and_a_bare_host_port_means_http() -> None:
    assert parse_peers(" m1=http://h1:5050/ , m2=h2:5050,m3=https://h3") == {
        "m1": "http://h1:5050", "m2": "http://h2:5050", "m3": "https://h3"}


@pytest.mark.parametrize("text, says", [
    ("garbage", "expected ID=URL"),
    ("m1=,m2=http://h2:5050", "expected ID=URL"),
    ("=http://h1:5050", "expected ID=URL"),
    ("m1=http://h1:5050,m1=http://h2:5050", "'m1' given twice"),
    ("m1=http://h1:5050,m2=http://h1:5050/", "'m1' and 'm2' have the same address"),
    ("m1=http://h1,m2=http://h1:80", "'m1' and 'm2' have the same address"),
    ("m1=ftp://h1:21", "must be http:// or https://"),
    ("m1=http://h1:99999", "m1: http://h1:99999: Port out of range"),
    ("m1=http://h1:port", "m1: http://h1:port"),
    ("m1=http://:5050", "names no host"),
    ("m1=http://h1:5050?x=1", "scheme://host[:port][/path]"),
    ("m1=http://user:pw@h1:5050", "scheme://host[:port][/path]"),
    ("m 1=http://h1:5050", "the id 'm 1' may hold letters, digits"),
    ("m1\r\nX-Evil: 1=http://h1:5050", "may hold letters, digits"),
])
def test_a_bad_list_is_refused_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_peers(text)
    assert "--peers" in str(err.value) and says in str(err.value), err.value


def test_the_same_host_on_other_ports_is_three_masters() -> None:
    peers = parse_peers("m1=http://127.0.0.1:5051,m2=http://127.0.0.1:5052,m3=http://127.0.0.1:5053")
    assert len(peers) == 3
