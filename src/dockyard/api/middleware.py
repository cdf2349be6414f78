"""Middlewares (error rendering, standard headers) and the structured access logger."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import ClientPayloadError, web
from aiohttp.abc import AbstractAccessLogger

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
