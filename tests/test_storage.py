"""Atomic writes: a failed write leaves the old file and no temporary beside it."""

from __future__ import annotations

import pytest

from avatar.core.storage import open_atomically, write_text_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = write_text_atomically(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError), open_atomically(target) as out:
        out.write(b"half a ne")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    with open_atomically(target, "w", encoding="utf-8") as out:
        out.write("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
