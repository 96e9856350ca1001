"""What stands before every route: the bearer token, the body-size cap, and the one
place where errors become responses (``error_response``)."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any

import orjson

from jaxfit.errors import JaxfitError
from jaxfit.service.batcher import QueueFull


@dataclass(frozen=True)
class Limits:
    """Per-request caps of the service (each refused with its own status code)."""

    max_body_bytes: int = 1 << 20
    max_steps: int = 100_000
    max_fits: int = 1_000_000
    max_per_fit: int = 10_000
    timeout_s: float = 30.0
    max_hidden: int = 32


class HTTPError(Exception):
    """A request the service refuses: status code, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def encode(value: Any) -> bytes:
    """Strict JSON (orjson writes non-finite floats, a diverged fit's loss, as null)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(err: BaseException, timeout_s: float) -> tuple[int, bytes, dict[str, str]]:
    """``(status, JSON body, headers)`` for an error raised while answering a request."""
    if isinstance(err, HTTPError):
        status, message, headers = err.status, err.message, err.headers
    elif isinstance(err, QueueFull):
        status, message, headers = 503, "the fit queue is full; retry shortly", {"Retry-After": "1"}
    elif isinstance(err, TimeoutError):
        status, message, headers = 504, f"the request took longer than {timeout_s:g} s", {}
    elif isinstance(err, JaxfitError):
        status, message, headers = 422, str(err).replace("<dict>: ", ""), {}
    else:  # never a traceback to the client
        status, message, headers = 500, "internal error", {}
    return status, encode({"error": message}), headers


async def send_json(send: Any, status: int, raw: bytes, headers: dict[str, str] | None = None) -> None:
    """Send a whole JSON response over ASGI."""
    head = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
    head += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


def check_token(scope: dict, token: str | None) -> None:
    """Refuse (401/403) a request without the bearer token, when the server has one."""
    if token is None or scope["path"] == "/healthz":
        return
    header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    if not header.startswith("Bearer "):
        raise HTTPError(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(header[7:].encode(), token.encode()):
        raise HTTPError(403, "wrong token")


async def read_json(scope: dict, receive: Any, max_bytes: int) -> Any:
    """The request body as JSON, refused (413) past ``max_bytes``."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise HTTPError(413, f"request body is {int(value):,} bytes; at most {max_bytes:,} are accepted")
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "the client went away before sending the whole body")
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > max_bytes:
            raise HTTPError(413, f"request body is over {max_bytes:,} bytes")
    try:
        return orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise HTTPError(400, f"malformed JSON: {err}") from None


async def within(seconds: float, coro: Any) -> Any:
    """Await ``coro``, raising ``TimeoutError`` (504) past ``seconds``."""
    async with asyncio.timeout(seconds):
        return await coro
