"""Middlewares (error rendering, standard headers) and the structured access logger."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import ClientPayloadError, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from dockyard.api.context import context
from dockyard.api.responses import API_VERSION_HEADER, error_response
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
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLargeError())
    except (web.HTTPException, ConnectionResetError, BrokenPipeError):
        raise
    except Exception:
        error_logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(InternalError())


@web.middleware
async def standard_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Headers every response carries: the API version and the configured `http.headers`."""
    response = await handler(request)
    response.headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]
    for name, value in context(request).settings.extra_headers:
        response.headers.add(name, value)
    return response


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs every request that is not valid HTTP (a bad request line, an oversize or
    invalid header) at ERROR with a traceback. That is the client's mistake, and a hostile
    client could fill the log with tracebacks: one line at INFO says what was refused."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
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


class AccessLogger(AbstractAccessLogger):
    """One structured line per finished request: method, path, status, bytes, duration."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "path": request.path_qs,
                    "status": response.status,
                    "bytes": 0 if request.method == "HEAD" else response.content_length or 0,
                    "duration_ms": round(time * 1000, 3),
                    "remote": request.remote,
                    "user_agent": request.headers.get("User-Agent", ""),
                }
            },
        )
