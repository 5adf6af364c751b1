"""One package revision of a Universe repository, parsed and checked — pure, no I/O.

A ``Package`` is built from the bytes of its files (``package_from_files``, the directory
and zip layouts) or from one entry of a JSON repository (``package_from_json_entry``).
Every problem is a ``RepositoryError`` that names the file it was found in, so an operator
can fix the repository without guessing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import jsonschema

from dcosd.errors import ValidationError

PACKAGE_JSON = "package.json"
CONFIG_JSON = "config.json"
MARATHON_TEMPLATE = "marathon.json.mustache"
RESOURCE_JSON = "resource.json"
PACKAGE_FILES = (PACKAGE_JSON, CONFIG_JSON, MARATHON_TEMPLATE, RESOURCE_JSON)

PACKAGING_VERSIONS = ("2.0", "3.0", "4.0")
# Universe's own rule for package names (repo/meta/schema/package-schema.json).
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])*$")

_PACKAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "version", "description"],
    "properties": {
        "packagingVersion": {"type": "string", "enum": list(PACKAGING_VERSIONS)},
        "name": {"type": "string", "pattern": NAME_RE.pattern},
        "version": {"type": "string", "minLength": 1, "maxLength": 128},
        "maintainer": {"type": "string"},
        "description": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "framework": {"type": "boolean"},
        "selected": {"type": "boolean"},
        "preInstallNotes": {"type": "string"},
        "postInstallNotes": {"type": "string"},
        "postUninstallNotes": {"type": "string"},
    },
}


class RepositoryError(ValidationError):
    """A repository (or one of its files) that cannot be used; the message names the file."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


