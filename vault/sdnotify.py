"""systemd's notify protocol: READY, STATUS and STOPPING through ``NOTIFY_SOCKET``.

A service of ``Type=notify`` tells systemd it is ready by sending the
datagram ``READY=1`` to the AF_UNIX socket named in ``$NOTIFY_SOCKET``
(a path, or an abstract name written with a leading ``@``). ``STATUS=...``
is shown by ``systemctl status``; ``STOPPING=1`` says a stop has begun.

This is the whole protocol we need, in a few lines instead of a dependency
on libsystemd. Without ``NOTIFY_SOCKET`` (run by hand, in tests) every call
does nothing. A failed send is logged and otherwise ignored: telling systemd
is never worth stopping the daemon for.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"
#: systemd truncates status lines; keep ours short and on one line
MAX_STATUS = 200


class Notifier:
    """Sends notify messages for the life of the daemon (one socket, kept open)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            if not (address.startswith("/") or address.startswith("@")):
                log.warning("ignoring %s=%r: neither a path nor an abstract name",
                            ENV, address)
                self.address = None
                return
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environment(cls) -> "Notifier":
        """Take ``$NOTIFY_SOCKET`` and remove it, so child processes do not see it."""
        return cls(os.environ.pop(ENV, None))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when it went out."""
        if self._sock is None or self.address is None:
            return False
        text = "\n".join(f"{key}={value}" for key, value in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto(text.encode("utf-8"), target)
        except OSError as exc:
            log.warning("cannot notify systemd through %s: %s", self.address, exc.strerror)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=_line(status))

    def status(self, status: str) -> bool:
        return self.send(STATUS=_line(status))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING="1", STATUS=_line(status))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _line(text: str) -> str:
    return " ".join(text.split())[:MAX_STATUS]
