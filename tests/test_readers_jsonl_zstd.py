"""zstd-compressed JSONL (case 26, as a family): streamed frames, and the size cap.

A frame written by a streaming compressor carries no content size
(``frame_content_size == -1``): one-shot ``decompress()`` refuses it, so the
reader must stream. Property: any data, cut into any writes, flushed at any
points, in one frame or several, written with any level, reads back byte for
byte, and conversations written so read back identical. The cap: a file that
decompresses to more than the reader's cap is refused with an error naming
it, never read in part, also in a folder with a read buffer far smaller than
the cap (as in production). Truncation: a stream cut anywhere inside a frame
(``head -c``, a lost checksum), corrupt, followed by junk or empty is refused
naming the file, and nothing of it is passed on.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_readers import canonical, conversation_strategy, read_all
from vault import records, sources
from vault.errors import UnreadableExport
from vault.sources import jsonl
from vault_kit import conv


def _streamed(data: bytes, *, frames: int = 1, level: int = 3, chunk: int = 4096,
              flush_every: int = 0) -> bytes:
    """``data`` as ``frames`` concatenated streamed frames (no content size in any)."""
    out = io.BytesIO()
    cut = max(1, -(-len(data) // frames))
    parts = [data[i:i + cut] for i in range(0, len(data), cut)]
    for part in parts:
        writer = zstandard.ZstdCompressor(level=level).stream_writer(out, closefd=False)
        for n, i in enumerate(range(0, len(part), chunk), 1):
            writer.write(part[i:i + chunk])
            if flush_every and n % flush_every == 0:
                writer.flush(zstandard.FLUSH_BLOCK)
        writer.close()
    return out.getvalue()


def _frames(blob: bytes) -> list[bytes]:
    """The concatenated frames of ``blob``, each found by decompressing it alone."""
    out = []
    while blob:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        dobj.decompress(blob)
        assert dobj.eof
        used = len(blob) - len(dobj.unused_data)
        out.append(blob[:used])
        blob = blob[used:]
    return out


_writes = st.fixed_dictionaries({
    "frames": st.integers(1, 4), "level": st.integers(-5, 19),
    "chunk": st.integers(1, 5000), "flush_every": st.integers(0, 3)})


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=20_000)
       | st.text(min_size=1, max_size=3000).map(str.encode),
       how=_writes)
def test_any_streamed_data_decompresses_exactly(tmp_path_factory: pytest.TempPathFactory,
                                                data: bytes, how: dict) -> None:
    blob = _streamed(data, **how)
    frames = _frames(blob)
    assert frames and all(zstandard.frame_content_size(f) == -1 for f in frames)
    with pytest.raises(zstandard.ZstdError, match="content size"):
        zstandard.ZstdDecompressor().decompress(blob)  # what case 26 broke on
    path = tmp_path_factory.mktemp("zst") / "chat.jsonl.zst"
    path.write_bytes(blob)
    assert b"".join(jsonl.open_lines(path)) == data


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(convs=st.lists(conversation_strategy(), min_size=1, max_size=3,
                      unique_by=lambda c: c["conversation_id"]), how=_writes)
def test_any_streamed_conversations_read_back_identical(
        tmp_path_factory: pytest.TempPathFactory, convs: list[dict], how: dict) -> None:
    data = b"".join(records.canonical_record(c)[0] + b"\n" for c in convs)
    path = tmp_path_factory.mktemp("zst") / "conversations.jsonl.zst"
    path.write_bytes(_streamed(data, **how))
    back, opts = read_all(path, "jsonl", source="prop")
    assert opts.problems == []
    assert canonical(back) == canonical(convs)


# -- the cap ----------------------------------------------------------------------------

CAP = 4096


def _lines(total: int) -> bytes:
    """Canonical lines of small conversations, exactly ``total`` bytes long."""
    out = b""
    n = 0
    while True:
        line = records.canonical_record(conv(f"c{n}", [f"message {n}"]))[0] + b"\n"
        if len(out) + len(line) > total:
            break
        out += line
        n += 1
    pad = total - len(out)
    return out + b"\n" * pad  # blank lines are skipped by the reader


@pytest.fixture
def low_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(jsonl, "MAX_EXPORT_FILE_BYTES", CAP)
    return CAP


def test_exactly_the_cap_is_read(tmp_path: Path, low_cap: int) -> None:
    data = _lines(low_cap)
    assert len(data) == low_cap
    path = tmp_path / "full.jsonl.zst"
    path.write_bytes(_streamed(data))
    convs, opts = read_all(path, "jsonl")
    assert opts.problems == [] and len(convs) == data.count(b'"conversation_id"')


@pytest.mark.parametrize("over", [1, 1000, 200_000])
def test_over_the_cap_is_refused_naming_the_file(tmp_path: Path, low_cap: int,
                                                 over: int) -> None:
    path = tmp_path / "big.jsonl.zst"
    path.write_bytes(_streamed(_lines(low_cap + over)))
    assert path.stat().st_size < low_cap  # only the decompressed size is over
    with pytest.raises(UnreadableExport) as info:
        list(sources.read(path, "jsonl", sources.ReadOptions()))
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: decompresses to more than {low_cap} bytes"


@pytest.mark.parametrize("buffer", [
    1024 * 1024,
    # as in production: the read buffer (1 MiB) is far smaller than the cap (4 GiB)
    256,
])
def test_over_the_cap_in_a_folder_passes_on_nothing_of_that_file(
        tmp_path: Path, low_cap: int, monkeypatch: pytest.MonkeyPatch, buffer: int) -> None:
    monkeypatch.setattr(jsonl, "_READ_BUFFER", buffer)
    (tmp_path / "a-big.jsonl.zst").write_bytes(_streamed(_lines(low_cap * 3)))
    (tmp_path / "b-small.jsonl").write_bytes(
        records.canonical_record(conv("small", ["kept"]))[0] + b"\n")
    opts = sources.ReadOptions()
    got = [c["conversation_id"] for c in sources.read(tmp_path, "jsonl", opts)]
    [problem] = opts.problems
    assert problem.refused and problem.path == str(tmp_path / "a-big.jsonl.zst")
    assert f"decompresses to more than {low_cap} bytes" in str(problem)
    assert got == ["small"]  # nothing of the refused file, all of the other


# -- truncated and corrupt streams ----------------------------------------------------------

def _frame_ends(blob: bytes) -> set[int]:
    ends, at = set(), 0
    for frame in _frames(blob):
        at += len(frame)
        ends.add(at)
    return ends


def _refused(path: Path) -> UnreadableExport:
    """What reading ``path`` raises; fails if it yields anything first."""
    convs = sources.read(path, "jsonl", sources.ReadOptions())
    with pytest.raises(UnreadableExport) as info:
        first = next(convs)
        pytest.fail(f"a conversation was passed on before the refusal: {first}")
    assert info.value.path == str(path)
    return info.value


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(total=st.integers(300, 6000), how=_writes, checksum=st.booleans(), data=st.data())
def test_a_stream_cut_inside_a_frame_is_refused_and_nothing_passed_on(
        tmp_path_factory: pytest.TempPathFactory, total: int, how: dict, checksum: bool,
        data: st.DataObject) -> None:
    blob = _streamed(_lines(total), **how)
    if checksum:  # as the zstd command writes them
        blob = zstandard.ZstdCompressor(write_checksum=True).compress(_lines(total))
    # a cut exactly between two frames leaves a valid, shorter stream: no format can tell
    cut = data.draw(st.integers(0, len(blob) - 1).filter(lambda n: n not in _frame_ends(blob)))
    path = tmp_path_factory.mktemp("cut") / "chat.jsonl.zst"
    path.write_bytes(blob[:cut])
    error = _refused(path)
    assert ("cut short" in error.detail) if cut else error.detail == "empty: no zstd frame in it"


def _checked(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


@pytest.mark.parametrize("damage", ["head-c-20", "no-checksum", "half"])
def test_truncated_files_are_refused_naming_the_file(tmp_path: Path, damage: str) -> None:
    blob = _checked(_lines(50_000))
    cut = {"head-c-20": 20, "no-checksum": len(blob) - 3, "half": len(blob) // 2}[damage]
    path = tmp_path / "t.jsonl.zst"
    path.write_bytes(blob[:cut])
    error = _refused(path)
    assert str(error).startswith(f"{path}: zstd data cut short: the file ends inside frame 1")


@pytest.mark.parametrize("damage, said", [
    ("checksum", "corrupt zstd data in frame 1 (zstd decompressor error: Restored data "
                 "doesn't match checksum)"),
    ("junk", "corrupt zstd data in frame 2 (zstd decompressor error: Unknown frame "
             "descriptor)"),
    ("not-zstd", "corrupt zstd data in frame 1 (zstd decompressor error: Unknown frame "
                 "descriptor)"),
])
def test_corrupt_files_are_refused_naming_the_file(tmp_path: Path, damage: str,
                                                   said: str) -> None:
    blob = bytearray(_checked(_lines(5000)))
    if damage == "checksum":
        blob[-1] ^= 0xFF
    elif damage == "junk":
        blob += b"trailing bytes that are no frame"
    else:
        blob = bytearray(_lines(5000))  # plain JSONL named .zst
    path = tmp_path / "t.jsonl.zst"
    path.write_bytes(bytes(blob))
    assert _refused(path).detail == said


def test_skippable_frames_and_several_frames_read_whole(tmp_path: Path) -> None:
    data = _lines(20_000)
    skip = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    path = tmp_path / "ok.jsonl.zst"
    path.write_bytes(skip + _checked(data[:7000]) + skip + _checked(data[7000:]))
    convs, opts = read_all(path, "jsonl")
    assert opts.problems == [] and len(convs) == data.count(b'"conversation_id"')


def test_a_truncated_file_in_a_folder_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    blob = _checked(_lines(50_000))
    (tmp_path / "a-cut.jsonl.zst").write_bytes(blob[:-3])
    (tmp_path / "b-whole.jsonl.zst").write_bytes(_checked(
        records.canonical_record(conv("whole", ["kept"]))[0] + b"\n"))
    opts = sources.ReadOptions()
    got = [c["conversation_id"] for c in sources.read(tmp_path, "jsonl", opts)]
    assert got == ["whole"]
    [problem] = opts.problems
    assert problem.refused and problem.path == str(tmp_path / "a-cut.jsonl.zst")
    assert "zstd data cut short" in str(problem)


def test_open_lines_finds_the_cut_at_the_end(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``bundle seal`` reads in one pass: the cut raises after the lines before it."""
    monkeypatch.setattr(jsonl, "_READ_BUFFER", 256)  # as a file far over 1 MiB would
    path = tmp_path / "t.jsonl.zst"
    path.write_bytes(_checked(_lines(50_000))[:-3])
    lines = jsonl.open_lines(path)
    assert next(lines)
    with pytest.raises(UnreadableExport, match="cut short"):
        list(lines)
