"""HTML transcripts for DSAR packages: printable, self-contained, inert.

Chat text is hostile input. Every value from the data goes through
:func:`html.escape` (quotes included) and nothing else is ever put in a
page unescaped; a Content-Security-Policy forbids scripts, frames, forms and
every external resource, so a page opened offline loads nothing and runs
nothing even if an escape were missed. Links point only at files inside
the package (relative paths made here, never taken from the data).
"""

from __future__ import annotations

from html import escape
from typing import Any

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'")

_STYLE = """
body { font: 11pt/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 46em;
       color: #111; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .3em .5em;
         border-bottom: 1px solid #ccc; }
.msg { border-left: 3px solid #888; padding: .2em .7em; margin: .6em 0;
       page-break-inside: avoid; }
.msg.customer { border-color: #2a6; } .msg.agent { border-color: #36c; }
.meta { color: #555; font-size: .9em; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.note { background: #f4f4f4; padding: .5em .8em; }
@media print { a { color: inherit; text-decoration: none; } body { margin: 0; } }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f'<meta name="referrer" content="no-referrer">\n'
            f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def _listing(value: Any) -> str:
    if value is None:
        return "<em>not stated in the processing register</em>"
    if isinstance(value, list):
        return "<ul>" + "".join(f"<li>{_e(v)}</li>" for v in value) + "</ul>"
    return _e(value)


_REGISTER_LABELS = [
    ("controller", "Controller"),
    ("purposes", "(a) Purposes of the processing"),
    ("categories", "(b) Categories of personal data"),
    ("recipients", "(c) Recipients"),
    ("retention", "(d) Retention period"),
    ("rights", "(e) Your rights: rectification, erasure, restriction, objection"),
    ("complaint", "(f) Right to lodge a complaint with a supervisory authority"),
    ("source", "(g) Source of the data"),
    ("automated_decisions", "(h) Automated decision-making"),
    ("transfers", "Transfers to third countries"),
]


def index_page(package: dict[str, Any]) -> str:
    case = package["case"]
    rows = []
    for n, c in enumerate(package["conversations"], 1):
        rows.append(f'<tr><td><a href="conversations/{n:04d}.html">{n}</a></td>'
                    f"<td>{_e(c.get('started_at'))}</td><td>{_e(c['source'])}</td>"
                    f"<td>{_e(c.get('channel') or c.get('title'))}</td>"
                    f"<td>{_e(c['subject_role'])}</td><td>{len(c['messages'])}</td></tr>")
    proc = package["processing"]
    register = "".join(f"<tr><th>{_e(label)}</th><td>{_listing(proc.get(key))}</td></tr>"
                       for key, label in _REGISTER_LABELS)
    register += "".join(f"<tr><th>Retention, {_e(src)}</th><td>{_e(text)}</td></tr>"
                        for src, text in proc.get("retention_by_source", {}).items())
    ids = ", ".join(package["subject"]["emails"] + package["subject"]["phones"])
    linked = "; ".join(f"{x['value']} ({x['linked_by']})"
                       for x in package["subject"].get("linked") or ())
    body = (f"<h1>Your data: access request {_e(case['case_id'])}</h1>\n"
            f"<p class=\"meta\">Request received {_e(case['received'])}; this copy made "
            f"{_e(package['generated_at'])}. Identifiers searched: {_e(ids)}."
            + (f" Also linked to you in our records: {_e(linked)}." if linked else "")
            + "</p>\n"
            "<p class=\"note\">Other people's names, e-mail addresses and phone numbers "
            "are redacted to protect their rights (GDPR Art. 15(4)); "
            "<code>manifest.json</code> lists every redaction and the SHA-256 of every "
            "file. <code>data.json</code> holds the same data in machine-readable form "
            "(schema in <code>schema/</code>).</p>\n"
            f"<h2>Conversations ({len(package['conversations'])})</h2>\n"
            "<table><tr><th>#</th><th>Started (UTC)</th><th>Source</th><th>Channel</th>"
            f"<th>Your role</th><th>Messages</th></tr>{''.join(rows)}</table>\n"
            f"<h2>How your data is processed (GDPR Art. 15(1))</h2>\n"
            f"<table>{register}</table>\n")
    return _page(f"Access request {case['case_id']}", body)


def conversation_page(package: dict[str, Any], conv: dict[str, Any], n: int) -> str:
    people = {p["id"]: p for p in conv["participants"]}
    parts = ["<p><a href=\"../index.html\">&larr; all conversations</a></p>",
             f"<h1>Conversation {n}: {_e(conv.get('title') or conv.get('channel') or '')}</h1>",
             f"<p class=\"meta\">{_e(conv['source'])} / {_e(conv['conversation_id'])}, "
             f"started {_e(conv.get('started_at'))}"
             + (f", {_e(conv.get('status'))}" if conv.get("status") else "") + "</p>"]
    if conv["subject_role"] == "mentioned":
        parts.append("<p class=\"note\">You are mentioned in this conversation; only the "
                     "messages that mention you are shown.</p>")
    parts.append("<h2>Participants</h2><ul>" + "".join(
        f"<li>{_e(p.get('name') or p['id'])} ({_e(p['role'])})"
        + "".join(f", {_e(p[k])}" for k in ("email", "phone") if p.get(k)) + "</li>"
        for p in conv["participants"]) + "</ul><h2>Messages</h2>")
    for m in conv["messages"]:
        who = people.get(m.get("from") or "", {})
        role = who.get("role", "system")
        name = who.get("name") or m.get("from") or "system"
        flags = " (internal note)" if m.get("visibility") == "private" else ""
        files = "".join(
            f"<li>{_e(a.get('name') or 'attachment')}"
            + (f' &ndash; <a href="../{_e(a["file"])}">open</a>' if a.get("file") else
               " (not held)")
            + (f": <span class=\"text\">{_e(a['text'])}</span>" if a.get("text") else "")
            + "</li>" for a in m.get("attachments") or ())
        parts.append(f'<div class="msg {_e(role)}"><div class="meta">{_e(name)} '
                     f"&middot; {_e(m['at'])}{_e(flags)}</div>"
                     f'<div class="text">{_e(m["text"])}</div>'
                     + (f"<ul>{files}</ul>" if files else "") + "</div>")
    return _page(f"{package['case']['case_id']}: conversation {n}", "\n".join(parts))
