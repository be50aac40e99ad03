"""What a request may carry: bounded bodies, strict JSON, and ids that are ids.

A body is read up to `MAX_BODY` bytes (refused from its Content-Length, or as soon as the
stream passes it) within `BODY_SECONDS`; JSON without NaN or Infinity, however deep it is
nested; a list of ids holds at most `MAX_IDS` integers in the range of a 64-bit row id (a
string, a boolean or a float is not an id).
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, NoReturn

from starlette.requests import ClientDisconnect, Request

#: The largest request body accepted, in bytes.
MAX_BODY = 1_000_000
#: The most ids (images or events) one request may name.
MAX_IDS = 10_000
#: How long a body may take to arrive.
BODY_SECONDS = 20.0
_MAX_ROW_ID = 2**63


class BadRequest(Exception):
    """A request the server will not act on; ``status`` is its HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def json_body(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object, within the limits above."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("a bad Content-Length")
        if int(declared) > MAX_BODY:
            raise BadRequest(f"a request body may hold at most {MAX_BODY:,} bytes", 413)
    try:
        async with asyncio.timeout(BODY_SECONDS):
            raw = await _read(request)
    except TimeoutError:
        raise BadRequest("the request body took too long to arrive", 408) from None
    except ClientDisconnect:
        raise BadRequest("the request body was cut off") from None
    try:
        payload = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:100]}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    return payload


async def _read(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(f"a request body may hold at most {MAX_BODY:,} bytes", 413)
    return bytes(body)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def row_id(value: object, what: str = "an id") -> int:
    """An integer 1 <= id < 2**63 (never a bool, a float or a string of digits)."""
    if type(value) is not int or not 1 <= value < _MAX_ROW_ID:
        raise BadRequest(f"{what} must be a whole number from 1 to 2^63 - 1")
    return value


def id_list(payload: dict[str, Any], key: str) -> list[int]:
    """``payload[key]`` as distinct row ids in their order, at most `MAX_IDS` of them."""
    if key not in payload:
        raise BadRequest(f"the body needs {key!r}")
    values = payload[key]
    if not isinstance(values, list):
        raise BadRequest(f"{key!r} must be a list of ids")
    if len(values) > MAX_IDS:
        raise BadRequest(f"at most {MAX_IDS:,} {key} in one request", 413)
    return list(dict.fromkeys(row_id(v, f"each of {key!r}") for v in values))


def path_id(text: str) -> int:
    """An id from the URL (the route already took digits only)."""
    return row_id(int(text) if text.isdigit() and len(text) < 20 else 0, "an image id")


def cursor(text: str) -> int | str:
    """A queue's ``after``: an id, or the ``score:id`` a ranked queue gave."""
    if ":" not in text:
        return path_id(text) if text not in ("", "0") else 0
    score, _, tail = text.rpartition(":")
    try:
        value = float(score)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest("after: a ranked queue pages by the next value it gave")
    return f"{score}:{path_id(tail)}"
