"""The local stack's data dir holds the broker's storage (audit events): only its owner may enter it."""

from __future__ import annotations

import stat
from pathlib import Path

from kafkatrail.core.settings import StackSettings
from kafkatrail.stack import LocalStack


def test_the_data_dir_is_made_private_even_when_it_existed(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    data_dir.mkdir(mode=0o755)
    LocalStack(StackSettings(data_dir=data_dir), say=lambda _: None).down()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
