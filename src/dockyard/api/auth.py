"""Authentication and authorization at the HTTP edge, and the built-in token endpoint.

Unauthenticated requests that need access get 401 with a challenge; authenticated callers
without the right get 403 DENIED. Credentials never reach the logs.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from dockyard.api.context import context
from dockyard.api.middleware import Handler
from dockyard.api.responses import json_response
from dockyard.api.routing import Resource, Route, route_of
from dockyard.auth.authenticator import Authenticator, Identity
from dockyard.auth.rules import DELETE, PULL, PUSH
from dockyard.auth.scopes import parse_scopes
from dockyard.errors import DeniedError, NotFoundError, RegistryError, UnauthorizedError
from dockyard.oci.names import is_valid_name, validate_name

IDENTITY: web.RequestKey[Identity] = web.RequestKey("dockyard_identity", Identity)
TOKEN_PATH = "/dockyard/auth/token"

_READS = ("GET", "HEAD")


class TokenRequestInvalidError(RegistryError):
    code = "UNSUPPORTED"
    status = 400
    default_message = "malformed token request: send an application/x-www-form-urlencoded form"


def required_action(route: Route, method: str) -> str | None:
    """The action a request needs on its repository (None: no repository involved)."""
    if route.resource in (Resource.BASE, Resource.CATALOG):
        return None
    if route.resource in (Resource.UPLOADS, Resource.UPLOAD):
        return PUSH
    if method in _READS:
        return PULL
    if method == "DELETE":
        return DELETE
    return PUSH


def identity(request: web.Request) -> Identity | None:
    """Who made the request (None when authentication is off)."""
    return request.get(IDENTITY)


def may(request: web.Request, repository: str, action: str) -> bool:
    """Whether the caller may take `action` on `repository` (always, when auth is off)."""
    auth = context(request).auth
    who = identity(request)
    if auth is None or who is None:
        return True
    return action in auth.allowed(who, repository)


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _unauthorized(
    auth: Authenticator, request: web.Request, scope: str | None, message: str
) -> UnauthorizedError:
    header = auth.challenge_header(_base_url(request), scope)
    return UnauthorizedError(message, headers={"WWW-Authenticate": header})


def _challenge_scope(request: web.Request, route: Route, action: str) -> str:
    """The scope a 401 asks the client to get a token for.

    A cross-repository mount also reads the source repository, so (as Distribution does)
    the challenge names `repository:<from>:pull` too, and a client that follows it gets
    one token for both. A token without the source grant still uploads: the mount falls
    back to a new session (202).
    """
    scope = f"repository:{route.name}:{'pull' if action == PULL else f'pull,{action}'}"
    if route.resource is Resource.UPLOADS and request.method == "POST":
        source = request.query.get("from")
        # A source that is not a repository name cannot be mounted from: no scope for it.
        if request.query.get("mount") and source and source != route.name and is_valid_name(source):
            scope += f" repository:{source}:pull"
    return scope


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = context(request).auth
    if auth is None or not request.path.startswith("/v2"):
        return await handler(request)
    route = route_of(request)
    try:
        who = auth.identify(request.headers.get("Authorization"))
    except UnauthorizedError as exc:
        raise _unauthorized(auth, request, None, exc.message) from None
    request[IDENTITY] = who
    if route is None:
        return await handler(request)
    if route.resource is Resource.BASE:
        # As Distribution does: the ping always challenges anonymous callers, so clients
        # learn how to authenticate before their first real request (public content still
        # answers anonymous requests).
        if who.anonymous:
            raise _unauthorized(auth, request, None, "authentication required")
        return await handler(request)
    if route.resource is Resource.CATALOG:
        if who.anonymous and not auth.policy.anonymous_can_pull_somewhere():
            raise _unauthorized(auth, request, "registry:catalog:*", "authentication required")
        return await handler(request)
    # Before the name goes into a challenge header: aiohttp refuses to send a control
    # character there, and the client would get a dropped connection instead of a 400.
    validate_name(route.name)
    action = required_action(route, request.method)
    if action is None or action in auth.allowed(who, route.name):
        return await handler(request)
    scope = _challenge_scope(request, route, action)
    if who.anonymous or who.token_access is not None:
        # No credentials, or a token without this grant: ask for (a better) token.
        message = f"{action} access to {route.name} requires authentication"
        raise _unauthorized(auth, request, scope, message)
    raise DeniedError(f"{who.user} may not {action} {route.name}", detail={"action": action})


async def token_endpoint(request: web.Request) -> web.StreamResponse:
    """The built-in token service: GET with Basic credentials, or OAuth2 password POST."""
    auth = context(request).auth
    if auth is None or auth.issuer is None:
        raise NotFoundError(detail={"path": request.path})
    user: str | None = None
    scopes = request.query.getall("scope", [])
    if request.method == "POST":
        idle = context(request).settings.body_idle_timeout
        try:
            # A form is small: all of it must arrive within the body idle timeout.
            async with asyncio.timeout(idle):
                form = await request.post()
        except ValueError:  # a multipart body without its boundary, bytes that are not UTF-8
            raise TokenRequestInvalidError() from None
        except TimeoutError:
            raise TokenRequestInvalidError(f"token request body stalled for {idle:g}s") from None
        if form.get("grant_type") == "password":
            name, password = str(form.get("username", "")), str(form.get("password", ""))
            if not auth.check_password(name, password):
                raise _unauthorized(auth, request, None, "invalid username or password")
            user = name
        scopes += [str(s) for s in form.getall("scope", [])]
    if user is None and request.headers.get("Authorization"):
        try:
            who = auth.identify(request.headers["Authorization"])
        except UnauthorizedError as exc:
            raise _unauthorized(auth, request, None, exc.message) from None
        user = who.user
    granted = auth.grant(user, parse_scopes(scopes))
    token, lifetime, issued = auth.issuer.issue(user, granted)
    return json_response(
        {
            "token": token,
            "access_token": token,
            "expires_in": lifetime,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued)),
        }
    )
