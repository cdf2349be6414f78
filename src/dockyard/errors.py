"""Every error a client can see, one class per OCI error code.

The distribution spec names the codes; the HTTP statuses follow the spec's endpoint table
and, where it is silent, what Distribution registers for the same code. The HTTP layer
renders these in one place (`dockyard.api.errors`); nothing else knows about statuses.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    """An error with an OCI error code, an HTTP status and a message for the client."""

    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(
        self,
        message: str | None = None,
        detail: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The error as one entry of the spec's `errors` array."""
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return entry


class BlobUnknownError(RegistryError):
    code = "BLOB_UNKNOWN"
    status = 404
    default_message = "blob unknown to registry"


class BlobUploadInvalidError(RegistryError):
    code = "BLOB_UPLOAD_INVALID"
    status = 400
    default_message = "blob upload invalid"


class RangeNotSatisfiableError(BlobUploadInvalidError):
    """A chunk out of order or overlapping what was already received."""

    status = 416
    default_message = "requested range not satisfiable"


class BlobUploadUnknownError(RegistryError):
    code = "BLOB_UPLOAD_UNKNOWN"
    status = 404
    default_message = "blob upload unknown to registry"


class DigestInvalidError(RegistryError):
    code = "DIGEST_INVALID"
    status = 400
    default_message = "provided digest did not match uploaded content"


class ManifestBlobUnknownError(RegistryError):
    code = "MANIFEST_BLOB_UNKNOWN"
    status = 400
    default_message = "manifest references a manifest or blob unknown to registry"


class ManifestInvalidError(RegistryError):
    code = "MANIFEST_INVALID"
    status = 400
    default_message = "manifest invalid"


class ManifestTooLargeError(ManifestInvalidError):
    status = 413
    default_message = "manifest exceeds the size limit"


class ManifestUnknownError(RegistryError):
    code = "MANIFEST_UNKNOWN"
    status = 404
    default_message = "manifest unknown to registry"


class NameInvalidError(RegistryError):
    code = "NAME_INVALID"
    status = 400
    default_message = "invalid repository name"


class NameUnknownError(RegistryError):
    code = "NAME_UNKNOWN"
    status = 404
    default_message = "repository name not known to registry"


class SizeInvalidError(RegistryError):
    code = "SIZE_INVALID"
    status = 400
    default_message = "provided length did not match content length"


class TagInvalidError(RegistryError):
    """An invalid tag; reported as MANIFEST_INVALID, the code the spec lists for it."""

    code = "MANIFEST_INVALID"
    status = 400
    default_message = "invalid tag"


class UnauthorizedError(RegistryError):
    code = "UNAUTHORIZED"
    status = 401
    default_message = "authentication required"


class DeniedError(RegistryError):
    code = "DENIED"
    status = 403
    default_message = "requested access to the resource is denied"


class UnsupportedError(RegistryError):
    code = "UNSUPPORTED"
    status = 405
    default_message = "the operation is unsupported"


class PayloadTooLargeError(RegistryError):
    code = "SIZE_INVALID"
    status = 413
    default_message = "request body too large"


class TooManyRequestsError(RegistryError):
    code = "TOOMANYREQUESTS"
    status = 429
    default_message = "too many requests"


class StorageFullError(RegistryError):
    """The filesystem under the store has no room left."""

    code = "DENIED"
    status = 507
    default_message = "registry storage is full"


class NotFoundError(RegistryError):
    """A path outside the API."""

    code = "UNSUPPORTED"
    status = 404
    default_message = "no such API endpoint"


class MethodNotAllowedError(RegistryError):
    code = "UNSUPPORTED"
    status = 405
    default_message = "method not allowed on this endpoint"


class UpstreamUnavailableError(RegistryError):
    """The upstream registry could not be reached."""

    code = "UPSTREAM_UNAVAILABLE"
    status = 503
    default_message = "upstream registry unavailable"


class UpstreamTimeoutError(RegistryError):
    """The upstream registry did not answer in time."""

    code = "UPSTREAM_TIMEOUT"
    status = 504
    default_message = "upstream registry did not answer in time"


class UpstreamBadResponseError(RegistryError):
    """The upstream registry answered with an error or with content that failed verification."""

    code = "UPSTREAM_ERROR"
    status = 502
    default_message = "upstream registry failed"
