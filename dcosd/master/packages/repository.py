"""Universe repositories: loading them (directory, file:// URL, zip, JSON, http(s)) and a catalogue of them.

Loading is split in two: a *source* lists and reads files (a directory, a zip in memory) with size
limits, and one pure builder turns ``packages/<L>/<name>/<revision>/`` files into ``Package``s.
``fetch_repository`` downloads over http(s) and hands the bytes to the same builder.

A ``Catalogue`` keeps repositories in priority order; the first repository that has a package
name wins, for describe and for search alike.
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Protocol

from dcosd.errors import Conflict, NotFound, Unavailable, ValidationError
from dcosd.master.packages.model import (
    NAME_RE,
    PACKAGE_FILES,
    Package,
    RepositoryError,
    package_from_files,
    package_from_json_entry,
    parse_json,
    version_key,
)

__all__ = [
    "Catalogue", "Limits", "Package", "Repository", "RepositoryError", "DEFAULT_CATALOGUE_DIR",
    "DEFAULT_REPOSITORY_NAME", "DEFAULT_REPOSITORY_URL", "default_repository", "fetch_repository",
    "load_bytes", "load_directory", "load_repository", "load_zip",
]

DEFAULT_CATALOGUE_DIR = Path(__file__).resolve().parent / "catalogue"
DEFAULT_REPOSITORY_NAME = "dcosd"
# A stable identifier for DCOS_PACKAGE_SOURCE: the directory moves with every install
# (and with every start of a one-file binary), the catalogue does not.
DEFAULT_REPOSITORY_URL = "dcosd:catalogue"

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


@dataclass(frozen=True)
class Limits:
    """Sizes past which a repository is refused rather than read (zip bombs, runaway files)."""

    file_bytes: int = 4 * 1024 * 1024          # one package file, or one zip entry we read
    total_bytes: int = 256 * 1024 * 1024       # all package files of one repository, uncompressed
    download_bytes: int = 128 * 1024 * 1024    # an http(s) body, or a file:// archive on disk
    entries: int = 100_000                     # zip entries, or package revision directories


DEFAULT_LIMITS = Limits()


# ---------------------------------------------------------------------------------------------
# sources: list files, read one

class _Source(Protocol):
    label: str

    def files(self) -> Iterable[str]: ...

    def read(self, path: str, limit: int) -> bytes: ...

    def display(self, path: str) -> str: ...


def _safe_member(name: str) -> bool:
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        return False
    if len(name) > 1 and name[1] == ":":  # C:foo
        return False
    return all(part not in ("..",) for part in name.split("/"))


class _ZipSource:
    def __init__(self, data: bytes, label: str, limits: Limits) -> None:
        self.label = label
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
            raise RepositoryError(f"not a readable zip archive: {exc}", label) from exc
        if len(infos) > limits.entries:
            raise RepositoryError(f"too many entries ({len(infos)} > {limits.entries})", label)
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if not _safe_member(info.filename):
                raise RepositoryError(f"unsafe path in archive entry {info.filename!r} (absolute or '..')", label)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise RepositoryError(f"archive entry {info.filename!r} is a symbolic link", label)
            self._infos[info.filename] = info

    def files(self) -> Iterable[str]:
        return self._infos.keys()  # directories too, with their trailing '/'

    def display(self, path: str) -> str:
        return f"{self.label}!{path}"

    def read(self, path: str, limit: int) -> bytes:
        info = self._infos[path]
        where = self.display(path)
        if info.file_size > limit:
            raise RepositoryError(f"too large ({info.file_size} bytes > {limit})", where)
        try:
            with self._zip.open(info) as f:
                data = f.read(limit + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise RepositoryError(f"cannot be read from the archive: {exc}", where) from exc
        if len(data) > limit:
            raise RepositoryError(f"too large (more than {limit} bytes)", where)
        return data


class _DirectorySource:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.label = str(root)

    def files(self) -> Iterable[str]:
        # Only the four levels the layout has; anything deeper is not ours to read.
        for prefix in ("packages", "repo/packages"):
            base = self.root / prefix
            if not base.is_dir():
                continue
            yield prefix + "/"
            for letter in _subdirs(base):
                for name in _subdirs(letter):
                    for rev in _subdirs(name):
                        for f in sorted(rev.iterdir()):
                            if f.name in PACKAGE_FILES:
                                yield f.relative_to(self.root).as_posix()
                        yield rev.relative_to(self.root).as_posix() + "/"

    def display(self, path: str) -> str:
        return str(Path(self.label) / path)

    def read(self, path: str, limit: int) -> bytes:
        full = self.root / path
        where = self.display(path)
        try:
            real = full.resolve(strict=True)
            if not real.is_relative_to(self.root):
                raise RepositoryError("is a link that leads outside the repository", where)
            if not real.is_file():
                raise RepositoryError("is not a regular file", where)
            size = real.stat().st_size
            if size > limit:
                raise RepositoryError(f"too large ({size} bytes > {limit})", where)
            with open(real, "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise RepositoryError(f"cannot be read: {exc.strerror or exc}", where) from exc
        if len(data) > limit:
            raise RepositoryError(f"too large (more than {limit} bytes)", where)
        return data


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise RepositoryError(f"cannot be listed: {exc.strerror or exc}", str(path)) from exc


# ---------------------------------------------------------------------------------------------
# the builder

@dataclass
class Repository:
    """The packages of one repository, by name, each name's revisions oldest first."""

    name: str
    url: str
    packages: dict[str, list[Package]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.packages)

    def revisions(self, name: str) -> list[Package]:
        return list(self.packages.get(name, []))

    def versions(self, name: str) -> list[str]:
        """Distinct versions of ``name``, newest first."""
        seen: list[str] = []
        for pkg in reversed(self.packages.get(name, [])):
            if pkg.version not in seen:
                seen.append(pkg.version)
        return seen

    def get(self, name: str, version: str | None = None) -> Package | None:
        """The newest revision of ``name`` (with ``version`` if given), or None."""
        for pkg in reversed(self.packages.get(name, [])):
            if version is None or pkg.version == version:
                return pkg
        return None

    def latest(self) -> list[Package]:
        return [self.packages[n][-1] for n in self.names()]