@dataclass(frozen=True)
class Package:
    """One revision of one package, as found in one repository."""

    name: str
    version: str
    revision: int
    package_json: Mapping[str, Any]
    config: Mapping[str, Any] | None = None
    marathon_template: str | None = None
    resource: Mapping[str, Any] | None = None
    # Where it came from: the repository's name and its URL (DCOS_PACKAGE_SOURCE).
    repository: str = ""
    source: str = ""
    path: str = field(default="", compare=False)

    @property
    def description(self) -> str:
        return str(self.package_json.get("description", ""))

    @property
    def tags(self) -> list[str]:
        return list(self.package_json.get("tags", []))

    @property
    def packaging_version(self) -> str:
        return str(self.package_json.get("packagingVersion", "2.0"))

    @property
    def framework(self) -> bool:
        return bool(self.package_json.get("framework", False))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "revision": self.revision,
            "description": self.description,
            "tags": self.tags,
            "framework": self.framework,
            "selected": bool(self.package_json.get("selected", False)),
            "repository": self.repository,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "package": dict(self.package_json),
            "revision": self.revision,
            "config": self.config,
            "resource": self.resource,
            "marathonTemplate": self.marathon_template,
            "repository": self.repository,
            "source": self.source,
        }


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order version strings the way people read them: ``1.10.0 > 1.9.2 > 1.9.2-rc1``-ish.

    Numeric runs compare as numbers and sort above text runs, so ``2.0`` beats ``2.0-beta``
    only when followed by more numbers; good enough for a tie-break when a repository gives
    no revision numbers.
    """
    parts: list[tuple[int, int | str]] = []
    for run in re.findall(r"\d+|[A-Za-z]+", version):
        parts.append((1, int(run)) if run.isdigit() else (0, run.lower()))
    return tuple(parts)


def parse_json(data: bytes, path: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RepositoryError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RepositoryError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path) from exc


def check_package_json(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RepositoryError("must be a JSON object", path)
    error = jsonschema.exceptions.best_match(jsonschema.Draft4Validator(_PACKAGE_SCHEMA).iter_errors(data))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise RepositoryError(f"{where}: {error.message}", path)
    return data


def normalise_config_schema(schema: Any) -> Any:
    """Accept draft-3 style ``"required": true|false`` inside properties, as old Universe packages have.

    Draft 4 (what cosmos validates with) wants ``required`` as a list on the parent object; a
    boolean there would make the validator fail on the schema itself. The booleans are moved
    to the parent's list; nothing else changes.
    """
    if isinstance(schema, list):
        return [normalise_config_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            out[key] = {name: normalise_config_schema(sub) for name, sub in value.items()}
        else:
            out[key] = normalise_config_schema(value)
    props = schema.get("properties")
    if isinstance(props, dict):
        required = list(out["required"]) if isinstance(out.get("required"), list) else []
        for name, sub in props.items():
            if isinstance(sub, dict) and isinstance(sub.get("required"), bool):
                if sub["required"] and name not in required:
                    required.append(name)
                out["properties"][name] = {k: v for k, v in out["properties"][name].items() if k != "required"}
        if required:
            out["required"] = required
    if isinstance(out.get("required"), bool):
        del out["required"]
    return out


def check_config_schema(data: Any, path: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RepositoryError("must be a JSON Schema object", path)
    schema = normalise_config_schema(data)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise RepositoryError(f"not a valid JSON Schema at {where}: {exc.message}", path) from exc
    if schema.get("type", "object") != "object":
        raise RepositoryError("the options schema must describe an object (\"type\": \"object\")", path)
    return schema


def _check_identity(pkg: dict[str, Any], name: str | None, path: str) -> None:
    if name is not None and pkg["name"] != name:
        raise RepositoryError(f"name {pkg['name']!r} does not match its directory {name!r}", path)


def package_from_files(
    files: Mapping[str, bytes],
    *,
    name: str,
    revision: int,
    where: str,
    repository: str = "",
    source: str = "",
) -> Package:
    """Build a package from the bytes of the files of one ``packages/<L>/<name>/<revision>/`` directory.

    ``where`` is how error messages name that directory (``packages/R/redis/0``).
    """
    if PACKAGE_JSON not in files:
        raise RepositoryError("missing package.json", f"{where}/{PACKAGE_JSON}")
    pj_path = f"{where}/{PACKAGE_JSON}"
    pkg = check_package_json(parse_json(files[PACKAGE_JSON], pj_path), pj_path)
    _check_identity(pkg, name, pj_path)

    config = None
    if CONFIG_JSON in files:
        path = f"{where}/{CONFIG_JSON}"
        config = check_config_schema(parse_json(files[CONFIG_JSON], path), path)

    resource = None
    if RESOURCE_JSON in files:
        path = f"{where}/{RESOURCE_JSON}"
        resource = parse_json(files[RESOURCE_JSON], path)
        if not isinstance(resource, dict):
            raise RepositoryError("must be a JSON object", path)

    template = None
    if MARATHON_TEMPLATE in files:
        path = f"{where}/{MARATHON_TEMPLATE}"
        try:
            template = files[MARATHON_TEMPLATE].decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RepositoryError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc

    return Package(
        name=pkg["name"],
        version=pkg["version"],
        revision=revision,
        package_json=pkg,
        config=config,
        marathon_template=template,
        resource=resource,
        repository=repository,
        source=source,
        path=where,
    )


# Keys of a JSON-repository entry that are not package.json fields.
_JSON_ENTRY_EXTRA = {"config", "resource", "marathon", "releaseVersion", "command", "minDcosReleaseVersion",
                     "upgradesFrom", "downgradesTo", "manager", "hasKnownIssues", "lastUpdated"}


def package_from_json_entry(
    entry: Any, *, index: int, where: str, repository: str = "", source: str = ""
) -> Package:
    """One element of ``packages`` in a JSON repository (Universe v3/v4 repository format).

    The marathon template is base64 in ``marathon.v2AppMustacheTemplate``; the options schema
    is ``config`` and the resource ``resource``; ``releaseVersion`` plays the revision's part.
    """
    path = f"{where}: packages[{index}]"
    if not isinstance(entry, dict):
        raise RepositoryError("must be a JSON object", path)
    pkg = {k: v for k, v in entry.items() if k not in _JSON_ENTRY_EXTRA}
    check_package_json(pkg, path)
    path = f"{where}: packages[{index}] ({pkg['name']} {pkg['version']})"

    # -1: no releaseVersion; the repository numbers such entries by version order.
    revision = entry.get("releaseVersion", -1)
    if "releaseVersion" in entry and (not isinstance(revision, int) or isinstance(revision, bool) or revision < 0):
        raise RepositoryError("releaseVersion must be a non-negative integer", path)

    config = None
    if entry.get("config") is not None:
        config = check_config_schema(entry["config"], f"{path}.config")

    resource = entry.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise RepositoryError("resource must be a JSON object", path)

    template = None
    marathon = entry.get("marathon")
    if marathon is not None:
        encoded = marathon.get("v2AppMustacheTemplate") if isinstance(marathon, dict) else None
        if not isinstance(encoded, str):
            raise RepositoryError("marathon.v2AppMustacheTemplate must be a base64 string", path)
        try:
            template = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise RepositoryError(f"marathon.v2AppMustacheTemplate is not base64 UTF-8 text: {exc}", path) from exc

    return Package(
        name=pkg["name"],
        version=pkg["version"],
        revision=revision,
        package_json=pkg,
        config=config,
        marathon_template=template,
        resource=resource,
        repository=repository,
        source=source,
        path=path,
    )
