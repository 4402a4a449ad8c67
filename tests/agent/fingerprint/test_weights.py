"""Weights recognition and hashing: formats, hashes, constant reads, caching, hostile files."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import threading
import zipfile
from pathlib import Path

import pytest

from backstop.agent.fingerprint.weights import (
    CHUNK_BYTES,
    SAMPLE_CHUNKS,
    WeightsHasher,
    model_hash,
    sample_offsets,
)
from backstop.core.models import WeightsFile
from tests.agent.fingerprint.samples import (
    reference_model_hash,
    reference_sampled_sha256,
    safetensors_header,
    write_safetensors,
)

MIB = 1 << 20
GIB = 1 << 30


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-per-chunk bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


class PreadSpy:
    """Counts the bytes ``os.pread`` returns (installed with monkeypatch)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.calls = 0
        self._real = os.pread

    def __call__(self, fd: int, length: int, offset: int) -> bytes:
        data = self._real(fd, length, offset)
        self.bytes += len(data)
        self.calls += 1
        return data


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> PreadSpy:
    counter = PreadSpy()
    monkeypatch.setattr(os, "pread", counter)
    return counter


# -- safetensors ---------------------------------------------------------------------------


def test_safetensors_header_hash_is_sha256_of_exactly_the_json_header(tmp_path: Path) -> None:
    header = safetensors_header()
    path = write_safetensors(tmp_path / "model.safetensors", header, pattern(128))

    result = WeightsHasher().hash_file(path)

    assert result is not None
    assert result.format == "safetensors"
    assert result.path == str(path)
    assert result.size_bytes == 8 + len(header) + 128
    assert result.header_sha256 == hashlib.sha256(header).hexdigest()
    assert result.sampled_sha256 == reference_sampled_sha256(path)


def test_large_safetensors_header_is_hashed_whole(tmp_path: Path) -> None:
    header = safetensors_header(tensors=4000)  # several hundred KiB, beyond the first read
    assert len(header) > 3 * 64 * 1024
    path = write_safetensors(tmp_path / "big-header.safetensors", header, pattern(4096))

    result = WeightsHasher().hash_file(path)

    assert result is not None
    assert result.header_sha256 == hashlib.sha256(header).hexdigest()


@pytest.mark.parametrize(
    ("length", "first"),
    [
        (1 << 40, b"{"),  # absurd: a terabyte of header
        (10_000, b"{"),  # longer than the file
        (1, b"{"),  # too short to be JSON
        (16, b"["),  # not a JSON object
    ],
)
def test_implausible_safetensors_headers_are_refused(
    tmp_path: Path, length: int, first: bytes
) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", length) + first + b"x" * 200)
    hasher = WeightsHasher()

    assert hasher.hash_file(path) is None
    assert hasher.bytes_read <= 64 * 1024


def test_header_limit_is_configurable(tmp_path: Path) -> None:
    header = safetensors_header(tensors=50)
    path = write_safetensors(tmp_path / "m.safetensors", header, b"")

    assert WeightsHasher(max_header_bytes=len(header) - 1).hash_file(path) is None
    assert WeightsHasher(max_header_bytes=len(header)).hash_file(path) is not None


# -- sampled hash --------------------------------------------------------------------------


def test_same_content_in_two_files_gives_the_same_hashes(tmp_path: Path) -> None:
    header, data = safetensors_header(), pattern(3 * MIB)
    first = write_safetensors(tmp_path / "a.safetensors", header, data)
    second = write_safetensors(tmp_path / "b.safetensors", header, data)
    hasher = WeightsHasher()

    a, b = hasher.hash_file(first), hasher.hash_file(second)

    assert a is not None
    assert b is not None
    assert (a.header_sha256, a.sampled_sha256) == (b.header_sha256, b.sampled_sha256)
    assert hasher.files_hashed == 2  # two inodes, both read


def test_a_change_at_a_sampled_offset_changes_the_sampled_hash(tmp_path: Path) -> None:
    header, data = safetensors_header(), bytearray(pattern(4 * MIB))
    original = write_safetensors(tmp_path / "a.safetensors", header, bytes(data))
    size = original.stat().st_size
    sampled_at = sample_offsets(size)[7] + 100  # inside the eighth chunk
    data[sampled_at - 8 - len(header)] ^= 0xFF
    changed = write_safetensors(tmp_path / "b.safetensors", header, bytes(data))
    hasher = WeightsHasher()

    a, b = hasher.hash_file(original), hasher.hash_file(changed)

    assert a is not None
    assert b is not None
    assert a.header_sha256 == b.header_sha256
    assert a.sampled_sha256 != b.sampled_sha256
    assert b.sampled_sha256 == reference_sampled_sha256(changed)