def _find_root(paths: list[str], label: str) -> str:
    """The prefix under which ``packages/`` lives: '', 'repo/', '<top>/' or '<top>/repo/'."""
    candidates = ["", "repo/"]
    tops = {p.split("/", 1)[0] for p in paths if "/" in p}
    if len(tops) == 1:
        top = next(iter(tops))
        candidates += [f"{top}/", f"{top}/repo/"]
    for prefix in candidates:
        if any(p.startswith(prefix + "packages/") for p in paths):
            return prefix
    raise RepositoryError("no packages/ directory (expected packages/<L>/<name>/<revision>/package.json, "
                          "optionally under repo/ or one top-level directory)", label)


def _build(source: _Source, name: str, url: str, limits: Limits) -> Repository:
    paths = list(source.files())
    root = _find_root(paths, source.label)
    # revision directory → {file name: path}
    revisions: dict[tuple[str, str, str], dict[str, str]] = {}
    for path in paths:
        if not path.startswith(root + "packages/"):
            continue
        parts = PurePosixPath(path[len(root):]).parts  # packages, L, name, rev, file
        if len(parts) < 4 or any(p.startswith(".") for p in parts):
            continue
        if len(parts) == 4 and not path.endswith("/"):
            continue  # a stray file beside the revision directories
        key = (parts[1], parts[2], parts[3])
        files = revisions.setdefault(key, {})
        if len(parts) == 5 and parts[4] in PACKAGE_FILES:
            files[parts[4]] = path
    if len(revisions) > limits.entries:
        raise RepositoryError(f"too many package revisions ({len(revisions)} > {limits.entries})", source.label)

    repo = Repository(name=name, url=url)
    total = 0
    for (letter, pkg_name, rev), files in sorted(revisions.items()):
        where = f"{root}packages/{letter}/{pkg_name}/{rev}"
        if not NAME_RE.fullmatch(pkg_name):
            raise RepositoryError(f"{pkg_name!r} is not a valid package name "
                                  "(lowercase letters, digits and '-')", source.display(where))
        if not rev.isdigit():
            raise RepositoryError(f"revision directory {rev!r} is not a number", source.display(where))
        contents: dict[str, bytes] = {}
        for fname, path in files.items():
            data = source.read(path, limits.file_bytes)
            total += len(data)
            if total > limits.total_bytes:
                raise RepositoryError(f"package files add up to more than {limits.total_bytes} bytes",
                                      source.label)
            contents[fname] = data
        pkg = package_from_files(contents, name=pkg_name, revision=int(rev), where=source.display(where),
                                 repository=name, source=url)
        repo.packages.setdefault(pkg.name, []).append(pkg)
    for revs in repo.packages.values():
        revs.sort(key=lambda p: (p.revision, version_key(p.version)))
        _check_unique_revisions(revs, source.label)
    return repo


def _check_unique_revisions(revs: list[Package], label: str) -> None:
    for a, b in zip(revs, revs[1:]):
        if a.revision == b.revision:
            raise RepositoryError(f"package {a.name} has revision {a.revision} twice ({a.path} and {b.path})",
                                  label)


