"""``chatvault sources``: formats, preview and convert, run in-process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from conftest_readers import corpus_file
from vault import records


def test_formats_lists_every_reader() -> None:
    result = run_cli("sources", "formats", "--json")
    assert result.code == 0
    rows = {f["name"]: f for f in result.json()["formats"]}  # type: ignore[index]
    assert list(rows) == ["jsonl", "slack", "botframework", "whatsapp", "telegram",
                          "messenger", "rasa", "intercom", "freshdesk"]
    assert {n for n, f in rows.items() if f["writes_native"]} == {"jsonl", "slack",
                                                                  "botframework"}
    assert all(f["description"] for f in rows.values())
    assert "whatsapp" in run_cli("sources", "formats").out


def test_preview_json_and_table() -> None:
    path = corpus_file("slack/slack_export.zip")
    result = run_cli("sources", "preview", path, "--format", "slack", "--limit", "2",
                     "--json")
    assert result.code == 0
    doc = result.json()
    assert [c["conversation_id"] for c in doc["conversations"]] == [  # type: ignore[index]
        "C0535BV3C6P:2023-04-13", "C05019B47SB:2023-04-13"]
    assert doc["problems"] == []  # type: ignore[index]
    table = run_cli("sources", "preview", path, "-f", "slack")
    assert table.code == 0
    assert "C050FR57M8S" in table.out and "Hello, world!" not in table.out
    assert "Example message" in table.out  # first messages of the first conversation


def test_convert_writes_canonical_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli("sources", "convert", corpus_file("telegram/result.json"), "-f",
                     "telegram", "--source", "tg-desk", "-o", out, "--json")
    assert result.code == 0, result.err
    assert result.json()["conversations"] == 1  # type: ignore[index]
    lines = out.read_bytes().splitlines()
    assert len(lines) == 1
    canonical, summary = records.canonical_line(lines[0], "out.jsonl:1")
    assert canonical == lines[0] and summary.messages == 4
    assert json.loads(lines[0])["source"] == "tg-desk"


def test_convert_reports_problems_keeps_the_rest_and_exits_3(tmp_path: Path) -> None:
    # the stray line is left out, as export run leaves it out with exit 3
    chat = tmp_path / "chat.txt"
    chat.write_text("garbage first\n25/03/2024, 10:01 - Ana: hello\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_cli("sources", "convert", chat, "-f", "whatsapp", "-o", out)
    assert result.code == 3
    assert "problem:" in result.err and "line 1" in result.err
    assert result.err.count("line 1") == 1
    assert "hello" in out.read_text("utf-8")


def test_convert_unreadable_exits_3_and_writes_nothing(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("nothing here\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_cli("sources", "convert", junk, "-f", "whatsapp", "-o", out)
    assert result.code == 3
    assert "junk.txt" in result.err
    assert list(tmp_path.iterdir()) == [junk]


def test_convert_of_a_jsonl_line_that_cannot_be_read_exits_3_as_export_run(
        tmp_path: Path) -> None:
    # a JSONL line is a whole conversation: leaving it out is a refusal, not a remark
    good = ('{"conversation_id": "c1", "started_at": "2024-03-14T09:05:12Z", '
            '"participants": [{"id": "p", "role": "customer"}], "messages": '
            '[{"id": "m", "at": "2024-03-14T09:05:12Z", "from": "p", "text": "hi"}]}\n')
    path = tmp_path / "chat.jsonl"
    path.write_bytes(good.encode() + b'{"conversation_id": "c2", "text": "caf\xe9"}\n'
                     + b"not json\n")
    out = tmp_path / "out.jsonl"
    result = run_cli("sources", "convert", path, "-f", "jsonl", "-o", out)
    assert result.code == 3, result.err
    assert f"{path}: line 2: not UTF-8 text: byte " in result.err, result.err
    assert f"{path}: line 3: expected a JSON object" in result.err, result.err
    assert "2 of them left data out" in result.err
    assert json.loads(out.read_text("utf-8"))["conversation_id"] == "c1"


def test_convert_of_a_jsonl_file_not_in_utf8_names_the_byte(tmp_path: Path) -> None:
    # the first, quiet pass of convert meets the failure first; the reasons are still said
    path = tmp_path / "chat.jsonl"
    path.write_bytes(b'{"conversation_id": "c1", "text": "caf\xe9"}\n')
    result = run_cli("sources", "convert", path, "-f", "jsonl", "-o", tmp_path / "o.jsonl")
    assert result.code == 3, result.err
    assert f"{path}: line 1: not UTF-8 text: byte " in result.err, result.err
    assert "(0xE9) is not UTF-8" in result.err
    assert result.err.count("(0xE9)") == 1
    assert not (tmp_path / "o.jsonl").exists()


def test_convert_empty_folder_exits_3(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    result = run_cli("sources", "convert", tmp_path / "in", "-f", "telegram",
                     "-o", tmp_path / "out.jsonl")
    assert result.code == 3
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("option", [["--phone-region", "XX"], ["--timezone", "Mars/Base"],
                                    ["--format", "icq"]])
def test_bad_options_are_usage_errors(tmp_path: Path, option: list[str]) -> None:
    args = ["sources", "convert", tmp_path, "-o", tmp_path / "o.jsonl"]
    if option[0] != "--format":
        args += ["-f", "whatsapp"]
    result = run_cli(*args, *option)
    assert result.code == 2, result.err


@pytest.mark.parametrize("command", ["formats", "preview", "convert"])
def test_every_command_has_help(command: str) -> None:
    result = run_cli("sources", command, "--help")
    assert result.code == 0 and len(result.out) > 100


# -- each problem is said once ----------------------------------------------------------------

BAD_CHAT = ("stray first line\n25/03/2024, 10:01 - Ana: hello\n"
            "99/99/2024, 10:02 - Ana: no such day\n")


def _said_once(err: str, what: str) -> None:
    assert err.count(what) == 1, err
    assert "WARNING" not in err, err


@pytest.mark.parametrize("command", ["convert", "preview"])
def test_sources_commands_say_each_problem_once(tmp_path: Path, proc: Any,
                                                command: str) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text(BAD_CHAT, encoding="utf-8")
    args = ["-o", tmp_path / "out.jsonl"] if command == "convert" else []
    result = proc("sources", command, chat, "-f", "whatsapp", "--timezone", "UTC", *args)
    assert result.code == 3, result.err  # as export run, for the lines left out
    _said_once(result.err, "line 1: expected a line starting with a date and a time")
    _said_once(result.err, "line 3: expected a valid date and time")


def test_export_run_says_each_problem_once(tmp_path: Path, proc: Any) -> None:
    import export_kit

    site = export_kit.make_site(tmp_path, convs=[])
    chat = tmp_path / "chat.txt"
    chat.write_text(BAD_CHAT, encoding="utf-8")
    export_kit.add_source(site, "wa", chat, "whatsapp", timezone="UTC")
    for args in ([], ["--json"]):
        result = proc("export", "run", *site.args(*args))
        assert result.code == 3
        _said_once(result.err, "line 1: expected a line starting with a date and a time")
        _said_once(result.err, "line 3: expected a valid date and time")


def test_export_run_says_how_many_problems_it_did_not_list(tmp_path: Path, proc: Any) -> None:
    import export_kit

    site = export_kit.make_site(tmp_path, convs=[])
    chat = tmp_path / "chat.txt"
    bad = "".join(f"99/99/2024, 10:{i:02d} - Ana: no such day\n" for i in range(25))
    chat.write_text("25/03/2024, 10:01 - Ana: hello\n" + bad, encoding="utf-8")
    export_kit.add_source(site, "wa", chat, "whatsapp")
    result = proc("export", "run", *site.args())
    assert result.code == 3
    assert result.err.count("a valid date and time") == 20
    assert "... and 5 more problem(s) (CHATVAULT_LOG=DEBUG lists every one)" in result.err
    debug = proc("export", "run", *site.args(), env={"CHATVAULT_LOG": "DEBUG"})
    assert debug.err.count("DEBUG vault.sources:") == 25


def test_sources_help_names_the_commands_there_are() -> None:
    helped = run_cli("sources", "--help")
    assert helped.code == 0
    said = re.search(r"readers: ([a-z, ]+)\.", " ".join(helped.out.split()))
    assert said is not None, helped.out
    for command in said.group(1).split(", "):
        assert run_cli("sources", command, "--help").code == 0, command
    assert run_cli("sources", "list", "--json").json() == run_cli(
        "sources", "formats", "--json").json()


def test_preview_shows_the_ids_convert_writes(tmp_path: Path) -> None:
    """WhatsApp ids derive from the source name: same defaults, same ids."""
    chat = tmp_path / "chat.txt"
    chat.write_text("25/03/2024, 10:01 - Ana: hello\n", encoding="utf-8")

    def ids(*source: str) -> tuple[list[str], list[str]]:
        shown = run_cli("sources", "preview", chat, "-f", "whatsapp", *source, "--json")
        out = tmp_path / "out.jsonl"
        made = run_cli("sources", "convert", chat, "-f", "whatsapp", *source, "-o", out)
        assert shown.code == 0 and made.code == 0, (shown.err, made.err)
        written = [json.loads(line)["conversation_id"] for line in out.read_text().splitlines()]
        return [c["conversation_id"] for c in shown.json()["conversations"]], written

    shown, written = ids()
    assert shown == written
    assert ids("--source", "wa-desk")[0] != shown  # why --source must be the exporter's name


# -- a zstd export cut short -----------------------------------------------------------------

def _zst(path: Path, convs: list[dict[str, Any]]) -> bytes:
    import zstandard

    data = b"".join(records.canonical_record(c)[0] + b"\n" for c in convs)
    blob = zstandard.ZstdCompressor(write_checksum=True).compress(data)  # as zstd(1) does
    path.write_bytes(blob)
    return blob


@pytest.mark.parametrize("cut", [20, 3], ids=["head-c-20", "no-checksum"])
def test_bundle_seal_of_a_truncated_zst_exits_3_and_writes_nothing(
        tmp_path: Path, pair: Any, cut: int) -> None:
    from vault_kit import conv

    path = tmp_path / "t.jsonl.zst"
    blob = _zst(path, [conv(f"c{i}", ["hello"] * 30) for i in range(40)])
    path.write_bytes(blob[:cut] if cut == 20 else blob[:-cut])
    out = tmp_path / "t.cvb"
    result = run_cli("bundle", "seal", path, "--to", pair.vault.public_key, "--source", "web",
                     "--seq", "1", "-o", out, "--home", pair.exporter_path)
    assert result.code == 3, (result.out, result.err)
    assert f"{path}: zstd data cut short" in result.err
    assert "sealed" not in result.out and not out.exists()


def test_export_run_seals_nothing_of_a_truncated_zst_and_reads_it_next_run(
        tmp_path: Path) -> None:
    import export_kit
    from vault_kit import conv

    site = export_kit.make_site(tmp_path, convs=[])
    folder = tmp_path / "web-export"
    folder.mkdir()
    cut = folder / "a.jsonl.zst"
    blob = _zst(cut, [conv("grows", ["one", "two", "three"]), conv("other", ["x"] * 50)])
    cut.write_bytes(blob[:-3])
    _zst(folder / "b.jsonl.zst", [conv("whole", ["kept"])])
    export_kit.add_source(site, "zs", folder, "jsonl")
    result = run_cli("export", "run", *site.args())
    assert result.code == 3, result.err
    assert f"{cut}: zstd data cut short" in result.err
    held = export_kit.vault_view(site)
    assert "whole" in held and "grows" not in held and "other" not in held
    cut.write_bytes(blob)  # copied again, whole
    again = run_cli("export", "run", *site.args())
    assert again.code == 0, again.err
    assert {"whole", "grows", "other"} <= set(export_kit.vault_view(site))


# -- text that is not UTF-8, in every reader that decodes text ---------------------------------

_NAMES = {"jsonl": "chat.jsonl", "botframework": "chat.transcript", "telegram": "result.json",
          "messenger": "message_1.json", "rasa": "tracker.json", "intercom": "export.json",
          "freshdesk": "tickets.json", "whatsapp": "chat.txt"}
_DOC = '[{"text": "caf\u00e9", "conversation_id": "c1"}]\n'


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
@pytest.mark.parametrize("fmt", sorted(_NAMES))
def test_text_that_is_not_utf8_is_said_so_by_every_reader(tmp_path: Path, fmt: str,
                                                          encoding: str) -> None:
    path = tmp_path / _NAMES[fmt]
    path.write_bytes(("25/03/2024, 10:01 - Ana: caf\u00e9\n" if fmt == "whatsapp" else _DOC)
                     .encode(encoding))
    result = run_cli("sources", "preview", path, "-f", fmt, "--timezone", "UTC")
    assert result.code == 3, result.err
    # JSONL is read line by line: a line not in UTF-8 is that line's problem
    where = f"{path}: line 1: " if fmt == "jsonl" and encoding == "latin-1" else f"{path}: "
    assert f"{where}not UTF-8 text: " in result.err, result.err
    assert "surrogates" not in result.err
    if encoding == "utf-16":
        assert "looks like UTF-16; re-save it as UTF-8" in result.err, result.err
    else:
        assert "(0xE9) is not UTF-8" in result.err, result.err


def test_a_slack_member_that_is_not_utf8_is_said_so(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("users.json", '[{"id": "U1", "name": "ana"}]'.encode("utf-16"))
        zf.writestr("support/2024-03-01.json", json.dumps(
            [{"type": "message", "user": "U1", "text": "ok", "ts": "1709287200.000100"}]))
        zf.writestr("support/2024-03-02.json", b'[{"text": "caf\xe9"}]')
    result = run_cli("sources", "preview", path, "-f", "slack")
    assert result.code == 3, result.err
    assert (f"{path}: users.json: not UTF-8 text: it starts with a UTF-16 byte order mark"
            in result.err), result.err
    assert f"{path}: support/2024-03-02.json: not UTF-8 text: byte 14 (0xE9)" in result.err
    assert "surrogates" not in result.err


# -- preview refuses what convert refuses -----------------------------------------------------

def _pipe(tmp_path: Path) -> Path:
    import os

    fifo = tmp_path / "a.jsonl"
    os.mkfifo(fifo)
    return fifo


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "a.jsonl").write_text("")
    return tmp_path / "a.jsonl"


def _links_only(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "l.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    return folder


@pytest.mark.parametrize("make", [_pipe, _empty, _links_only])
@pytest.mark.parametrize("as_json", [False, True])
def test_preview_exits_as_convert_does_when_nothing_can_be_read(
        tmp_path: Path, make: Any, as_json: bool) -> None:
    path = make(tmp_path)
    more = ["--json"] if as_json else []
    converted = run_cli("sources", "convert", path, "-f", "jsonl", "-o", tmp_path / "o.jsonl",
                        *more)
    shown = run_cli("sources", "preview", path, "-f", "jsonl", *more)
    assert converted.code == 3, converted.err
    assert shown.code == 3, (shown.out, shown.err)
    assert str(path) in shown.err
    if as_json:
        assert shown.json()["error"] == converted.json()["error"]  # type: ignore[index]


def test_a_record_left_out_is_named_once(tmp_path: Path) -> None:
    """The problem line names file and conversation once, then the field at fault."""
    bad = tmp_path / "bad.jsonl"
    line = {"conversation_id": "c-1", "started_at": "2024-03-14T09:05:12Z",
            "participants": [{"id": "p1", "role": "client"}],
            "messages": [{"id": "m1", "at": "2024-03-14T09:05:12Z", "from": "p1", "text": "Hi"}]}
    bad.write_text(json.dumps(line) + "\n", encoding="utf-8")
    result = run_cli("sources", "convert", bad, "-f", "jsonl", "-o", tmp_path / "o.jsonl")
    assert result.code == 3
    problem = next(x for x in result.err.splitlines() if x.startswith("problem:"))
    assert problem.count("bad.jsonl") == 1 and problem.count("conversation 1") == 1, problem
    assert "conversation 1 (c-1): participants[0]: field 'role'" in problem
