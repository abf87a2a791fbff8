"""Generated files: the checksum that tells ours from edited ones, and all-or-nothing writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from zephyr_deploy._exceptions import DeployError, FileExists
from zephyr_deploy._files import check_writable, is_unedited, with_checksum, write_all

BODY = "services:\n  web:\n    image: x\n"


@pytest.mark.parametrize(
    ("text", "unedited"),
    [
        (with_checksum("# header\n", BODY), True),
        (with_checksum("", BODY), True),
        (with_checksum("# header\n", BODY).replace("image: x", "image: y"), False),
        (with_checksum("# header\n", BODY) + "extra: 1\n", False),
        (BODY, False),
        ("# zephyr-checksum: sha256:", False),
    ],
)
def test_is_unedited(text: str, unedited: bool) -> None:
    assert is_unedited(text) is unedited


def test_check_writable(tmp_path: Path) -> None:
    path = tmp_path / "docker-compose.yml"
    ours = with_checksum("# h\n", BODY)
    assert check_writable(path, ours, force=False, replace_unedited=True)  # absent
    path.write_text(ours)
    assert not check_writable(path, ours, force=False, replace_unedited=True)  # identical
    new = with_checksum("# h\n", BODY + "  worker: {}\n")
    assert check_writable(path, new, force=False, replace_unedited=True)  # ours, unedited
    path.write_text(ours.replace("image: x", "image: mine"))
    with pytest.raises(FileExists, match="edited by hand"):
        check_writable(path, new, force=False, replace_unedited=True)
    assert check_writable(path, new, force=True, replace_unedited=True)
    with pytest.raises(FileExists, match="exists"):
        check_writable(path, new, force=False)


def test_write_all_leaves_no_temporary_file_and_keeps_the_mode(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("old\n")
    (tmp_path / "Dockerfile").chmod(0o600)
    write_all({tmp_path / "Dockerfile": "new\n", tmp_path / ".dockerignore": ".env\n"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dockerignore", "Dockerfile"]
    assert (tmp_path / "Dockerfile").read_text() == "new\n"
    assert (tmp_path / "Dockerfile").stat().st_mode & 0o777 == 0o600


def test_write_all_writes_nothing_when_one_folder_is_missing(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("old\n")
    files = {tmp_path / "Dockerfile": "new\n", tmp_path / "gone" / "x": "y\n"}
    with pytest.raises(DeployError, match="cannot write in"):
        write_all(files)
    assert (tmp_path / "Dockerfile").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["Dockerfile"]
