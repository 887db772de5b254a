"""References to repository files, in the repository's own text files, name files that exist.

A *reference* is a path written in a file the repository keeps (code, docstrings, comments, Markdown,
TOML, YAML, Makefile) that names a file of the repository:

- a path ending in one of `REFERENCE_SUFFIXES` that contains a `/` (`sinks/s3.py`, `deploy/trails.demo.yaml`;
  in a section reference such as `docs/cloudtrail.md §4` the path alone);
- one of the well-known root files of `ROOT_FILES`, written bare;
- the target of a Markdown link (the part in parentheses after the link text) that is not a URL or an
  anchor of the same page.

Not references: a bare name (`s3.py`, `trails.json`: too ambiguous, and tests use such names for files
they make under `tmp_path`); anything holding one of `IGNORED_CHARACTERS` (globs, placeholders, format
fields); anything under `IGNORED_FOLDERS` (generated or temporary files, S3 keys); absolute and home paths;
URLs; a path with a further suffix (`x.json.gz`, an S3 object); a path inside an installed third-party
package (its first folder is the import name of an installed distribution, such as `faust/...`, and no
folder of the repository).

A plain reference resolves against the repository root, the referencing file's folder, or a source package
(a folder of `[tool.setuptools.package-dir]` in pyproject.toml, by folder or by installed name:
`kafka/pom.xml` in `deploy/`, `kafkatrail/sinks/s3.py` as `sinks/s3.py`). A Markdown link resolves as a
browser resolves it: against the linking file's folder, or the root when it starts with `/`.

The repository's files are the ones git tracks plus untracked files it does not ignore, so a file just
written counts before it is added. Lines between one holding `reference-check: off` and one holding
`reference-check: on` are not scanned (the tables of this file).
"""

from __future__ import annotations

import importlib.metadata
import posixpath
import re
import subprocess
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]

SCANNED_SUFFIXES = (".py", ".pyx", ".md", ".toml", ".yaml", ".yml", ".properties")
SCANNED_NAMES = ("Makefile",)
SKIPPED_FOLDERS = ("tests/data/",)
REFERENCE_SUFFIXES = ("md", "py", "pyx", "avsc", "yaml", "yml", "toml", "xml", "properties", "json")
# reference-check: off
ROOT_FILES = ("README.md", "DESIGN.md", "CHANGELOG.md", "CONTRIBUTING.md", "SECURITY.md", "LICENSE",
              "pyproject.toml", "setup.py")
# reference-check: on
IGNORED_CHARACTERS = frozenset("*<>{}$%~")
IGNORED_FOLDERS = frozenset({".venv", ".cache", ".git", "build", "dist", "node_modules", "AWSLogs", "tmp"})
CHECK_OFF, CHECK_ON = "reference-check: " + "off", "reference-check: " + "on"

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_PATH_RUN = re.compile(r"[\w./*<>{}$%~-]+")
_REFERENCE = re.compile(r"(?:[\w.-]+/)*[\w-][\w.-]*\.(?:" + "|".join(REFERENCE_SUFFIXES) + ")")
_ROOT_FILE = re.compile(r"(?<![\w./-])(?:" + "|".join(re.escape(name) for name in ROOT_FILES) + r")(?![\w/-]|\.\w)")


class Reference(NamedTuple):
    """A path as written in a file, its line, and whether it is a Markdown link's target."""

    line: int
    path: str
    link: bool = False


class Repository(NamedTuple):
    """What references resolve against."""

    files: frozenset[str]  # every file, relative to the root, with `/`
    packages: dict[str, str]  # installed folder (`kafkatrail/sinks`) -> source folder (`sinks`)
    third_party: frozenset[str] = frozenset()  # import names of installed distributions

    @property
    def folders(self) -> frozenset[str]:
        """Every folder that holds one of the files, the root (`.`) included."""
        return folders_of(self.files)


def references(text: str) -> Iterator[Reference]:
    """Every reference to a repository file in `text`, line by line."""
    checking = True
    for number, line in enumerate(text.splitlines(), start=1):
        if CHECK_OFF in line or CHECK_ON in line:
            checking = CHECK_ON in line
            continue
        if not checking:
            continue
        line = _URL.sub(" ", line)
        for match in _LINK.finditer(line):
            target = match.group(1).split("#", 1)[0]
            if target and ":" not in target and not IGNORED_CHARACTERS & set(target):
                yield Reference(number, target, link=True)
        line = _LINK.sub(" ", line)
        for run in _PATH_RUN.findall(line):
            path = run.rstrip(".-")
            if "/" not in path or not _REFERENCE.fullmatch(path) or path.startswith("/"):
                continue
            if IGNORED_CHARACTERS & set(path) or path.split("/", 1)[0] in IGNORED_FOLDERS:
                continue
            yield Reference(number, path)
        for name in dict.fromkeys(match.group() for match in _ROOT_FILE.finditer(line)):
            yield Reference(number, name)


def package_folders(pyproject: str) -> dict[str, str]:
    """Installed folder (`kafkatrail/sinks`) -> source folder (`sinks`), from `[tool.setuptools.package-dir]`."""
    package_dir = tomllib.loads(pyproject).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return {name.replace(".", "/"): folder.strip("/") for name, folder in package_dir.items()}


def folders_of(files: Iterable[str]) -> frozenset[str]:
    folders = {"."}
    for name in files:
        parent = posixpath.dirname(name)
        while parent:
            folders.add(parent)
            parent = posixpath.dirname(parent)
    return frozenset(folders)


