"""Package rendering: cosmos's rules (COMPAT.md §5), pure."""

from __future__ import annotations

import json

import pytest

from dcosd.errors import ValidationError
from dcosd.master.packages.model import Package, check_config_schema
from dcosd.master.packages.render import (
    LABEL_METADATA,
    LABEL_NAME,
    LABEL_OPTIONS,
    LABEL_SOURCE,
    LABEL_VERSION,
    OptionsError,
    RenderError,
    decode_label,
    defaults_from_schema,
    merge,
    render,
    render_template,
    valid_app_id,
)
from dcosd.master.packages.repository import default_repository

SCHEMA = {
    "type": "object",
    "properties": {
        "service": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "hello"},
                "cmd": {"type": "string", "default": "echo hi"},
            },
        },
        "nodes": {
            "type": "object",
            "properties": {
                "count": {"type": "integer", "minimum": 1, "default": 2},
                "cpus": {"type": "number", "default": 0.5},
                "placement": {
                    "type": "object",
                    "properties": {"unique": {"type": "boolean", "default": True}},
                },
                "tags": {"type": "array", "items": {"type": "string"}, "default": ["a", "b"]},
            },
        },
        "nodefault": {"type": "string"},
        "extra": {"type": "object", "default": {"k": "v"}},
    },
}

TEMPLATE = """{
  "id": "/{{service.name}}",
  "cmd": "{{service.cmd}}",
  "cpus": {{nodes.cpus}},
  "mem": 32,
  "instances": {{nodes.count}},
  "constraints": [{{#nodes.placement.unique}}["hostname", "UNIQUE"]{{/nodes.placement.unique}}],
  "env": {"TAGS": "{{#nodes.tags}}{{.}},{{/nodes.tags}}", "ICON": "{{resource.images.icon-small}}"},
  "labels": {"MINE": "yes", "DCOS_PACKAGE_NAME": "overridden"}
}"""

RESOURCE = {"images": {"icon-small": "http://example.com/i.png?a=1&b=<2>"}}

PACKAGE_JSON = {
    "packagingVersion": "3.0",
    "name": "hello",
    "version": "1.2.3",
    "maintainer": "me@example.com",
    "description": "Says hello.",
    "tags": ["greeting"],
    "postInstallNotes": "Enjoy.",
    "website": None,
    "notACosmosField": "x",
}


def make(config=SCHEMA, template=TEMPLATE, resource=RESOURCE, **kw) -> Package:
    return Package(
        name="hello",
        version="1.2.3",
        revision=0,
        package_json=PACKAGE_JSON,
        config=check_config_schema(config, "config.json") if config is not None else None,
        marathon_template=template,
        resource=resource,
        repository="test",
        source=kw.pop("source", "https://repo.example.com/repo.zip"),
    )


# --- defaults and merging -------------------------------------------------------------------

def test_defaults_from_schema_are_nested():
    assert defaults_from_schema(SCHEMA) == {
        "service": {"name": "hello", "cmd": "echo hi"},
        "nodes": {"count": 2, "cpus": 0.5, "placement": {"unique": True}, "tags": ["a", "b"]},
        "extra": {"k": "v"},
    }


def test_defaults_of_an_object_without_properties_or_default_are_absent():
    assert defaults_from_schema({"type": "object", "properties": {"x": {"type": "string"}}}) == {}
    assert defaults_from_schema({"type": "object"}) == {}


def test_render_with_defaults():
    app = render(make())
    assert app["id"] == "/hello"
    assert app["cmd"] == "echo hi"
    assert app["instances"] == 2
    assert app["cpus"] == 0.5
    assert app["constraints"] == [["hostname", "UNIQUE"]]
    assert app["env"]["TAGS"] == "a,b,"


def test_deep_merge_user_wins_and_objects_merge():
    app = render(make(), {"nodes": {"count": 5, "placement": {"unique": False}}})
    assert app["instances"] == 5
    assert app["cpus"] == 0.5  # sibling default kept
    assert app["constraints"] == []
    assert app["cmd"] == "echo hi"


def test_lists_are_replaced_not_merged():
    app = render(make(), {"nodes": {"tags": ["z"]}})
    assert app["env"]["TAGS"] == "z,"
    assert merge({"a": [1, 2], "b": {"c": 1}}, {"a": [3], "b": {"d": 2}}) == {"a": [3], "b": {"c": 1, "d": 2}}


def test_merge_does_not_alias_its_inputs():
    base = {"a": {"b": [1]}}
    out = merge(base, {"a": {"c": 2}})
    out["a"]["b"].append(9)
    assert base == {"a": {"b": [1]}}


def test_scalar_replaces_object_and_object_replaces_scalar():
    assert merge({"a": {"b": 1}}, {"a": 3}) == {"a": 3}
    assert merge({"a": 3}, {"a": {"b": 1}}) == {"a": {"b": 1}}


# --- validation -----------------------------------------------------------------------------

