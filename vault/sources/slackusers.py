"""The people of a Slack export: who a user id in a message or a member list is.

Names, e-mail and phone come from ``users.json``, whose values are not
trusted: one that is no string is left out of the participant and kept in
its ``extra``. A user missing from it (``USLACKBOT``, a shared-channel user
of another workspace, a deleted user, a bot with only ``bot_id``) is named
from the message itself. Every participant is filed under
:func:`vault.sources.record_id` of its Slack id, the whole id kept in
``platform_ids.slack``.
"""

from __future__ import annotations

from typing import Any, Callable

from vault import records
from vault.sources import as_object, record_id

SLACKBOT = "USLACKBOT"

_USER_MAPPED = {"id", "real_name", "profile", "is_bot"}


def _text(*values: Any) -> str | None:
    """The first of ``values`` that is a non-empty string (users.json is not trusted)."""
    return next((v for v in values if isinstance(v, str) and v), None)


def participant(uid: str, raw: dict[str, Any], users: dict[str, Any]) -> dict[str, Any]:
    """The participant for Slack user ``uid`` (filed under ``record_id(uid)``)."""
    info = users.get(uid)
    pid = record_id(uid)
    if info is not None:
        profile = as_object(info.get("profile"))
        bot = bool(info.get("is_bot")) or uid == SLACKBOT
        extra = {k: v for k, v in info.items() if k not in _USER_MAPPED}
        rest = {k: v for k, v in profile.items()
                if k not in ("real_name", "email", "phone") and not k.startswith("image_")}
        odd = {k: profile[k] for k in ("real_name", "email", "phone")
               if k in profile and not isinstance(profile[k], str)}
        if rest or odd:
            extra["profile"] = {**rest, **odd}  # a name that is no string: kept as written
        if not isinstance(info.get("real_name"), (str, type(None))):
            extra["real_name"] = info["real_name"]
        return records.participant(
            pid, "bot" if bot else "customer",
            name=_text(profile.get("real_name"), info.get("real_name"), info.get("name")),
            email=_text(profile.get("email")), phone=_text(profile.get("phone")),
            platform_ids={"slack": uid}, extra=extra)
    shown, bot_profile = as_object(raw.get("user_profile")), as_object(raw.get("bot_profile"))
    name = (shown.get("real_name") or shown.get("display_name") or shown.get("name")
            or raw.get("username") or bot_profile.get("name")
            or ("Slackbot" if uid == SLACKBOT else None))
    bot = uid == SLACKBOT or "bot_id" in raw or raw.get("subtype") == "bot_message"
    team = raw.get("user_team") or shown.get("team")
    return records.participant(pid, "bot" if bot else "customer",
                               name=name if isinstance(name, str) else None,
                               platform_ids={"slack": uid},
                               extra={"team": team, "not_in_users_json": True})


def add_members(members: Any, users: dict[str, Any], people: dict[str, dict[str, Any]],
                 said: Callable[[str], None]) -> None:
    """Members of a direct message who did not write become participants too."""
    if not isinstance(members, list):
        return
    for uid in members:
        if isinstance(uid, str) and uid and record_id(uid) not in people:
            person = participant(uid, {}, users)
            person["extra"] = {**person.get("extra", {}), "member_only": True}
            people[person["id"]] = person
            if person["id"] != uid:
                said(uid)
