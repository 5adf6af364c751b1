"""Apps declare VIPs the DC/OS way (portDefinitions[].labels VIP_n): validated on submit, on every instance's spec."""

from __future__ import annotations

import json

import pytest

from dcosd.master.services.appdef import AppInvalid, parse_app
from dcosd.master.services.framework import task_spec
from dcosd.model.resources import Resources
from dcosd.vips.table import LABEL, parse_label


def _app(**kw):
    return parse_app({"id": "/grp/web", "cmd": "serve", **kw})


def test_vip_labels_of_port_definitions_become_the_dcosd_vips_label_of_each_instance():
    app = _app(portDefinitions=[{"port": 0, "labels": {"VIP_0": "/grp/web:80"}},
                                {"port": 0, "name": "admin"},
                                {"port": 0, "labels": {"VIP_1": "/web-admin:8080", "other": "x"}}])
    spec = task_spec(app, "v1", Resources.of(cpus=1, ports=[(31000, 31002)]))
    bindings = parse_label(spec["labels"][LABEL])
    assert [(b.port_index, b.vip.key) for b in bindings] == [(0, "/grp/web:80"), (2, "/web-admin:8080")]
    assert spec["labels"]["DCOSD_DISCOVERY_NAME"] == "web.grp"


def test_an_app_without_vip_labels_gets_no_label():
    spec = task_spec(_app(portDefinitions=[{"port": 0, "labels": {"x": "y"}}]), "v1", Resources.of(cpus=1))
    assert LABEL not in spec["labels"]


@pytest.mark.parametrize("vip, says", [("web", "/name:port"), ("/web:0", "portDefinitions[0].labels.VIP_0"),
                                       ("1.2.3.4:80", "portDefinitions[0].labels.VIP_0")])
def test_a_malformed_vip_label_is_refused_with_422_naming_the_field(vip, says):
    with pytest.raises(AppInvalid) as exc:
        _app(portDefinitions=[{"port": 0, "labels": {"VIP_0": vip}}])
    assert exc.value.http_status == 422 and says in str(exc.value)
    assert "portDefinitions[0].labels.VIP_0" in str(exc.value)


def test_a_stored_app_with_a_bad_vip_label_still_launches_without_it():
    app = _app()
    app["portDefinitions"] = [{"port": 0, "protocol": "tcp", "labels": {"VIP_0": "nonsense"}}]
    spec = task_spec(app, "v1", Resources.of(cpus=1, ports=[(31000, 31000)]))
    assert LABEL not in spec["labels"] and json.dumps(spec)