def _build_from_json(data: bytes, label: str, name: str, url: str, limits: Limits) -> Repository:
    doc = parse_json(data, label)
    if not isinstance(doc, dict) or not isinstance(doc.get("packages"), list):
        raise RepositoryError('a JSON repository must be an object with a "packages" list', label)
    if len(doc["packages"]) > limits.entries:
        raise RepositoryError(f"too many packages ({len(doc['packages'])} > {limits.entries})", label)
    repo = Repository(name=name, url=url)
    for i, entry in enumerate(doc["packages"]):
        pkg = package_from_json_entry(entry, index=i, where=label, repository=name, source=url)
        repo.packages.setdefault(pkg.name, []).append(pkg)
    for pkg_name, revs in repo.packages.items():
        unnumbered = [p for p in revs if p.revision < 0]
        if unnumbered and len(unnumbered) != len(revs):
            raise RepositoryError(f"package {pkg_name}: some entries have a releaseVersion and some do not", label)
        if unnumbered:
            # No release numbers at all: the version strings decide the order.
            revs.sort(key=lambda p: version_key(p.version))
            revs[:] = [dataclasses.replace(p, revision=i) for i, p in enumerate(revs)]
        revs.sort(key=lambda p: (p.revision, version_key(p.version)))
        _check_unique_revisions(revs, label)
    return repo


# ---------------------------------------------------------------------------------------------
# public loaders

def _default_name(url: str) -> str:
    path = urllib.parse.urlparse(url).path if "://" in url else url
    stem = PurePosixPath(path.rstrip("/")).name
    for ext in (".zip", ".json"):
        stem = stem.removesuffix(ext)
    return stem or "repository"


def load_directory(path: str | os.PathLike[str], name: str | None = None, url: str | None = None,
                   limits: Limits = DEFAULT_LIMITS) -> Repository:
    root = Path(path)
    if not root.is_dir():
        raise RepositoryError("is not a directory", str(root))
    url = url or root.resolve().as_uri()
    return _build(_DirectorySource(root), name or _default_name(str(root.resolve())), url, limits)


def load_zip(data: bytes | str | os.PathLike[str], name: str | None = None, url: str | None = None,
             limits: Limits = DEFAULT_LIMITS) -> Repository:
    """A zip archive, given as its bytes or its path."""
    if isinstance(data, (bytes, bytearray)):
        label = url or "<zip archive>"
        blob = bytes(data)
    else:
        label = str(data)
        blob = _read_local(Path(data), limits)
        url = url or Path(data).resolve().as_uri()
    return _build(_ZipSource(blob, label, limits), name or _default_name(label), url or label, limits)


def load_bytes(data: bytes, url: str, name: str | None = None, limits: Limits = DEFAULT_LIMITS) -> Repository:
    """A downloaded repository: a zip archive or a JSON repository, told apart by content."""
    if len(data) > limits.download_bytes:
        raise RepositoryError(f"too large ({len(data)} bytes > {limits.download_bytes})", url)
    name = name or _default_name(url)
    if data.startswith(_ZIP_MAGIC) or data.startswith(_EMPTY_ZIP_MAGIC):
        return _build(_ZipSource(data, url, limits), name, url, limits)
    if data.lstrip()[:1] in (b"{", b"\xef"):
        return _build_from_json(data, url, name, url, limits)
    raise RepositoryError("neither a zip archive nor a JSON repository", url)


def _read_local(path: Path, limits: Limits) -> bytes:
    try:
        size = path.stat().st_size
        if size > limits.download_bytes:
            raise RepositoryError(f"too large ({size} bytes > {limits.download_bytes})", str(path))
        return path.read_bytes()
    except OSError as exc:
        raise RepositoryError(f"cannot be read: {exc.strerror or exc}", str(path)) from exc


def file_url_path(url: str) -> Path:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "file":
        raise RepositoryError("not a file:// URL", url)
    if parsed.netloc not in ("", "localhost"):
        raise RepositoryError(f"file:// URLs must name a local path (host {parsed.netloc!r} given)", url)
    return Path(urllib.parse.unquote(parsed.path))


def load_repository(source: str | os.PathLike[str], name: str | None = None,
                    limits: Limits = DEFAULT_LIMITS) -> Repository:
    """A local repository: a directory, a zip or JSON file, as a path or a ``file://`` URL.

    http(s) URLs need the network: use ``fetch_repository``.
    """
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        raise RepositoryError("http(s) repositories are fetched with fetch_repository()", text)
    if "://" in text:
        path, url = file_url_path(text), text
    else:
        path = Path(text)
        url = path.resolve().as_uri()
    if path.is_dir():
        return load_directory(path, name=name, url=url, limits=limits)
    if not path.exists():
        raise RepositoryError("no such file or directory", str(path))
    return load_bytes(_read_local(path, limits), url, name=name, limits=limits)