def test_a_change_between_samples_is_not_read(tmp_path: Path) -> None:
    """Sampling reads 1 MiB of a 4 MiB file: bytes between the chunks do not count."""
    header, data = safetensors_header(), bytearray(pattern(4 * MIB))
    original = write_safetensors(tmp_path / "a.safetensors", header, bytes(data))
    offsets = sample_offsets(original.stat().st_size)
    between = offsets[3] + CHUNK_BYTES + 1000
    assert between < offsets[4]
    data[between - 8 - len(header)] ^= 0xFF
    changed = write_safetensors(tmp_path / "b.safetensors", header, bytes(data))
    hasher = WeightsHasher()

    a, b = hasher.hash_file(original), hasher.hash_file(changed)

    assert a is not None
    assert b is not None
    assert a.sampled_sha256 == b.sampled_sha256


def test_the_file_size_is_part_of_the_sampled_hash(tmp_path: Path) -> None:
    header = safetensors_header()
    short = write_safetensors(tmp_path / "a.safetensors", header, b"", total_size=2 * MIB)
    longer = write_safetensors(tmp_path / "b.safetensors", header, b"", total_size=2 * MIB + 1)
    hasher = WeightsHasher()

    a, b = hasher.hash_file(short), hasher.hash_file(longer)

    assert a is not None
    assert b is not None
    assert a.sampled_sha256 != b.sampled_sha256


@pytest.mark.parametrize("size", [MIB, GIB, 64 * GIB])
def test_bytes_read_do_not_depend_on_the_file_size(
    tmp_path: Path, spy: PreadSpy, size: int
) -> None:
    header = safetensors_header()
    path = write_safetensors(tmp_path / "m.safetensors", header, b"", total_size=size)
    hasher = WeightsHasher()

    result = hasher.hash_file(path)

    assert result is not None
    assert result.size_bytes == size
    assert result.sampled_sha256 == reference_sampled_sha256(path)
    # The first 64 KiB (format check and header) plus 15 more sampled chunks: 1 MiB in all,
    # whether the file holds 1 MiB or 64 GiB.
    assert hasher.bytes_read == SAMPLE_CHUNKS * CHUNK_BYTES
    assert spy.bytes == hasher.bytes_read


def test_small_files_are_read_once(tmp_path: Path, spy: PreadSpy) -> None:
    header = safetensors_header()
    path = write_safetensors(tmp_path / "tiny.safetensors", header, pattern(100))
    hasher = WeightsHasher()

    result = hasher.hash_file(path)

    assert result is not None
    assert result.sampled_sha256 == reference_sampled_sha256(path)
    assert spy.bytes == path.stat().st_size


# -- caching -------------------------------------------------------------------------------


def test_a_file_is_hashed_once_however_often_it_is_seen(tmp_path: Path, spy: PreadSpy) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", safetensors_header(), pattern(MIB))
    alias = tmp_path / "alias.safetensors"
    alias.symlink_to(path)
    hasher = WeightsHasher()

    first = hasher.hash_file(path)
    read_once = spy.bytes
    again = hasher.hash_file(path)
    through_alias = hasher.hash_file(alias)

    assert read_once > 0
    assert spy.bytes == read_once
    assert again == first
    assert through_alias is not None
    assert first is not None
    assert through_alias.path == str(alias)
    assert through_alias.sampled_sha256 == first.sampled_sha256
    assert hasher.files_hashed == 1


