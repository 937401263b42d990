"""A folder given as the source path: nothing in it is passed over in silence.

Files a reader takes are read; files that look like the format's data but
are not taken are reported with the reason; a folder where nothing is taken
names the rule and what it found; an unreadable file is reported and the
others are read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from conftest_readers import read_all
from vault import sources
from vault.errors import UnreadableExport


def tg_chat(cid: int, name: str) -> dict:
    return {"name": name, "type": "personal_chat", "id": cid,
            "messages": [{"id": 1, "type": "message", "date_unixtime": "1709287200",
                          "from": name, "from_id": f"user{cid}", "text": f"hello from {name}"}]}


def fb_thread(title: str) -> dict:
    return {"participants": [{"name": title}], "title": title, "thread_path": f"inbox/{title}",
            "messages": [{"sender_name": title, "timestamp_ms": 1709287200000,
                          "content": "hi"}]}


def write(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return path


# -- telegram: every *.json is read; what is not Telegram is reported -----------------------

def test_telegram_folder_reads_every_export_it_holds(tmp_path: Path) -> None:
    write(tmp_path / "result.json", tg_chat(1, "Ana"))
    write(tmp_path / "test_batch_export.json", tg_chat(2, "Ben"))
    write(tmp_path / "ChatExport_2024-03-01" / "result.json", tg_chat(3, "Cleo"))
    write(tmp_path / "ChatExport_2024-03-01" / "photos" / "photo_1.jpg", "jpeg")

    convs, opts = read_all(tmp_path, "telegram")
    assert sorted(c["conversation_id"] for c in convs) == ["1", "2", "3"]
    assert opts.problems == []


def test_telegram_folder_reports_what_it_cannot_read_and_reads_the_rest(tmp_path: Path
                                                                       ) -> None:
    write(tmp_path / "result.json", tg_chat(1, "Ana"))
    write(tmp_path / "settings.json", {"theme": "dark"})
    write(tmp_path / "html" / "messages.html", "<html></html>")

    convs, opts = read_all(tmp_path, "telegram")
    assert [c["conversation_id"] for c in convs] == ["1"]
    by_file = {Path(p.path).name if p.position == "not read" else p.position: p
               for p in opts.problems}
    assert set(by_file) == {"settings.json", "skipped html/messages.html"}
    assert "not a Telegram export" in by_file["settings.json"].expected
    assert "Machine-readable JSON" in by_file["skipped html/messages.html"].expected
    assert all(p.refused for p in opts.problems)


def test_telegram_html_export_alone_says_what_to_do(tmp_path: Path) -> None:
    write(tmp_path / "messages.html", "<html></html>")
    write(tmp_path / "css" / "style.css", "body {}")
    opts = sources.ReadOptions()
    with pytest.raises(UnreadableExport) as caught:
        list(sources.read(tmp_path, "telegram", opts))
    assert "no file here is named like a telegram export" in caught.value.detail
    assert "css/style.css, messages.html" in caught.value.detail
    assert "Machine-readable JSON" in opts.problems[0].expected


# -- messenger: thread files by name; a renamed thread is reported, not guessed ---------------

def test_messenger_folder_without_thread_files_names_the_rule(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    write(folder / "a.json", {"a": 1})
    write(folder / "b.json", {})
    write(folder / "._a.json", "macOS resource fork")
    result = run_cli("sources", "convert", folder, "-f", "messenger",
                     "-o", tmp_path / "out.jsonl")
    assert result.code == 3
    assert "no file here is named like a messenger export (message_N.json" in result.err
    assert "found: a.json, b.json" in result.err
    assert "no conversation could be read" not in result.err
    assert not (tmp_path / "out.jsonl").exists()


def test_messenger_renamed_thread_is_reported_other_json_passed_over(tmp_path: Path) -> None:
    thread = tmp_path / "inbox" / "ana_1"
    write(thread / "message_1.json", fb_thread("Ana"))
    write(thread / "chat_copy.json", fb_thread("Ana"))
    write(tmp_path / "profile_information" / "profile_information.json", {"profile": {}})

    convs, opts = read_all(tmp_path, "messenger")
    assert [c["conversation_id"] for c in convs] == ["inbox/Ana"]
    [problem] = opts.problems
    assert problem.position == "skipped inbox/ana_1/chat_copy.json"
    assert "message_N.json" in problem.expected and "source path" in problem.expected
    assert problem.refused


def test_messenger_renamed_thread_reads_when_given_itself(tmp_path: Path) -> None:
    convs, opts = read_all(write(tmp_path / "chat_copy.json", fb_thread("Ana")), "messenger")
    assert len(convs) == 1 and opts.problems == []


# -- the other readers ----------------------------------------------------------------------

def test_whatsapp_folder_reads_the_chats_and_reports_a_stray_text(tmp_path: Path) -> None:
    write(tmp_path / "WhatsApp Chat with Ana.txt", "01/03/2024, 10:00 - Ana: hello\n")
    write(tmp_path / "README.txt", "exports from the support phone\n")
    write(tmp_path / "IMG-0001.jpg", "jpeg")

    convs, opts = read_all(tmp_path, "whatsapp")
    assert [c["title"] for c in convs] == ["Ana"]
    [problem] = opts.problems
    assert Path(problem.path).name == "README.txt" and problem.position == "not read"
    assert "no line starts with a WhatsApp date" in problem.expected


def test_folder_where_nothing_can_be_read_raises(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "nothing\n")
    write(tmp_path / "b.txt", "nothing either\n")
    opts = sources.ReadOptions()
    with pytest.raises(UnreadableExport, match="none of its 2 file"):
        list(sources.read(tmp_path, "whatsapp", opts))
    assert [Path(p.path).name for p in opts.problems] == ["a.txt", "b.txt"]


def test_jsonl_folder_reports_other_compression_and_plain_json(tmp_path: Path) -> None:
    line = json.dumps({"conversation_id": "c1", "started_at": "2024-03-01T10:00:00Z",
                       "participants": [], "messages": []})
    write(tmp_path / "day1.jsonl", line + "\n")
    write(tmp_path / "day2.jsonl.gz", "gz")
    write(tmp_path / "notes.json", "{}")
    write(tmp_path / "notes.txt", "not data")

    convs, opts = read_all(tmp_path, "jsonl")
    assert [c["conversation_id"] for c in convs] == ["c1"]
    reasons = {p.position: p.expected for p in opts.problems}
    assert set(reasons) == {"skipped day2.jsonl.gz", "skipped notes.json"}
    assert "zstd" in reasons["skipped day2.jsonl.gz"]


def test_slack_folder_holding_unpacked_exports_reads_each(tmp_path: Path) -> None:
    for name, day in (("2024-03", "2024-03-01"), ("2024-04", "2024-04-01")):
        root = tmp_path / name
        write(root / "users.json", [{"id": "U1", "name": "ana"}])
        write(root / "channels.json", [{"id": "C1", "name": "general"}])
        write(root / "general" / f"{day}.json",
              [{"type": "message", "user": "U1", "text": "hi", "ts": "1709287200.000100"}])
    files = sources.export_files(tmp_path, "slack")
    assert files == [tmp_path / "2024-03", tmp_path / "2024-04"]
    convs, opts = read_all(tmp_path, "slack")
    assert [c["conversation_id"] for c in convs] == ["C1:2024-03-01", "C1:2024-04-01"]
    assert opts.problems == []


@pytest.mark.parametrize("fmt, rule", [("slack", "channels.json"), ("botframework",
                                                                     "*.transcript"),
                                       ("whatsapp", "*.txt or *.zip")])
def test_every_reader_names_its_rule(tmp_path: Path, fmt: str, rule: str) -> None:
    write(tmp_path / "notes.md", "# nothing")
    with pytest.raises(UnreadableExport) as caught:
        sources.export_files(tmp_path, fmt)
    assert rule in caught.value.detail and "found: notes.md" in caught.value.detail


def test_botframework_transcript_saved_as_json_is_reported(tmp_path: Path) -> None:
    act = {"type": "message", "id": "1", "timestamp": "2024-03-01T10:00:00Z",
           "from": {"id": "u"}, "conversation": {"id": "c"}, "text": "hi"}
    write(tmp_path / "one.transcript", [act])
    write(tmp_path / "two.json", [act])
    convs, opts = read_all(tmp_path, "botframework")
    assert len(convs) == 1
    assert [p.position for p in opts.problems] == ["skipped two.json"]


def test_empty_folder_is_nothing_to_do_not_an_error(tmp_path: Path) -> None:
    assert sources.export_files(tmp_path, "telegram") == []


def test_long_folder_listing_is_cut(tmp_path: Path) -> None:
    for i in range(12):
        write(tmp_path / f"f{i:02d}.json", "{}")
    with pytest.raises(UnreadableExport, match=r"f07\.json and 4 more$"):
        sources.export_files(tmp_path, "botframework")


# -- through the exporter ---------------------------------------------------------------------

def test_export_run_reports_skipped_and_unmatched_folders(tmp_path: Path) -> None:
    import export_kit
    from vault import exporter

    site = export_kit.make_site(tmp_path, convs=[])
    tg = tmp_path / "tg"
    write(tg / "result.json", tg_chat(1, "Ana"))
    write(tg / "html" / "messages.html", "<html></html>")
    fb = tmp_path / "fb"
    write(fb / "a.json", {})
    export_kit.add_source(site, "tg", tg, "telegram")
    export_kit.add_source(site, "fb", fb, "messenger")

    report = exporter.run(site.exporter.path, media=site.stick)
    by_name = {s.name: s for s in report.sources}
    assert report.exit_code == 3
    assert by_name["tg"].exit_code == 3 and by_name["tg"].conversations == 1
    assert any("skipped html/messages.html" in e for e in by_name["tg"].errors)
    assert by_name["fb"].exit_code == 3
    assert any("no file here is named like a messenger export" in e
               for e in by_name["fb"].errors)


def test_a_symbolic_link_in_a_folder_is_refused_by_name_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.jsonl").write_text("")
    outside = tmp_path / "outside.jsonl"
    outside.write_text('{"text": "never read", "from": "x", "at": "2024-01-01T00:00:00Z"}\n')
    (folder / "b.jsonl").symlink_to(outside)
    (folder / "gone.jsonl").symlink_to(tmp_path / "missing.jsonl")
    (folder / "notes").symlink_to(tmp_path)  # not named like data: passed over
    opts = sources.ReadOptions()
    files = sources.export_files(folder, "jsonl", opts)
    assert [f.name for f in files] == ["a.jsonl"]
    said = {p.position: p for p in opts.problems}
    assert set(said) == {"skipped b.jsonl", "skipped gone.jsonl"}
    assert all(p.refused and p.path == str(folder) for p in opts.problems)
    assert "a symbolic link" in said["skipped b.jsonl"].expected
    assert "never followed" in said["skipped b.jsonl"].expected


#: for each format, a file name its folder walk takes, and a file that makes the folder its
#: format's (so that what is refused is the odd entry only)
TAKEN = {"jsonl": "x.jsonl", "telegram": "result.json", "messenger": "t/message_1.json",
         "whatsapp": "chat.txt", "botframework": "a.transcript", "rasa": "t.json",
         "intercom": "c.json", "freshdesk": "t.json", "slack": "export.zip"}


@pytest.mark.parametrize("fmt", sorted(sources.FORMATS))
@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_pipe_or_link_named_like_the_data_is_refused_in_every_format(
        tmp_path: Path, fmt: str, kind: str) -> None:
    assert set(TAKEN) == set(sources.FORMATS)
    folder = tmp_path / "export"
    odd = folder / "sub" / TAKEN[fmt]
    odd.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        write(tmp_path / "elsewhere" / odd.name, "never read")
        odd.symlink_to(tmp_path / "elsewhere" / odd.name)
    opts = sources.ReadOptions()
    assert sources.export_files(folder, fmt, opts) == []
    [problem] = opts.problems
    assert problem.position == f"skipped sub/{TAKEN[fmt]}" and problem.refused
    assert ("a named pipe (FIFO)" if kind == "fifo" else "a symbolic link") in problem.expected


def test_a_source_path_that_is_a_pipe_is_refused_never_waited_on(tmp_path: Path) -> None:
    import threading

    fifo = tmp_path / "web.jsonl"
    os.mkfifo(fifo)
    got: list[BaseException | list[Path]] = []

    def look() -> None:
        try:
            got.append(sources.export_files(fifo, "jsonl"))
        except UnreadableExport as exc:
            got.append(exc)

    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # blocked opening the pipe: let it go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("export_files waited on a FIFO")
    [caught] = got
    assert isinstance(caught, UnreadableExport), caught
    assert "a named pipe (FIFO)" in caught.detail and str(fifo) in str(caught)


def test_a_subfolder_that_cannot_be_read_is_refused_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.jsonl", "")
    locked = tmp_path / "2024"
    write(locked / "b.jsonl", "")
    listing = os.scandir

    def scandir(folder: Any) -> Any:  # as for a folder of mode 000 (root reads any)
        if Path(folder) == locked:
            raise PermissionError(13, "Permission denied", str(folder))
        return listing(folder)

    monkeypatch.setattr(os, "scandir", scandir)
    opts = sources.ReadOptions()
    assert sources.export_files(tmp_path, "jsonl", opts) == [tmp_path / "a.jsonl"]
    [problem] = opts.problems
    assert problem.position == "skipped 2024/" and problem.refused
    assert "cannot be read (Permission denied)" in problem.expected
    with pytest.raises(UnreadableExport, match="cannot be read"):
        sources.export_files(locked, "jsonl")


def test_export_run_refuses_a_pipe_and_a_link_named_like_the_data(tmp_path: Path,
                                                                   cli: Any) -> None:
    import export_kit

    site = export_kit.make_site(tmp_path, convs=[])
    folder = tmp_path / "web"
    export_kit.write_jsonl(folder / "day1.jsonl", [export_kit.conv("c1", ["hello"])])
    os.mkfifo(folder / "a.jsonl")
    (folder / "l.jsonl").symlink_to(site.source)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    export_kit.add_source(site, "folder", folder)
    export_kit.add_source(site, "pipe", fifo)

    res = cli("export", "run", *site.args(), "--json")
    assert res.code == 3, res.err
    by_name = {s["name"]: s for s in res.json()["sources"]}
    assert by_name["folder"]["exit_code"] == 3 and by_name["folder"]["conversations"] == 1
    errors = " ".join(by_name["folder"]["errors"])
    assert "skipped a.jsonl" in errors and "skipped l.jsonl" in errors
    assert by_name["pipe"]["exit_code"] == 3
    assert "a named pipe (FIFO)" in " ".join(by_name["pipe"]["errors"])
    status = cli("export", "status", "--home", site.exporter.path)
    assert status.code != 0, status.out