async def fetch_repository(url: str, name: str | None = None, *, limits: Limits = DEFAULT_LIMITS,
                           timeout: float = 60.0, session: Any = None) -> Repository:
    """Download an http(s) (or file://) repository and load it.

    Network failures raise ``Unavailable``; a body that is not a repository, ``RepositoryError``.
    """
    if url.startswith("file://"):
        return load_repository(url, name=name, limits=limits)
    if not url.startswith(("http://", "https://")):
        raise RepositoryError("repository URLs are http://, https:// or file://", url)
    import aiohttp  # the network side only; loading stays importable without it

    own = session is None
    if own:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        headers = {"Accept": "application/zip, application/vnd.dcos.universe.repo+json, application/json"}
        async with session.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise RepositoryError(f"HTTP {resp.status} {resp.reason}", url)
            if resp.content_length is not None and resp.content_length > limits.download_bytes:
                raise RepositoryError(f"too large ({resp.content_length} bytes > {limits.download_bytes})", url)
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > limits.download_bytes:
                    raise RepositoryError(f"too large (more than {limits.download_bytes} bytes)", url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"{url}: cannot fetch the repository: {type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            await session.close()
    return load_bytes(bytes(body), url, name=name, limits=limits)


def default_repository() -> Repository:
    """The catalogue shipped inside dcosd."""
    return load_directory(DEFAULT_CATALOGUE_DIR, name=DEFAULT_REPOSITORY_NAME, url=DEFAULT_REPOSITORY_URL)


# ---------------------------------------------------------------------------------------------
# the catalogue: repositories in priority order

class Catalogue:
    """Repositories in priority order; for every package name the first repository having it wins."""

    def __init__(self, repositories: Iterable[Repository] = ()) -> None:
        self._repos: list[Repository] = []
        for repo in repositories:
            self.add(repo)

    def repositories(self) -> list[Repository]:
        return list(self._repos)

    def add(self, repo: Repository, index: int | None = None) -> None:
        """Add at ``index`` (0 = highest priority); at the end (lowest) by default."""
        if any(r.name == repo.name for r in self._repos):
            raise Conflict(f"a package repository named {repo.name!r} already exists")
        if any(r.url == repo.url for r in self._repos):
            raise Conflict(f"a package repository with URL {repo.url!r} already exists")
        if index is None:
            self._repos.append(repo)
        else:
            if not 0 <= index <= len(self._repos):
                raise ValidationError(f"repository index {index} is out of range 0..{len(self._repos)}")
            self._repos.insert(index, repo)

    def replace(self, repo: Repository) -> None:
        """Swap in a freshly loaded repository of the same name, keeping its priority."""
        for i, r in enumerate(self._repos):
            if r.name == repo.name:
                self._repos[i] = repo
                return
        raise NotFound(f"no package repository named {repo.name!r}")

    def remove(self, name: str) -> Repository:
        for i, r in enumerate(self._repos):
            if r.name == name or r.url == name:
                return self._repos.pop(i)
        raise NotFound(f"no package repository named {name!r}")

    def _owner(self, name: str) -> Repository | None:
        for repo in self._repos:
            if name in repo.packages:
                return repo
        return None

    def search(self, term: str = "") -> list[dict[str, Any]]:
        """Packages whose name, description or a tag contains ``term`` (case-insensitive; ``*`` globs).

        One result per name — the newest revision from the highest-priority repository having it.
        """
        import fnmatch

        needle = term.strip().lower()
        if needle and "*" in needle:
            def hit(text: str) -> bool:
                return fnmatch.fnmatchcase(text.lower(), needle)
        else:
            def hit(text: str) -> bool:
                return needle in text.lower()
        results = []
        names = sorted({n for repo in self._repos for n in repo.packages})
        for name in names:
            repo = self._owner(name)
            assert repo is not None
            pkg = repo.packages[name][-1]
            if not needle or hit(pkg.name) or hit(pkg.description) or any(hit(t) for t in pkg.tags):
                results.append({**pkg.summary(), "versions": repo.versions(name)})
        return results

    def describe(self, name: str, version: str | None = None) -> Package:
        """The package ``name`` (newest revision, or newest with ``version``) from the first repository."""
        repo = self._owner(name)
        if repo is None:
            raise NotFound(f"package {name!r} is not in any repository")
        pkg = repo.get(name, version)
        if pkg is None:
            raise NotFound(f"package {name!r} has no version {version!r} in repository {repo.name!r} "
                           f"(versions: {', '.join(repo.versions(name))})")
        return pkg

    def versions(self, name: str) -> list[str]:
        repo = self._owner(name)
        if repo is None:
            raise NotFound(f"package {name!r} is not in any repository")
        return repo.versions(name)
