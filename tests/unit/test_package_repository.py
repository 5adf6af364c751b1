"""Universe repositories: layouts, sources, errors, the catalogue's priorities, search and versions."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from dcosd.errors import Conflict, NotFound
from dcosd.master.packages.render import render
from dcosd.master.packages.repository import (
    DEFAULT_CATALOGUE_DIR,
    Catalogue,
    Limits,
    RepositoryError,
    default_repository,
    load_bytes,
    load_directory,
    load_repository,
    load_zip,
)

TEMPLATE = '{"id": "/{{service.name}}", "cmd": "run {{service.name}}", "cpus": 0.1, "mem": 32, "instances": 1}'


def package_files(name: str, version: str, description: str = "", tags=(), config=True) -> dict[str, str]:
    files = {
        "package.json": json.dumps({"packagingVersion": "3.0", "name": name, "version": version,
                                    "maintainer": "m@example.com",
                                    "description": description or f"The {name} package.", "tags": list(tags)}),
        "marathon.json.mustache": TEMPLATE,
        "resource.json": "{}",
    }
    if config:
        files["config.json"] = json.dumps({"type": "object", "properties": {"service": {
            "type": "object", "properties": {"name": {"type": "string", "default": name}}}}})
    return files


def repo_files(packages: dict[tuple[str, int], dict[str, str]], prefix: str = "") -> dict[str, str]:
    """{(name, revision): files} → {relative path: text} in the Universe layout."""
    out = {}
    for (name, rev), files in packages.items():
        for fname, text in files.items():
            out[f"{prefix}packages/{name[0].upper()}/{name}/{rev}/{fname}"] = text
    return out


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
    return root


def make_zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, text in files.items():
            zf.writestr(rel, text)
    return buf.getvalue()


STANDARD = {
    ("redis", 0): package_files("redis", "6.0", "Key value store", ["database", "cache"]),
    ("redis", 1): package_files("redis", "6.2", "Key value store", ["database", "cache"]),
    ("redis", 2): package_files("redis", "7.0", "Key value store", ["database", "cache"]),
    ("nginx", 0): package_files("nginx", "1.25", "Web server and reverse proxy", ["http"]),
    ("hello-world", 0): package_files("hello-world", "0.1", "Says hello", ["example"], config=False),
}


@pytest.fixture
def standard_dir(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "repo", repo_files(STANDARD))


# --- sources --------------------------------------------------------------------------------

def test_load_directory(standard_dir: Path):
    repo = load_directory(standard_dir, name="std")
    assert repo.name == "std"
    assert repo.url == standard_dir.resolve().as_uri()
    assert repo.names() == ["hello-world", "nginx", "redis"]
    redis = repo.get("redis")
    assert (redis.version, redis.revision) == ("7.0", 2)
    assert redis.source == repo.url and redis.repository == "std"
    assert redis.config is not None and redis.resource == {}
    assert repo.get("hello-world").config is None
    assert repo.versions("redis") == ["7.0", "6.2", "6.0"]


def test_load_directory_under_repo_subdirectory(tmp_path: Path):
    root = write_tree(tmp_path / "universe", repo_files(STANDARD, prefix="repo/"))
    assert load_repository(root).names() == ["hello-world", "nginx", "redis"]


def test_load_file_url_directory(standard_dir: Path):
    url = standard_dir.resolve().as_uri()
    repo = load_repository(url, name="viaurl")
    assert repo.url == url
    assert repo.get("nginx").source == url


def test_load_file_url_with_escapes(tmp_path: Path):
    root = write_tree(tmp_path / "my repo", repo_files(STANDARD))
    url = root.resolve().as_uri()
    assert "%20" in url
    assert load_repository(url).names() == ["hello-world", "nginx", "redis"]


def test_file_url_with_a_host_is_refused():
    with pytest.raises(RepositoryError, match="local path"):
        load_repository("file://otherhost/srv/repo")


def test_load_zip_bytes_and_path_and_file_url(tmp_path: Path):
    data = make_zip(repo_files(STANDARD, prefix="universe-version-3.x/repo/"))
    assert load_zip(data, name="z").names() == ["hello-world", "nginx", "redis"]
    path = tmp_path / "repo.zip"
    path.write_bytes(data)
    repo = load_zip(path)
    assert repo.name == "repo" and repo.url == path.resolve().as_uri()
    assert load_repository(path.resolve().as_uri()).get("redis").version == "7.0"
    assert load_repository(str(path)).get("redis").version == "7.0"


def test_zip_with_packages_at_the_root():
    assert load_bytes(make_zip(repo_files(STANDARD)), "http://x/r.zip").names() == ["hello-world", "nginx", "redis"]


def test_json_repository():
    entries = []
    for rev, version in enumerate(["1.0", "2.0"]):
        entries.append({
            "packagingVersion": "4.0", "name": "web", "version": version, "releaseVersion": rev,
            "maintainer": "m", "description": "A web thing", "tags": ["http"],
            "config": {"type": "object", "properties": {"port": {"type": "integer", "default": 80}}},
            "resource": {"assets": {"uris": {}}},
            "marathon": {"v2AppMustacheTemplate": base64.b64encode(
                b'{"id": "/web", "cmd": "serve {{port}}", "cpus": 1, "mem": 32, "instances": 1}').decode()},
        })
    data = json.dumps({"packages": entries}).encode()
    repo = load_bytes(data, "https://example.com/repo.json")
    web = repo.get("web")
    assert web.version == "2.0" and web.revision == 1
    assert "releaseVersion" not in web.package_json and "marathon" not in web.package_json
    assert render(web, {"port": 8080})["cmd"] == "serve 8080"
    assert repo.get("web", "1.0").revision == 0


def test_json_repository_without_release_versions_orders_by_version():
    entries = [{"name": "web", "version": v, "description": "d"} for v in ("1.9.0", "1.10.0", "1.2.0")]
    repo = load_bytes(json.dumps({"packages": entries}).encode(), "https://example.com/repo.json")
    assert repo.versions("web") == ["1.10.0", "1.9.0", "1.2.0"]
    assert repo.get("web").revision == 2
    entries[0]["releaseVersion"] = 4
    with pytest.raises(RepositoryError, match="some entries have a releaseVersion"):
        load_bytes(json.dumps({"packages": entries}).encode(), "https://example.com/repo.json")


def test_json_repository_errors():
    with pytest.raises(RepositoryError, match='"packages" list'):
        load_bytes(b'{"nope": []}', "https://example.com/repo.json")
    bad = {"packages": [{"name": "web", "version": "1", "description": "d",
                         "marathon": {"v2AppMustacheTemplate": "%%%"}}]}
    with pytest.raises(RepositoryError, match=r"packages\[0\] \(web 1\).*base64"):
        load_bytes(json.dumps(bad).encode(), "https://example.com/repo.json")


def test_neither_zip_nor_json():
    with pytest.raises(RepositoryError, match="neither a zip archive nor a JSON repository"):
        load_bytes(b"<html>hello</html>", "https://example.com/")


def test_missing_path():
    with pytest.raises(RepositoryError, match="no such file or directory"):
        load_repository("/nonexistent/dcosd/repo")


def test_http_urls_need_fetch():
    with pytest.raises(RepositoryError, match="fetch_repository"):
        load_repository("https://example.com/repo.zip")


# --- malformed repositories -----------------------------------------------------------------

def test_bad_json_names_the_file(tmp_path: Path):
    files = repo_files({("redis", 0): package_files("redis", "1")})
    files["packages/R/redis/0/config.json"] = '{"type": "object",'
    root = write_tree(tmp_path / "r", files)
    with pytest.raises(RepositoryError) as info:
        load_directory(root)
    assert "packages/R/redis/0/config.json" in str(info.value)
    assert "invalid JSON" in str(info.value)
    assert info.value.path and info.value.path.endswith("packages/R/redis/0/config.json")


def test_missing_package_json_names_the_directory(tmp_path: Path):
    files = repo_files({("redis", 0): package_files("redis", "1")})
    files["packages/R/redis/1/config.json"] = "{}"
    with pytest.raises(RepositoryError, match=r"packages/R/redis/1/package.json: missing package.json"):
        load_directory(write_tree(tmp_path / "r", files))


def test_empty_revision_directory_is_missing_package_json(tmp_path: Path):
    root = write_tree(tmp_path / "r", repo_files({("redis", 0): package_files("redis", "1")}))
    (root / "packages/R/redis/1").mkdir()
    with pytest.raises(RepositoryError, match="redis/1/package.json: missing package.json"):
        load_directory(root)


def test_missing_package_json_in_zip_names_the_entry():
    files = repo_files({("redis", 0): package_files("redis", "1")})
    del files["packages/R/redis/0/package.json"]
    with pytest.raises(RepositoryError, match=r"repo.zip!packages/R/redis/0/package.json: missing"):
        load_bytes(make_zip(files), "http://h/repo.zip")


@pytest.mark.parametrize("change, message", [
    ({"name": "other"}, "does not match its directory"),
    ({"version": 3}, "version: 3 is not of type 'string'"),
    ({"tags": "x"}, "tags: 'x' is not of type 'array'"),
    ({"packagingVersion": "9.9"}, "packagingVersion"),
    ({"description": None}, "description"),
])
def test_bad_package_json_names_the_file_and_field(tmp_path: Path, change, message):
    files = package_files("redis", "1")
    pj = json.loads(files["package.json"])
    pj.update(change)
    files["package.json"] = json.dumps(pj)
    root = write_tree(tmp_path / "r", repo_files({("redis", 0): files}))
    with pytest.raises(RepositoryError, match=r"packages/R/redis/0/package.json: .*" + message.replace("(", r"\(")):
        load_directory(root)


def test_package_json_must_be_an_object(tmp_path: Path):
    files = package_files("redis", "1")
    files["package.json"] = "[1, 2]"
    with pytest.raises(RepositoryError, match="package.json: must be a JSON object"):
        load_directory(write_tree(tmp_path / "r", repo_files({("redis", 0): files})))


def test_invalid_config_schema(tmp_path: Path):
    files = package_files("redis", "1")
    files["config.json"] = json.dumps({"type": "object", "properties": {"n": {"type": "integr"}}})
    with pytest.raises(RepositoryError, match="config.json: not a valid JSON Schema"):
        load_directory(write_tree(tmp_path / "r", repo_files({("redis", 0): files})))


def test_non_numeric_revision(tmp_path: Path):
    files = repo_files({("redis", 0): package_files("redis", "1")})
    files = {k.replace("/0/", "/latest/"): v for k, v in files.items()}
    with pytest.raises(RepositoryError, match="revision directory 'latest' is not a number"):
        load_directory(write_tree(tmp_path / "r", files))


def test_bad_package_name(tmp_path: Path):
    files = repo_files({("Bad_Name", 0): package_files("Bad_Name", "1")})
    with pytest.raises(RepositoryError, match="not a valid package name"):
        load_directory(write_tree(tmp_path / "r", files))


def test_no_packages_directory(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryError, match="no packages/ directory"):
        load_directory(tmp_path / "empty")
    with pytest.raises(RepositoryError, match="no packages/ directory"):
        load_bytes(make_zip({"README.md": "hi"}), "http://h/r.zip")


def test_empty_packages_directory_is_an_empty_repository(tmp_path: Path):
    (tmp_path / "r/packages").mkdir(parents=True)
    assert load_directory(tmp_path / "r").names() == []


def test_not_utf8(tmp_path: Path):
    files: dict = repo_files({("redis", 0): package_files("redis", "1")})
    files["packages/R/redis/0/marathon.json.mustache"] = b"\xff\xfe bad"
    with pytest.raises(RepositoryError, match="marathon.json.mustache: not UTF-8"):
        load_directory(write_tree(tmp_path / "r", files))


def test_stray_files_and_extra_files_are_ignored(tmp_path: Path):
    files = repo_files({("redis", 0): package_files("redis", "1")})
    files["packages/README.md"] = "hi"
    files["packages/R/redis/NOTES"] = "hi"
    files["packages/R/redis/0/command.json"] = "{}"
    files["packages/R/.hidden/0/package.json"] = "not json"
    assert load_directory(write_tree(tmp_path / "r", files)).names() == ["redis"]


@pytest.mark.parametrize("entry", ["../evil/packages/R/redis/0/package.json", "/etc/passwd",
                                   "top/../../x", "packages\\R\\redis", "C:/x"])
def test_zip_path_traversal_is_refused(entry):
    files: dict = repo_files({("redis", 0): package_files("redis", "1")})
    files[entry] = "x"
    with pytest.raises(RepositoryError, match="unsafe path in archive entry"):
        load_bytes(make_zip(files), "http://h/r.zip")


def test_zip_symlink_entry_is_refused():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rel, text in repo_files({("redis", 0): package_files("redis", "1")}).items():
            zf.writestr(rel, text)
        info = zipfile.ZipInfo("packages/R/redis/0/resource.json.link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(RepositoryError, match="symbolic link"):
        load_bytes(buf.getvalue(), "http://h/r.zip")


def test_directory_symlink_out_of_the_repository_is_refused(tmp_path: Path):
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    root = write_tree(tmp_path / "r", repo_files({("redis", 0): package_files("redis", "1")}))
    os.symlink(secret, root / "packages/R/redis/0/resource.json.tmp")
    (root / "packages/R/redis/0/resource.json").unlink()
    os.rename(root / "packages/R/redis/0/resource.json.tmp", root / "packages/R/redis/0/resource.json")
    with pytest.raises(RepositoryError, match="resource.json: is a link that leads outside the repository"):
        load_directory(root)


def test_not_a_zip():
    with pytest.raises(RepositoryError, match="not a readable zip archive"):
        load_bytes(b"PK\x03\x04garbage", "http://h/r.zip")


def test_absurd_file_size_is_refused(tmp_path: Path):
    files = repo_files({("redis", 0): package_files("redis", "1", description="x" * 5000)})
    limits = Limits(file_bytes=1000)
    with pytest.raises(RepositoryError, match=r"package.json: too large \(\d+ bytes > 1000\)"):
        load_directory(write_tree(tmp_path / "r", files), limits=limits)
    with pytest.raises(RepositoryError, match=r"r.zip!packages/R/redis/0/package.json: too large"):
        load_bytes(make_zip(files), "http://h/r.zip", limits=limits)


def test_zip_bomb_total_is_refused():
    files = repo_files({("redis", i): package_files("redis", str(i), description="y" * 900) for i in range(20)})
    with pytest.raises(RepositoryError, match="add up to more than"):
        load_bytes(make_zip(files), "http://h/r.zip", limits=Limits(total_bytes=10_000))


def test_download_size_and_entry_limits():
    data = make_zip(repo_files(STANDARD))
    with pytest.raises(RepositoryError, match="too large"):
        load_bytes(data, "http://h/r.zip", limits=Limits(download_bytes=100))
    with pytest.raises(RepositoryError, match="too many entries"):
        load_bytes(data, "http://h/r.zip", limits=Limits(entries=3))


# --- the catalogue --------------------------------------------------------------------------

def two_repos(tmp_path: Path) -> tuple:
    first = load_directory(write_tree(tmp_path / "a", repo_files({
        ("redis", 0): package_files("redis", "5.0", "Redis from A", ["db"]),
        ("only-a", 0): package_files("only-a", "1", "Only in A"),
    })), name="A")
    second = load_directory(write_tree(tmp_path / "b", repo_files({
        ("redis", 0): package_files("redis", "6.0", "Redis from B"),
        ("redis", 1): package_files("redis", "7.0", "Redis from B"),
        ("only-b", 0): package_files("only-b", "1", "Only in B", ["queue"]),
    })), name="B")
    return first, second


def test_priorities_first_match_wins(tmp_path: Path):
    a, b = two_repos(tmp_path)
    cat = Catalogue([a, b])
    assert cat.describe("redis").version == "5.0"  # A first, even though B has newer versions
    assert cat.describe("redis").repository == "A"
    assert cat.describe("only-b").repository == "B"
    cat.remove("A")
    assert cat.describe("redis").version == "7.0"
    cat.add(a, index=0)
    assert cat.describe("redis").repository == "A"
    cat.remove("A")
    cat.add(a)  # at the end: lowest priority
    assert cat.describe("redis").repository == "B"
    assert [r.name for r in cat.repositories()] == ["B", "A"]


def test_catalogue_add_remove_errors(tmp_path: Path):
    a, b = two_repos(tmp_path)
    cat = Catalogue([a])
    with pytest.raises(Conflict):
        cat.add(a)
    with pytest.raises(NotFound):
        cat.remove("nope")
    with pytest.raises(Exception, match="out of range"):
        cat.add(b, index=5)
    assert cat.remove(a.url).name == "A"  # by URL too


def test_search(tmp_path: Path):
    a, b = two_repos(tmp_path)
    cat = Catalogue([a, b])
    names = lambda term: [r["name"] for r in cat.search(term)]  # noqa: E731
    assert names("") == ["only-a", "only-b", "redis"]
    assert names("REDIS") == ["redis"]
    assert names("only in") == ["only-a", "only-b"]  # description
    assert names("queue") == ["only-b"]  # tag
    assert names("db") == ["redis"]  # tag of the winning repository's package
    assert names("only-*") == ["only-a", "only-b"]
    assert names("nothing-matches") == []
    hit = cat.search("redis")[0]
    assert hit["repository"] == "A" and hit["version"] == "5.0" and hit["versions"] == ["5.0"]


def test_version_choice(tmp_path: Path):
    a, b = two_repos(tmp_path)
    cat = Catalogue([b])
    assert cat.describe("redis").version == "7.0"
    assert cat.describe("redis", "6.0").revision == 0
    assert cat.versions("redis") == ["7.0", "6.0"]
    with pytest.raises(NotFound, match=r"no version '9.9'.*versions: 7.0, 6.0"):
        cat.describe("redis", "9.9")
    with pytest.raises(NotFound, match="not in any repository"):
        cat.describe("nope")


def test_latest_by_revision_number_not_by_string_order(tmp_path: Path):
    packages = {("app", rev): package_files("app", f"1.{rev}") for rev in (2, 10, 9)}
    repo = load_directory(write_tree(tmp_path / "r", repo_files(packages)))
    assert repo.get("app").revision == 10
    assert repo.versions("app") == ["1.10", "1.9", "1.2"]


def test_same_version_in_two_revisions_picks_the_newer(tmp_path: Path):
    packages = {("app", 0): package_files("app", "1.0", "old"), ("app", 1): package_files("app", "1.0", "new")}
    repo = load_directory(write_tree(tmp_path / "r", repo_files(packages)))
    assert repo.get("app", "1.0").description == "new"
    assert repo.versions("app") == ["1.0"]


def test_default_catalogue_loads():
    repo = default_repository()
    assert repo.url == "dcosd:catalogue"
    assert (DEFAULT_CATALOGUE_DIR / "packages").is_dir()
    for pkg in repo.latest():
        assert pkg.config is not None and pkg.resource is not None and pkg.marathon_template
        assert pkg.source == "dcosd:catalogue"
