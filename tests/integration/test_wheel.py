"""kafkatrail as a user installs it: sdist and wheel built and checked, the wheel installed into a fresh venv, and
the CLI run from a folder outside the checkout (nothing may resolve a path from the source tree)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from kafkatrail import __version__
from tests.integration.test_cli_failures import RAW_LIBRDKAFKA_LINE

REPOSITORY = Path(__file__).resolve().parents[2]
JAR_CACHE = REPOSITORY / ".cache" / "kafka"


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel `python -m build` makes of the checkout (in an isolated build environment)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPOSITORY)], REPOSITORY)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_twine_accepts_the_sdist_and_the_wheel(distributions: dict[str, Path]) -> None:
    result = run([sys.executable, "-m", "twine", "check", "--strict", *map(str, distributions.values())],
                 REPOSITORY)
    print(result.stdout)
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_wheel_holds_one_top_level_package_and_its_run_time_files(distributions: dict[str, Path]) -> None:
    names = zipfile.ZipFile(distributions["wheel"]).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"kafkatrail", f"kafkatrail-{__version__}.dist-info"}, top_level
    for shipped in ("kafkatrail/deploy/kafka/pom.xml", "kafkatrail/deploy/kafka/log4j.properties",
                    "kafkatrail/deploy/trails.demo.yaml", "kafkatrail/schemas/cloudtrail_event.avsc",
                    "kafkatrail/py.typed", "kafkatrail/processors/dedupe_ids.pyi"):
        assert shipped in names
    assert any(re.fullmatch(r"kafkatrail/schemas/binary\..*\.so", name) for name in names), "compiled codec"
    assert any(re.fullmatch(r"kafkatrail/processors/dedupe_ids\..*\.so", name) for name in names), "compiled dedupe"


def test_the_installed_wheel_runs_the_stack_and_the_demo_outside_the_checkout(
        distributions: dict[str, Path], tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c",
         str(REPOSITORY / "constraints.txt"), f"kafkatrail[local] @ {distributions['wheel'].as_uri()}"], tmp_path)
    site_packages = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             tmp_path).stdout.strip())
    ours = [path.name for path in site_packages.iterdir() if path.name.lower().startswith("kafkatrail")]
    print(f"\nkafkatrail's names in site-packages: {sorted(ours)}")
    assert sorted(ours) == ["kafkatrail", f"kafkatrail-{__version__}.dist-info"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("KAFKATRAIL_", "AWS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"PATH": f"{environment / 'bin'}:{env.get('PATH', '')}",
                "KAFKATRAIL_STACK__CACHE_DIR": str(JAR_CACHE)})  # the warm jar cache: no second Maven run
    kafkatrail = str(environment / "bin" / "kafkatrail")
    assert run([kafkatrail, "--version"], elsewhere, env).stdout.strip() == f"kafkatrail {__version__}"
    run([str(python), "-c", "import kafkatrail.sinks.s3, kafkatrail.schemas.binary"], elsewhere, env)

    demo = run([kafkatrail, "demo", "--seconds", "5"], elsewhere, env, timeout=400)
    print(demo.stdout[-3000:])
    assert re.search(r"\.json\.gz", demo.stdout), "the demo lists the log files it stored"
    assert "demo finished" in demo.stdout
    assert not RAW_LIBRDKAFKA_LINE.search(demo.stdout + demo.stderr), "a healthy demo prints no raw librdkafka line"
