"""Middlewares (error rendering, standard headers) and the structured access logger."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import ClientPayloadError, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from dockyard.api.metrics import RequestStats
from dockyard.api.responses import BODY_PROGRESS, StandardHeaders, error_response
from dockyard.errors import (
    BlobUploadInvalidError,
    PayloadTooLargeError,
    RegistryError,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

error_logger = logging.getLogger("dockyard.api")


class InternalError(RegistryError):
    code = "UNKNOWN"
    status = 500
    default_message = "internal server error"


def answers(standard: StandardHeaders) -> Middleware:
    """The middleware that gives every request an answer in the API's terms: registry errors
    as the spec's JSON body, never a traceback, and the standard headers on every response.

    A handler that prepares its response itself (a blob streamed while the cache downloads
    it) applies the standard headers first; everything else gets them here.
    """

    @web.middleware
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except RegistryError as exc:
            response = error_response(exc)
        except ClientPayloadError as exc:
            # The client stopped sending mid-body; it is usually gone, but answer anyway.
            response = error_response(BlobUploadInvalidError(f"incomplete request body: {exc}"))
        except web.RequestPayloadError as exc:
            # A body aiohttp cannot decode: a wrong Content-Encoding or chunked framing.
            cause = exc.__cause__
            reason = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
            response = error_response(BlobUploadInvalidError(f"unreadable request body: {reason}"))
        except web.HTTPRequestEntityTooLarge:
            response = error_response(PayloadTooLargeError())
        except (ConnectionResetError, BrokenPipeError):
            transport = request.transport
            if transport is not None and not transport.is_closing():
                raise
            # The client went away mid-body or mid-download: no server error, nobody to
            # answer (aiohttp drops this response quietly), and no traceback for the log.
            response = error_response(BlobUploadInvalidError("the client closed the connection"))
        except web.HTTPException as exc:
            # aiohttp's own answers (as aiohttp would render them), with the standard headers.
            response = web.Response(
                status=exc.status, reason=exc.reason, text=exc.text, headers=exc.headers
            )
        except Exception:
            error_logger.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(InternalError())
        if not response.prepared:
            standard.apply(response.headers)
        return response

    return answer


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs every request that is not valid HTTP (a bad request line, an oversize or
    invalid header, a body it cannot decode) at ERROR with a traceback. That is the client's
    mistake, and a hostile client could fill the log with tracebacks: one line at INFO says
    what was refused."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, web.RequestPayloadError):
            # An unread body aiohttp drains after the response, and cannot decode.
            exc = exc.__cause__
        if not isinstance(exc, HttpProcessingError):
            return True  # anything else is a real error: keep its traceback
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg, record.args = "malformed request refused", ()
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
        # Not what follows the colon: it quotes the request's bytes, credentials included.
        reason = str(exc.message).split("\n", 1)[0].split(":", 1)[0][:120]
        record.__dict__["fields"] = {
            "status": exc.code,
            "error": type(exc).__name__,
            "reason": reason,
            "remote": remote,
        }
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


# The logger `dockyard serve` gives aiohttp's connection handler.
protocol_logger = logging.getLogger("dockyard.http")
protocol_logger.addFilter(_MalformedRequestFilter())


class AccessSink(Protocol):
    def request(
        self,
        method: str,
        path: str,
        status: int,
        size: int,
        seconds: float,
        remote: str | None,
        user_agent: str,
    ) -> None:
        """Record one finished request."""


def access_logger_for(
    sink: AccessSink | None, stats: RequestStats | None = None
) -> type[AbstractAccessLogger]:
    """aiohttp's hook for every answered request: counted in `stats` (the request metrics)
    and written as one structured line to `sink` (the access log), each when given.

    aiohttp calls it once the response's last byte has gone out (or the client is gone),
    with the time since the request arrived. Give the runner a logger even when the access
    log is off: aiohttp calls the hook only when it has one.
    """

    class AccessLogger(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            method = request.method
            if method == "HEAD":
                size = 0
            elif type(response) is web.Response:  # a body in memory: it all went out
                size = response.content_length or 0
            elif (progress := response.get(BODY_PROGRESS)) is not None:
                size = progress.sent  # a body cut short says how far it got
            else:
                size = response.content_length or 0
            if stats is not None:
                stats.finished(request, response.status, size, time)
            if sink is not None:
                sink.request(
                    method,
                    request.raw_path,
                    response.status,
                    size,
                    time,
                    request.remote,
                    request.headers.get("User-Agent", ""),
                )

    return AccessLogger
