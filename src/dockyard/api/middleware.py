"""Middlewares (error rendering, standard headers) and the structured access logger."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import ClientPayloadError, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from dockyard.api.context import context
from dockyard.api.responses import API_VERSION_HEADER, BODY_PROGRESS, error_response
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


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate registry errors into the spec's JSON body; never leak a traceback."""
    try:
        return await handler(request)
    except RegistryError as exc:
        return error_response(exc)
    except ClientPayloadError as exc:
        # The client stopped sending mid-body; it is usually gone, but answer anyway.
        return error_response(BlobUploadInvalidError(f"incomplete request body: {exc}"))
    except web.RequestPayloadError as exc:
        # A body aiohttp cannot decode: a wrong Content-Encoding or chunked framing.
        cause = exc.__cause__
        reason = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
        return error_response(BlobUploadInvalidError(f"unreadable request body: {reason}"))
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLargeError())
    except (ConnectionResetError, BrokenPipeError):
        transport = request.transport
        if transport is not None and not transport.is_closing():
            raise
        # The client went away mid-body or mid-download: no server error, nobody to answer
        # (aiohttp drops this response quietly), and no traceback for the log.
        return error_response(BlobUploadInvalidError("the client closed the connection"))
    except web.HTTPException:
        raise
    except Exception:
        error_logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(InternalError())


async def standard_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response carries: the API version and the configured `http.headers`
    (`on_response_prepare`: also on the responses a handler starts sending itself, such as
    a blob streamed while the cache downloads it)."""
    headers = response.headers
    headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]
    for name, value in context(request).settings.extra_headers:
        if name.lower() == "server":  # in place of aiohttp's own
            headers[name] = value
        else:
            headers.add(name, value)


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


def access_logger_for(sink: AccessSink) -> type[AbstractAccessLogger]:
    """aiohttp's access-logger hook, writing one structured line per request to `sink`."""

    class AccessLogger(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            method = request.method
            progress = response.get(BODY_PROGRESS)
            if method == "HEAD":
                size = 0
            elif progress is not None:
                size = progress.sent  # a body cut short says how far it got
            else:
                size = response.content_length or 0
            sink.request(
                method,
                request.path_qs,
                response.status,
                size,
                time,
                request.remote,
                request.headers.get("User-Agent", ""),
            )

    return AccessLogger