def candidates(reference: Reference, source: str, packages: dict[str, str]) -> list[str]:
    """The repository paths `reference`, written in the file `source`, may mean."""
    folder = posixpath.dirname(source)
    if reference.link:
        if reference.path.startswith("/"):
            return [posixpath.normpath(reference.path.lstrip("/"))]
        return [posixpath.normpath(posixpath.join(folder, reference.path))]
    found = [posixpath.normpath(reference.path), posixpath.normpath(posixpath.join(folder, reference.path))]
    for installed, source_folder in packages.items():
        found.append(posixpath.normpath(posixpath.join(source_folder, reference.path)))
        if reference.path.startswith(installed + "/"):
            found.append(posixpath.normpath(source_folder + reference.path[len(installed):]))
    return found


def in_third_party(reference: Reference, repository: Repository, folders: frozenset[str]) -> bool:
    """A plain path whose first folder is an installed distribution's import name and no repository folder."""
    first = reference.path.split("/", 1)[0]
    return not reference.link and first in repository.third_party and first not in folders


def broken_references(source: str, text: str, repository: Repository) -> list[str]:
    """`source:line: path` for each reference in `text` that names no file or folder of `repository`."""
    folders = repository.folders
    known = repository.files | folders
    return [f"{source}:{ref.line}: {ref.path}" for ref in references(text)
            if not in_third_party(ref, repository, folders)
            and not any(path in known for path in candidates(ref, source, repository.packages))]


def repository_files() -> frozenset[str]:
    """Every file git tracks or would track (untracked but not ignored) that is on disk now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return frozenset(name for name in listed if name and (REPO / name).is_file())


def third_party_names() -> frozenset[str]:
    """Top-level import names of the installed distributions, kafkatrail's own excepted."""
    return frozenset(name for name, distributions in importlib.metadata.packages_distributions().items()
                     if "kafkatrail" not in distributions)


def scanned(path: str) -> bool:
    """Whether the file `path` is scanned for references."""
    kept = path.endswith(SCANNED_SUFFIXES) or posixpath.basename(path) in SCANNED_NAMES
    return kept and not path.startswith(SKIPPED_FOLDERS)


# --- the rule, on table cases ----------------------------------------------------------------------------

# reference-check: off
TABLE_REPOSITORY = Repository(
    files=frozenset({"README.md", "docs/README.md", "docs/architecture.md", "sinks/s3.py", "deploy/kafka/pom.xml"}),
    packages={"kafkatrail": "kafkatrail", "kafkatrail/sinks": "sinks", "kafkatrail/deploy": "deploy"},
    third_party=frozenset({"faust"}),
)
CASES = [
    ("a reference that exists", "notes.md", "the argument is in sinks/s3.py", []),
    ("a section of a file that exists", "notes.md", "see docs/architecture.md section 2", []),
    ("a file that does not exist", "notes.md", "see spec/delivery.md §1.2", ["notes.md:1: spec/delivery.md"]),
    ("a well-known root file that does not exist", "a.py", "# as DESIGN.md asks", ["a.py:1: DESIGN.md"]),
    ("a URL", "notes.md", "https://docs.aws.amazon.com/awscloudtrail/latest/userguide/x.md", []),
    ("a glob", "Makefile", "$(wildcard schemas/*.pyx) docs/*.md", []),
    ("a placeholder", "notes.md", "AWSLogs/<account>/x.json and {prefix}/x.json", []),
    ("an S3 key with a further suffix", "t.py", 'key = "k/x.json.gz"', []),
    ("a bare name", "t.py", 'tmp_path / "trails.json"', []),
    ("a temporary path", "t.py", "/tmp/out/trails.json and .cache/keys/public-keys.json", []),
    ("a file of an installed package", "t.py", "see faust/transport/drivers/aiokafka.py", []),
    ("a Markdown link beside the file", "docs/README.md", "[arch](architecture.md#2-data-flow)", []),
    ("a broken Markdown link", "docs/README.md", "[ops](operations.md)", ["docs/README.md:1: operations.md"]),
    ("a link to a folder", "README.md", "[the docs](docs/)", []),
    ("a path inside a source package", "kafkatrail/core/settings.py", 'shipped("kafka/pom.xml")', []),
    ("an installed name", "README.md", "kafkatrail/sinks/s3.py", []),
    ("an installed name that does not exist", "README.md", "kafkatrail/settings.py",
     ["README.md:1: kafkatrail/settings.py"]),
    ("lines turned off", "t.py", f"# {CHECK_OFF}\nspec/a.md\n# {CHECK_ON}\nspec/b.md", ["t.py:4: spec/b.md"]),
]
# reference-check: on


@pytest.mark.parametrize(("source", "text", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_rule(source: str, text: str, expected: list[str]) -> None:
    assert broken_references(source, text, TABLE_REPOSITORY) == expected


def test_package_folders_come_from_pyproject() -> None:
    pyproject = '[tool.setuptools.package-dir]\n"kafkatrail" = "kafkatrail"\n"kafkatrail.sinks" = "sinks"\n'
    assert package_folders(pyproject) == {"kafkatrail": "kafkatrail", "kafkatrail/sinks": "sinks"}


# --- the repository --------------------------------------------------------------------------------------

def test_every_reference_names_a_file_of_the_repository() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the repository's files are not known")
    files = repository_files()
    repository = Repository(files, package_folders((REPO / "pyproject.toml").read_text()), third_party_names())
    broken = []
    for source in sorted(filter(scanned, files)):
        broken.extend(broken_references(source, (REPO / source).read_text(encoding="utf-8"), repository))
    assert not broken, f"{len(broken)} reference(s) to files that are not in the repository:\n" + "\n".join(broken)