def test_validation_error_names_the_option_path_and_rule():
    with pytest.raises(OptionsError) as info:
        render(make(), {"nodes": {"count": -1}})
    assert "nodes.count: -1 is less than the minimum of 1" in str(info.value)
    assert info.value.errors == ["nodes.count: -1 is less than the minimum of 1"]
    assert isinstance(info.value, ValidationError)


def test_validation_reports_every_error_and_types():
    with pytest.raises(OptionsError) as info:
        render(make(), {"nodes": {"count": "three", "tags": ["ok", 7]}, "service": {"name": 1}})
    errors = info.value.errors
    assert "nodes.count: 'three' is not of type 'integer'" in errors
    assert "nodes.tags[1]: 7 is not of type 'string'" in errors
    assert "service.name: 1 is not of type 'string'" in errors


def test_required_option_is_named():
    schema = {"type": "object", "properties": {"db": {"type": "object", "properties": {
        "password": {"type": "string"}}, "required": ["password"]}}}
    with pytest.raises(OptionsError, match=r"db\.password: is required"):
        render(make(config=schema))
    render(make(config=schema, template='{"id": "/a", "env": {"P": "{{db.password}}"}}'), {"db": {"password": "s"}})


def test_additional_properties_refused_at_top_level():
    schema = dict(SCHEMA, additionalProperties=False)
    with pytest.raises(OptionsError, match=r"\(options\): Additional properties are not allowed \('bogus'"):
        render(make(config=schema), {"bogus": 1})


def test_draft3_boolean_required_is_accepted():
    schema = {"type": "object", "properties": {"x": {"type": "integer", "required": True},
                                               "y": {"type": "integer", "required": False, "default": 1}}}
    pkg = make(config=schema, template='{"id": "/a", "instances": {{x}}, "cpus": {{y}}}')
    with pytest.raises(OptionsError, match="x: is required"):
        render(pkg)
    assert render(pkg, {"x": 3})["instances"] == 3


def test_options_must_be_an_object():
    with pytest.raises(OptionsError, match="must be a JSON object"):
        render(make(), ["not", "an", "object"])  # type: ignore[arg-type]


def test_options_without_config_json_are_refused():
    pkg = make(config=None, template='{"id": "/plain", "cmd": "sleep 1"}')
    with pytest.raises(OptionsError, match="takes no options"):
        render(pkg, {"a": 1})
    app = render(pkg)  # no options: fine
    assert app["cmd"] == "sleep 1"
    assert decode_label(app["labels"][LABEL_OPTIONS]) == {}
    assert render(pkg, {})["id"] == "/plain"


# --- labels ---------------------------------------------------------------------------------

def test_labels():
    app = render(make(), {"nodes": {"count": 3}})
    labels = app["labels"]
    assert labels["MINE"] == "yes"
    assert labels[LABEL_NAME] == "hello"  # the package's labels win over the template's
    assert labels[LABEL_VERSION] == "1.2.3"
    assert labels[LABEL_SOURCE] == "https://repo.example.com/repo.zip"
    meta = decode_label(labels[LABEL_METADATA])
    assert meta == {
        "packagingVersion": "3.0",
        "name": "hello",
        "version": "1.2.3",
        "maintainer": "me@example.com",
        "description": "Says hello.",
        "tags": ["greeting"],
        "postInstallNotes": "Enjoy.",
        "images": {"icon-small": "http://example.com/i.png?a=1&b=<2>"},
    }
    options = decode_label(labels[LABEL_OPTIONS])
    assert options["nodes"]["count"] == 3
    assert options["nodes"]["cpus"] == 0.5  # the merged options, defaults included
    assert options["service"] == {"name": "hello", "cmd": "echo hi"}
    assert all(isinstance(v, str) for v in labels.values())


def test_source_override():
    app = render(make(), source="my-repo")
    assert app["labels"][LABEL_SOURCE] == "my-repo"


def test_labels_must_be_strings():
    pkg = make(template='{"id": "/a", "labels": {"n": 1}}')
    with pytest.raises(RenderError, match="labels"):
        render(pkg)


# --- mustache and JSON ----------------------------------------------------------------------

@pytest.mark.parametrize("text", ['say "hi" & <b>bye</b>', "back\\slash", "tab\tnew\nline", "ünïcødé ☃", "'single'"])
def test_strings_pass_through_unescaped(text):
    app = render(make(), {"service": {"cmd": text}})
    assert app["cmd"] == text


def test_resource_values_are_not_html_escaped():
    app = render(make())
    assert app["env"]["ICON"] == "http://example.com/i.png?a=1&b=<2>"


def test_triple_and_ampersand_tags_behave_like_double():
    out = render_template('{{a}}|{{{a}}}|{{&a}}', {"a": "<&>"})
    assert out == "<&>|<&>|<&>"


def test_booleans_render_as_json_and_work_in_sections():
    out = render_template('{{t}} {{f}} {{#t}}T{{/t}}{{#f}}F{{/f}}{{^f}}notF{{/f}}{{^t}}notT{{/t}}',
                          {"t": True, "f": False})
    assert out == "true false TnotF"


def test_numbers_and_null():
    assert render_template("{{i}} {{x}} {{z}} [{{n}}]", {"i": 3, "x": 0.25, "z": 0, "n": None}) == "3 0.25 0 []"


