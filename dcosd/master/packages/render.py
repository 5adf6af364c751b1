"""Render a Universe package into a Marathon app definition — pure, no I/O.

The steps follow cosmos (COMPAT.md §5), in this order:

1. defaults: every ``default`` in the options schema (config.json), nested objects recursively;
2. deep merge of the user's options over the defaults (objects merge, everything else is replaced);
3. validation of the merged options against the schema; every error names its option path;
4. mustache context = merged options + ``resource`` (resource.json), strings JSON-escaped so they
   can sit inside a JSON string literal, booleans printed as ``true``/``false``;
5. mustache rendering with HTML escaping off and partials refused;
6. the result parsed as JSON (an object), its ``id`` optionally overridden and checked;
7. labels DCOS_PACKAGE_* added over the template's own labels.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any, Mapping

import chevron
import chevron.tokenizer
import jsonschema

from dcosd.errors import ValidationError
from dcosd.master.packages.model import Package

LABEL_NAME = "DCOS_PACKAGE_NAME"
LABEL_VERSION = "DCOS_PACKAGE_VERSION"
LABEL_SOURCE = "DCOS_PACKAGE_SOURCE"
LABEL_METADATA = "DCOS_PACKAGE_METADATA"
LABEL_OPTIONS = "DCOS_PACKAGE_OPTIONS"

# The package.json fields cosmos copies into DCOS_PACKAGE_METADATA (label.v1 PackageMetadata),
# in its order; ``images`` comes from resource.json.
_METADATA_FIELDS = ("packagingVersion", "name", "version", "maintainer", "description", "tags", "selected",
                    "scm", "website", "framework", "preInstallNotes", "postInstallNotes",
                    "postUninstallNotes", "licenses")

# Marathon's PathId segment rule.
_SEGMENT_RE = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$")


class RenderError(ValidationError):
    """The package cannot be rendered: a template problem, or an app that is not an app."""


class OptionsError(ValidationError):
    """The user's options do not fit the package's options schema; ``errors`` lists each problem."""

    def __init__(self, package: str, errors: list[str]) -> None:
        super().__init__(f"invalid options for package {package}: " + "; ".join(errors))
        self.errors = errors


# ---------------------------------------------------------------------------------------------
# options

def defaults_from_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The document of all ``default`` values in a schema's ``properties``, nesting preserved.

    As cosmos: a property with a ``default`` takes it; otherwise a property with its own
    ``properties`` becomes an object of its nested defaults (possibly empty).
    """
    out: dict[str, Any] = {}
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return out
    for name, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        if "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        elif isinstance(sub.get("properties"), Mapping):
            out[name] = defaults_from_schema(sub)
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: ``override`` wins; objects merge key by key; lists and scalars are replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def option_path(path: Any) -> str:
    """``["nodes", "count"]`` → ``nodes.count``; list positions as ``[i]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def validate_options(schema: Mapping[str, Any], options: Mapping[str, Any]) -> list[str]:
    """Every way ``options`` breaks ``schema``, as ``"<option path>: <rule broken>"`` lines."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
    try:
        validator = cls(schema)
        found = sorted(validator.iter_errors(options), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    except (jsonschema.exceptions.SchemaError, jsonschema.exceptions.UnknownType, TypeError) as exc:
        raise RenderError(f"the package's options schema cannot be used: {exc}") from exc
    lines = []
    for error in found:
        where = option_path(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, Mapping):
            # Name the missing option itself, not its parent object.
            missing = [r for r in error.validator_value if r not in error.instance]
            if len(missing) == 1:
                lines.append(f"{option_path([*error.absolute_path, missing[0]])}: is required")
                continue
        lines.append(f"{where or '(options)'}: {error.message}")
    return lines


def resolve_options(package: Package, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults merged with the user's options and validated: what the template sees (minus resource)."""
    if options is not None and not isinstance(options, Mapping):
        raise OptionsError(package.name, ["(options): must be a JSON object"])
    if package.config is None:
        if options:
            raise OptionsError(package.name, [f"(options): package {package.name} {package.version} "
                                              "takes no options (it has no config.json)"])
        return {}
    merged = merge(defaults_from_schema(package.config), options or {})
    errors = validate_options(package.config, merged)
    if errors:
        raise OptionsError(package.name, errors)
    return merged


# ---------------------------------------------------------------------------------------------
# mustache

class _JsonBool:
    """A boolean that mustache prints as JSON does (``true``/``false``) and sections still test."""

    # chevron returns falsy scopes carrying this flag as they are (instead of '').
    _CHEVRON_return_scope_when_falsy = True

    def __init__(self, value: bool) -> None:
        self.value = value

    def __bool__(self) -> bool:
        return self.value

    def __str__(self) -> str:
        return "true" if self.value else "false"


def _mustache_context(value: Any) -> Any:
    """JSON values → what chevron renders as cosmos does.

    Strings are JSON-string-escaped without the surrounding quotes, so ``"{{x}}"`` in a template
    stays valid JSON whatever the user typed (quotes, backslashes, newlines) and decodes back to
    exactly that text; ``&``, ``<`` and ``>`` are left alone.
    """
    if isinstance(value, bool):
        return _JsonBool(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if isinstance(value, Mapping):
        return {k: _mustache_context(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mustache_context(v) for v in value]
    return value


def _tokens(template: str, where: str) -> list[tuple[str, str]]:
    try:
        tokens = list(chevron.tokenizer.tokenize(template))
    except chevron.ChevronError as exc:
        raise RenderError(f"{where}: bad mustache template: {exc}") from exc
    out = []
    for tag, key in tokens:
        if tag == "partial":
            raise RenderError(f"{where}: mustache partials ({{{{> {key}}}}}) are not supported")
        if tag in ("variable", "no escape", "section", "inverted section", "end") and any(
            part.startswith("_") for part in key.split(".")
        ):
            raise RenderError(f"{where}: mustache key {key!r} is not allowed (names starting with '_')")
        # HTML escaping off: every {{x}} renders like {{{x}}}.
        out.append(("no escape", key) if tag == "variable" else (tag, key))
    return out


def render_template(template: str, context: Mapping[str, Any], where: str = "marathon.json.mustache") -> str:
    """Render ``template`` with the JSON ``context``; no HTML escaping, no partials, no file access."""
    tokens = _tokens(template, where)
    try:
        return chevron.render(tokens, _mustache_context(dict(context)), partials_path=None, partials_dict={})
    except RenderError:
        raise
    except Exception as exc:  # chevron's lookups can raise on odd templates; report, don't crash
        raise RenderError(f"{where}: mustache rendering failed: {type(exc).__name__}: {exc}") from exc


def _parse_app(text: str, where: str) -> dict[str, Any]:
    try:
        app = json.loads(text)
    except json.JSONDecodeError as exc:
        start = max(0, exc.pos - 40)
        excerpt = text[start:exc.pos + 40].replace("\n", "\\n")
        raise RenderError(
            f"{where} rendered invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos}), near: {excerpt!r}"
        ) from exc
    if not isinstance(app, dict):
        raise RenderError(f"{where} must render a JSON object (a Marathon app), got {type(app).__name__}")
    return app


# ---------------------------------------------------------------------------------------------
# app id and labels

def valid_app_id(app_id: Any) -> bool:
    """A Marathon path id: ``/group/app`` with lowercase letters, digits, ``-`` and ``.`` per segment."""
    if not isinstance(app_id, str) or not app_id.strip("/") or len(app_id) > 512:
        return False
    return all(_SEGMENT_RE.fullmatch(seg) for seg in app_id.strip("/").split("/"))


def normalise_app_id(app_id: str) -> str:
    return "/" + app_id.strip("/")


def encode_label(value: Any) -> str:
    """Base64 of compact UTF-8 JSON with null-valued keys dropped (cosmos's label encoding)."""
    def drop_nulls(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: drop_nulls(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [drop_nulls(x) for x in v]
        return v
    data = json.dumps(drop_nulls(value), ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(data.encode("utf-8")).decode("ascii")


def decode_label(value: str) -> Any:
    return json.loads(base64.b64decode(value).decode("utf-8"))


def package_metadata(package: Package) -> dict[str, Any]:
    """The package.json subset cosmos stores in DCOS_PACKAGE_METADATA, plus resource images."""
    meta = {k: package.package_json[k] for k in _METADATA_FIELDS if k in package.package_json}
    meta.setdefault("packagingVersion", package.packaging_version)
    meta.setdefault("tags", [])
    if package.resource and isinstance(package.resource.get("images"), Mapping):
        meta["images"] = dict(package.resource["images"])
    return meta


def package_labels(package: Package, options: Mapping[str, Any], source: str | None = None) -> dict[str, str]:
    return {
        LABEL_METADATA: encode_label(package_metadata(package)),
        LABEL_NAME: package.name,
        LABEL_VERSION: package.version,
        LABEL_SOURCE: source if source is not None else package.source,
        LABEL_OPTIONS: encode_label(dict(options)),
    }


# ---------------------------------------------------------------------------------------------
# the whole thing

def render(
    package: Package,
    options: Mapping[str, Any] | None = None,
    *,
    app_id: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The Marathon app definition that installing ``package`` with ``options`` creates.

    ``app_id`` overrides the template's ``id`` (``--app-id``); ``source`` overrides the
    repository URL written to DCOS_PACKAGE_SOURCE (default: the package's own).
    Raises OptionsError for options that do not fit, RenderError for everything else.
    """
    where = f"{package.name} {package.version}: marathon.json.mustache"
    if package.marathon_template is None:
        raise RenderError(f"package {package.name} {package.version} has no marathon.json.mustache: "
                          "it cannot be installed as a service")
    if app_id is not None and not valid_app_id(app_id):
        raise RenderError(f"app id {app_id!r} is not a valid Marathon path id (segments of a-z, 0-9, "
                          "'-' and '.', not starting or ending with '-' or '.')")

    options_merged = resolve_options(package, options)
    context = merge(options_merged, {"resource": package.resource}) if package.resource is not None \
        else options_merged
    app = _parse_app(render_template(package.marathon_template, context, where), where)

    if app_id is not None:
        app["id"] = normalise_app_id(app_id)
    if not valid_app_id(app.get("id")):
        raise RenderError(f"{where}: the rendered app id {app.get('id')!r} is not a valid Marathon path id")

    labels = app.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise RenderError(f"{where}: \"labels\" must render as an object of strings, got {json.dumps(labels)}")
    app["labels"] = {**labels, **package_labels(package, options_merged, source)}
    return app
