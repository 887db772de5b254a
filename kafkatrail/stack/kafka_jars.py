"""Apache Kafka's broker jars, resolved from Maven Central once per version and cached outside git.

The cache folder `<cache_dir>/<version>/` holds `lib/` and `manifest.json` (the SHA-256 of every jar).
A cache whose manifest does not match its jars is treated as corrupt and fetched again; a warm, intact
cache never runs Maven.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kafkatrail.stack.processes import StackError

MAVEN_TIMEOUT_S = 600


class KafkaJars:
    """The jar folder for one Kafka version."""

    def __init__(self, cache_dir: Path, version: str, pom: Path) -> None:
        self.version = version
        self.pom = pom
        self.root = cache_dir / version
        self.lib = self.root / "lib"
        self.manifest = self.root / "manifest.json"

    @property
    def classpath(self) -> str:
        return f"{self.lib.resolve()}/*"

    def problem(self) -> str | None:
        """Why the cache cannot be used as it is, or None when it is complete and intact."""
        if not self.manifest.is_file():
            return "not fetched yet" if not self.lib.exists() else "manifest.json is missing"
        try:
            expected: dict[str, str] = json.loads(self.manifest.read_text())
        except ValueError:
            return "manifest.json is not valid JSON"
        present = {jar.name for jar in self.lib.glob("*.jar")}
        if missing := sorted(set(expected) - present):
            return f"{missing[0]} is missing"
        for name, digest in expected.items():
            if _sha256(self.lib / name) != digest:
                return f"{name} does not match its checksum"
        return None

    def ensure(self, say: Callable[[str], object] = print) -> Path:
        """Return the lib folder, fetching it with Maven if it is absent or corrupt."""
        problem = self.problem()
        if problem is None:
            return self.lib
        if problem != "not fetched yet":
            say(f"kafka jar cache {self.root} is corrupt ({problem}); fetching it again")
        self.fetch(problem)
        return self.lib

    def fetch(self, why: str = "not fetched yet") -> None:
        """Resolve the broker's jars with Maven into a fresh lib folder and write the manifest."""
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(
                f"Kafka {self.version}'s jars are needed ({self.root}: {why}) but `mvn` is not on PATH; "
                "install Maven (apt-get install maven) and run again"
            )
        if not self.pom.is_file():
            raise StackError(
                f"{self.pom} not found; run kafkatrail from its source checkout or set KAFKATRAIL_STACK__POM"
            )
        staging = self.root / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "maven.log"
        argv = [
            mvn, "-B", "-f", str(self.pom), f"-Dkafka.version={self.version}",
            "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={staging.resolve()}",
        ]
        print(f"fetching Kafka {self.version} jars from Maven Central (log: {log})", file=sys.stderr)
        try:
            with log.open("wb") as out:
                result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=MAVEN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise StackError(
                f"Maven did not finish resolving Kafka {self.version} within {MAVEN_TIMEOUT_S} s (log: {log}); "
                "check that Maven Central is reachable"
            ) from None
        if result.returncode != 0:
            raise StackError(
                f"Maven could not resolve Kafka {self.version}'s jars: {_first_error(log)} (full log: {log}); "
                "check the version exists on Maven Central and that Maven can reach it (proxy in ~/.m2/settings.xml)"
            )
        shutil.rmtree(self.lib, ignore_errors=True)
        self.manifest.unlink(missing_ok=True)
        staging.rename(self.lib)
        digests = {jar.name: _sha256(jar) for jar in sorted(self.lib.glob("*.jar"))}
        self.manifest.write_text(json.dumps(digests, indent=1))


def _sha256(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        return ""


def _first_error(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("[ERROR]"):
            return line.removeprefix("[ERROR]").strip()[:300]
    return "no [ERROR] line in the log"