def test_template_that_renders_invalid_json():
    pkg = make(template='{\n  "id": "/a",\n  "cpus": {{nodes.cpus}}\n  "mem": 32\n}')
    with pytest.raises(RenderError) as info:
        render(pkg)
    message = str(info.value)
    assert "rendered invalid JSON" in message
    assert "line 4 column 3" in message
    assert "hello 1.2.3" in message


def test_template_must_render_an_object():
    with pytest.raises(RenderError, match="JSON object"):
        render(make(template='["/a"]'))


def test_bad_mustache_is_reported():
    with pytest.raises(RenderError, match="bad mustache template"):
        render(make(template='{"id": "/a"{{#open}}}'))


def test_partials_are_refused():
    with pytest.raises(RenderError, match="partials"):
        render(make(template='{{> /etc/passwd}}'))


def test_underscore_keys_are_refused():
    with pytest.raises(RenderError, match="not allowed"):
        render(make(template='{"id": "/{{service.name.__class__}}"}'))


def test_package_without_template_cannot_render():
    with pytest.raises(RenderError, match="no marathon.json.mustache"):
        render(make(template=None))


# --- app id ---------------------------------------------------------------------------------

def test_app_id_override():
    assert render(make(), app_id="/team/hello-2")["id"] == "/team/hello-2"
    assert render(make(), app_id="hello-3")["id"] == "/hello-3"


@pytest.mark.parametrize("bad", ["", "/", "Upper", "/a//b", "/a/../b", "-lead", "trail-", "sp ace", "/a/./b", "a_b", "/a\n"])
def test_app_id_override_is_validated(bad):
    assert not valid_app_id(bad)
    with pytest.raises(RenderError, match="not a valid Marathon path id"):
        render(make(), app_id=bad)


def test_rendered_app_id_is_validated():
    with pytest.raises(RenderError, match="rendered app id"):
        render(make(), {"service": {"name": "Not Valid"}})


# --- the shipped catalogue ------------------------------------------------------------------

CATALOGUE = default_repository()
CHANGED_OPTIONS = {
    "static-files": {"service": {"instances": 3, "user": "www-data"}, "http": {"directory": "/var/www"}},
    "redis": {"nodes": {"count": 3, "mem": 512}, "redis": {"appendonly": True, "extra_args": ["--loglevel", "verbose"]}},
    "memcached": {"nodes": {"count": 2}, "memcached": {"cache_mb": 32}},
    "kvstore": {"kv": {"persist": False}},
    "redis-counter": {"redis": {"app": "cache", "dns_server": "10.0.0.1:53"}},
    "offer-runner": {"tasks": {"count": 5, "cmd": "echo \"hi\""}, "scheduler": {"master": "http://10.0.0.1:5050"}},
}


def test_catalogue_has_packages():
    assert {"static-files", "redis"} <= set(CATALOGUE.names())
    assert set(CHANGED_OPTIONS) >= set(CATALOGUE.names()), "add changed options for every catalogue package"


@pytest.mark.parametrize("pkg", CATALOGUE.latest(), ids=lambda p: p.name)
def test_catalogue_package_renders_with_defaults(pkg):
    app = render(pkg)
    assert app["id"].startswith("/")
    for key in ("cmd", "cpus", "mem", "instances", "portDefinitions", "healthChecks", "constraints"):
        assert key in app, key
    assert app["labels"][LABEL_NAME] == pkg.name
    assert app["labels"][LABEL_SOURCE] == "dcosd:catalogue"
    assert decode_label(app["labels"][LABEL_OPTIONS]) == defaults_from_schema(pkg.config or {})


@pytest.mark.parametrize("pkg", CATALOGUE.latest(), ids=lambda p: p.name)
def test_catalogue_package_renders_with_changed_options(pkg):
    default = render(pkg)
    changed = render(pkg, CHANGED_OPTIONS[pkg.name], app_id="/custom/" + pkg.name)
    assert changed["id"] == "/custom/" + pkg.name
    assert changed != default
    json.dumps(changed)


def test_redis_options_reach_the_app():
    redis = CATALOGUE.get("redis")
    app = render(redis, CHANGED_OPTIONS["redis"])
    assert app["instances"] == 3
    assert app["mem"] == 512
    assert app["constraints"] == [["hostname", "UNIQUE"]]
    assert "--appendonly yes" in app["cmd"]
    assert app["cmd"].endswith("'--loglevel' 'verbose'")
    with pytest.raises(OptionsError, match="nodes.count: 0 is less than the minimum of 1"):
        render(redis, {"nodes": {"count": 0}})
    with pytest.raises(OptionsError, match="redis.maxmemory_policy"):
        render(redis, {"redis": {"maxmemory_policy": "whatever"}})


def test_static_files_options_reach_the_app():
    app = render(CATALOGUE.get("static-files"), CHANGED_OPTIONS["static-files"])
    assert app["instances"] == 3
    assert app["user"] == "www-data"
    assert '--directory "/var/www"' in app["cmd"]
    assert "user" not in render(CATALOGUE.get("static-files"))