def test_a_rewritten_file_is_hashed_again(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", safetensors_header(), pattern(MIB))
    hasher = WeightsHasher()
    before = hasher.hash_file(path)
    write_safetensors(path, safetensors_header(), pattern(MIB, seed=1))
    os.utime(path, ns=(0, 1))  # a different mtime even on coarse clocks

    after = hasher.hash_file(path)

    assert before is not None
    assert after is not None
    assert after.sampled_sha256 != before.sampled_sha256
    assert hasher.files_hashed == 2


def test_cache_is_bounded(tmp_path: Path) -> None:
    hasher = WeightsHasher(cache_entries=2)
    paths = [
        write_safetensors(tmp_path / f"m{i}.safetensors", safetensors_header(), pattern(10, i))
        for i in range(3)
    ]
    for path in paths:
        hasher.hash_file(path)

    hasher.hash_file(paths[0])  # evicted by the third: read again

    assert hasher.files_hashed == 4


# -- other formats -------------------------------------------------------------------------


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("model.gguf", b"GGUF\x03\x00\x00\x00" + pattern(5000), "gguf"),
        ("sha256-" + "ab" * 32, b"GGUF\x03\x00\x00\x00" + pattern(100), "gguf"),
        ("model.onnx", b"\x08\x07\x12\x07pytorch\x1a\x032.1" + pattern(300), "onnx"),
        ("model.pt", _zip_bytes(), "pytorch"),
        ("pytorch_model.bin", pickle.dumps({"w": list(range(50))}, protocol=2), "pytorch"),
        ("model.ckpt", pickle.dumps([1, 2, 3], protocol=4), "pytorch"),
    ],
)
def test_formats_are_recognised(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    result = WeightsHasher().hash_file(path)

    assert result is not None
    assert result.format == expected
    assert result.header_sha256 == hashlib.sha256(content[: 64 * 1024]).hexdigest()
    assert result.sampled_sha256 == reference_sampled_sha256(path)


def test_gguf_header_hash_covers_the_first_64_kib(tmp_path: Path) -> None:
    content = b"GGUF\x03\x00\x00\x00" + pattern(200 * 1024)
    path = tmp_path / "m.gguf"
    path.write_bytes(content)

    result = WeightsHasher().hash_file(path)

    assert result is not None
    assert result.header_sha256 == hashlib.sha256(content[: 64 * 1024]).hexdigest()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("model.gguf", b"GGML" + pattern(100)),
        ("sha256-" + "cd" * 32, b'{"schemaVersion": 2}'),  # an ollama manifest blob
        ("model.onnx", b"\x00\x00\x00" + pattern(100)),
        ("model.onnx", b""),
        ("pytorch_model.bin", b"\x7fELF" + pattern(100)),
        ("model.pt", b"\x80\x09" + pattern(10)),  # not a pickle protocol
    ],
)
def test_wrong_content_under_a_weights_name_is_not_weights(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    assert WeightsHasher().hash_file(path) is None


def test_other_names_are_not_even_opened(tmp_path: Path, spy: PreadSpy) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"GGUF" + pattern(100))
    hasher = WeightsHasher()

    assert hasher.hash_file(path) is None
    assert spy.calls == 0


def test_display_path_names_the_file_and_picks_the_format(tmp_path: Path) -> None:
    content = b"GGUF\x03\x00\x00\x00" + pattern(100)
    path = tmp_path / "opaque"
    path.write_bytes(content)

    result = WeightsHasher().hash_file(path, display_path="/models/llama.gguf")

    assert result is not None
    assert result.path == "/models/llama.gguf"
    assert result.format == "gguf"


# -- hostile or vanishing files ------------------------------------------------------------


def test_a_fifo_named_like_weights_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    outcome: list[WeightsFile | None] = []
    worker = threading.Thread(target=lambda: outcome.append(WeightsHasher().hash_file(fifo)))

    worker.start()
    worker.join(timeout=10)

    if worker.is_alive():  # unblock the thread before failing
        with open(fifo, "wb"):
            pass
        worker.join()
        pytest.fail("hash_file blocked on a FIFO")
    assert outcome == [None]


def test_a_directory_or_missing_file_is_not_weights(tmp_path: Path) -> None:
    directory = tmp_path / "dir.safetensors"
    directory.mkdir()
    hasher = WeightsHasher()

    assert hasher.hash_file(directory) is None
    assert hasher.hash_file(tmp_path / "missing.safetensors") is None


def test_expected_id_guards_against_a_swapped_file(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", safetensors_header(), pattern(100))
    st = path.stat()
    hasher = WeightsHasher()

    assert hasher.hash_file(path, expected_id=(st.st_dev, st.st_ino + 1)) is None
    assert hasher.hash_file(path, expected_id=(st.st_dev, st.st_ino)) is not None


def test_files_are_opened_without_following_into_blocking_or_atime_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", safetensors_header(), pattern(100))
    seen_flags: list[int] = []
    real_open = os.open

    def recording_open(target: object, flags: int, *args: object) -> int:
        seen_flags.append(flags)
        return real_open(target, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", recording_open)

    assert WeightsHasher().hash_file(path) is not None
    assert seen_flags
    assert all(flags & os.O_NONBLOCK for flags in seen_flags)
    assert all(flags & (os.O_WRONLY | os.O_RDWR) == 0 for flags in seen_flags)
    assert seen_flags[0] & os.O_NOATIME


# -- model hash ----------------------------------------------------------------------------


def _weights(sampled: str) -> WeightsFile:
    return WeightsFile(f"/m/{sampled}", "safetensors", 1, "h", sampled)


def test_model_hash_ignores_order_and_duplicates() -> None:
    one = model_hash([_weights("a"), _weights("b"), _weights("a")])

    assert one == model_hash([_weights("b"), _weights("a")])
    assert one == reference_model_hash(["a", "b"])
    assert one != model_hash([_weights("a")])
    assert model_hash([]) == ""
