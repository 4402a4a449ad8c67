"""Reading beside a workload's weights without leaving its root: symlinks that point at the
host are resolved inside the workload's tree, as the kernel's RESOLVE_IN_ROOT would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backstop.agent.fingerprint.rootfs import OutsideRoot, open_in_root, read_in_root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A container root with a model folder, and a host secret beside (outside) it."""
    (tmp_path / "host-secret").write_text("host only")
    top = tmp_path / "container"
    models = top / "models" / "llama"
    models.mkdir(parents=True)
    (models / "config.json").write_text('{"model_type": "llama"}')
    (top / "blobs").mkdir()
    (top / "blobs" / "abc").write_text("blob")
    os.symlink("../../blobs/abc", models / "relative-link")  # the Hugging Face cache's way
    os.symlink(str(tmp_path / "host-secret"), models / "absolute-link")
    os.symlink("../../../host-secret", models / "climbing-link")
    os.symlink("loop-b", models / "loop-a")
    os.symlink("loop-a", models / "loop-b")
    return top


def test_a_plain_file_and_a_relative_link_inside_the_root(root: Path) -> None:
    assert read_in_root(root, "/models/llama/config.json", 1024) == b'{"model_type": "llama"}'
    assert read_in_root(root, "/models/llama/relative-link", 1024) == b"blob"


def test_an_absolute_link_resolves_inside_the_root_never_to_the_host(root: Path) -> None:
    with pytest.raises(FileNotFoundError):  # looked for under the container's root
        open_in_root(root, "/models/llama/absolute-link")
    (root / Path(str(root.parent / "host-secret")).relative_to("/")).parent.mkdir(
        parents=True, exist_ok=True
    )
    planted = root / Path(str(root.parent / "host-secret")).relative_to("/")
    planted.write_text("the container's own file")
    assert read_in_root(root, "/models/llama/absolute-link", 1024) == b"the container's own file"


def test_dot_dot_never_climbs_above_the_root(root: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_in_root(root, "/models/llama/climbing-link")
    with pytest.raises(FileNotFoundError):
        open_in_root(root, "/../../../host-secret")


def test_link_loops_and_non_files_are_refused(root: Path) -> None:
    with pytest.raises(OutsideRoot, match="symlinks"):
        open_in_root(root, "/models/llama/loop-a")
    with pytest.raises(OutsideRoot, match="not a regular file"):
        open_in_root(root, "/models/llama")
    with pytest.raises(OutsideRoot, match="over 4 bytes"):
        read_in_root(root, "/models/llama/config.json", 4)
