"""Decoding a response's ``Content-Encoding`` within a byte cap.

requests hands the crawl a body exactly as it came over the wire (it is streamed with
``decode_content=False``), so a gzip-encoded image or result page arrives compressed. These
decoders undo gzip and deflate chunk by chunk through ``zlib.decompressobj`` with
``max_length``, so that the *decoded* size never passes the cap: a few kilobytes that inflate
to gigabytes (a decompression bomb) are refused once the cap is passed, never held whole.
Anything else (br, zstd, compress, several codings stacked) is refused by name.
"""

from __future__ import annotations

import zlib
from typing import Protocol

#: What the crawl asks for: the codings it can decode.
ACCEPT_ENCODING = "gzip, deflate"
_GZIP_MAGIC = b"\x1f\x8b"
#: Decoded bytes asked of zlib at a time: its own output buffer stays this small.
_STEP = 256 * 1024


class EncodingError(Exception):
    """A body that cannot be decoded; ``reason`` is its short code."""

    reason = "bad-encoding"


class UnsupportedEncoding(EncodingError):
    reason = "unsupported-encoding"


class CorruptEncoding(EncodingError):
    reason = "corrupt-encoding"


class DecodedTooLarge(EncodingError):
    reason = "too-large"


class Decoder(Protocol):
    def feed(self, data: bytes) -> list[bytes]:
        """The decoded pieces of the next bytes of the body (kept apart: joining them would
        hold the body twice)."""
        ...

    def finish(self) -> None:
        """Raise if the body ended before its stream did."""
        ...


class Identity:
    """No coding: the bytes as they came (the caller caps their size)."""

    def feed(self, data: bytes) -> list[bytes]:
        return [data]

    def finish(self) -> None:
        pass


class ZlibDecoder:
    """gzip (several members too) or deflate, with at most ``limit`` bytes decoded."""

    def __init__(self, coding: str, limit: int) -> None:
        self.coding = coding
        self.limit = limit
        self.size = 0
        self._z: zlib._Decompress | None = None
        self._done = False  # past the last member: whatever follows is ignored
        self._head = b""  # a first byte, waiting for the second

    def feed(self, data: bytes) -> list[bytes]:
        if self._z is None:
            data, self._head = self._head + data, b""
            if len(data) < 2:  # the two first bytes say which stream this is
                self._head = data
                return []
        out: list[bytes] = []
        while data and not self._done:
            if self._z is None or self._z.eof:
                data = self._start(data)
                continue
            room = min(self.limit - self.size + 1, _STEP)  # a byte over the cap tells it
            try:
                piece = self._z.decompress(data, room)
            except zlib.error as exc:
                raise CorruptEncoding(f"the {self.coding} body is corrupt: {exc}") from None
            self.size += len(piece)
            if self.size > self.limit:
                raise DecodedTooLarge(f"decodes to more than {self.limit:,} bytes")
            rest = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
            if not piece and len(rest) == len(data):
                raise CorruptEncoding(f"the {self.coding} body does not decode")
            out.append(piece)
            data = rest
        return out

    def finish(self) -> None:
        if self._z is None and not self._head:
            return  # an empty body stays empty, for the image checks to name
        if self._z is not None and (self._done or self._z.eof):
            return
        raise CorruptEncoding(f"the {self.coding} body ends before its end")

    def _start(self, data: bytes) -> bytes:
        """Begin the stream (or the next gzip member) on ``data``; what is left to decode."""
        if self._z is None:
            self._z = zlib.decompressobj(self._wbits(data))
            return data
        # gzip allows members one after another; anything else after the end (padding some
        # servers add) is dropped, as urllib3 drops it.
        if self.coding == "gzip" and _GZIP_MAGIC.startswith(data[:2]):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return data
        self._done = True
        return b""

    def _wbits(self, first: bytes) -> int:
        if self.coding == "gzip":
            return 16 + zlib.MAX_WBITS
        # HTTP's deflate is a zlib stream, but some servers send raw deflate: a zlib stream's
        # two first bytes say so (method 8, and a multiple of 31).
        if first[0] & 0x0F == 8 and int.from_bytes(first[:2]) % 31 == 0:
            return zlib.MAX_WBITS
        return -zlib.MAX_WBITS


def decoder_for(content_encoding: str | None, limit: int) -> Decoder:
    """The decoder for a ``Content-Encoding`` header; `UnsupportedEncoding` when there is
    none for it."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return Identity()
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return ZlibDecoder("deflate" if codings[0] == "deflate" else "gzip", limit)
    shown = (content_encoding or "").strip()[:80]
    raise UnsupportedEncoding(f"Content-Encoding {shown!r}: curator decodes gzip and deflate")
