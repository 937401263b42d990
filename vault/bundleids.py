"""The conversation ids of one bundle: each conversation at most once.

A bundle holds each conversation once; the vault refuses one that repeats an
id. :class:`IdLedger` checks a whole bundle at its end (sealing and ingest,
whose memory must not grow with the bundle); :class:`SeenIds` answers on the
spot for the exporter, which must skip a repeat before it is sealed.
"""

from __future__ import annotations


class SeenIds:
    """The conversation ids met so far in one bundle, to refuse one met twice.

    Keeps a 16-byte digest of each id with the position it was met at:
    memory grows by about 150 bytes a conversation, whatever the ids' length.
    """

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}

    def first(self, conversation_id: str, position: int) -> int | None:
        """The position the id was met at before, or None (and remember it)."""
        import hashlib

        key = hashlib.blake2b(conversation_id.encode("utf-8", "surrogatepass"),
                              digest_size=16).digest()
        earlier = self._seen.get(key)
        if earlier is None:
            self._seen[key] = position
        return earlier


class IdLedger:
    """The conversation ids of one whole bundle, checked for a repeat once it is read.

    Sealing and ingest see every record before the bundle counts, so a repeat
    need not be caught on its line: each id is kept as an 8-byte digest with
    its position (16 bytes a conversation, in arrays spread over 256 buckets
    by the digest's low byte), and :meth:`repeat` looks for a digest twice one
    bucket at a time, so that no structure of the whole bundle's size is ever
    built from Python objects. (A dict of digests took about 150 bytes a
    conversation and made peak memory grow with the bundle.) Two ids with the
    same 64-bit digest would be reported as a repeat: about one chance in
    10^9 for a bundle of 200,000 conversations, and then nothing is lost, the
    bundle is refused.
    """

    _BUCKETS = 256

    def __init__(self) -> None:
        import array

        self._digests = [array.array("Q") for _ in range(self._BUCKETS)]
        self._positions = [array.array("Q") for _ in range(self._BUCKETS)]

    def add(self, conversation_id: str, position: int) -> None:
        import hashlib

        digest = int.from_bytes(hashlib.blake2b(
            conversation_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        bucket = digest & (self._BUCKETS - 1)
        self._digests[bucket].append(digest)
        self._positions[bucket].append(position)

    def repeat(self) -> tuple[int, int] | None:
        """(first position, later position) of the earliest repeated id, or None."""
        found: tuple[int, int] | None = None
        for digests, positions in zip(self._digests, self._positions):
            if len(set(digests)) == len(digests):
                continue
            first: dict[int, int] = {}
            for digest, position in zip(digests, positions):
                earlier = first.setdefault(digest, position)
                if earlier != position and (found is None or position < found[1]):
                    found = (earlier, position)
        return found
