"""Optional bearer-token auth (``--api-key`` or ``TEXTSIAMESE_API_KEY``): one key for the whole API.

Why a plain ASGI middleware rather than a route dependency: it refuses before anything is read or parsed
(no body, no JSON, no model work for a caller without the key), and it denies by default: every path needs
the key except the few in :data:`OPEN_PATHS`, so a route added later is protected without anyone remembering
to. Open are ``/health`` (load balancers probe it without credentials) and the static, data-free pages: the
search page at ``/`` and its files, ``/docs`` and the OpenAPI schema; the page's own calls (``/search``,
``/score``) then need the key like any other. ``/metrics`` needs it (Prometheus sends one with
``authorization: {credentials: ...}``).

Keys are compared with :func:`hmac.compare_digest` (time independent of where they differ), and the key is
never logged or echoed: a refusal says only whether a key was missing or wrong.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from textsiamese.serve.errors import error_body
from textsiamese.serve.middleware import send_json

OPEN_PATHS = frozenset({"/health", "/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)
ENV_VAR = "TEXTSIAMESE_API_KEY"


def is_open(path: str) -> bool:
    """Whether ``path`` answers without the key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def bearer_token(scope: Scope) -> bytes | None:
    """The token of the request's ``Authorization: Bearer TOKEN`` header (scheme case-blind), or None."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
            return None
    return None


class ApiKeyAuth:
    """Answer 401 (``WWW-Authenticate: Bearer``) to a request outside :data:`OPEN_PATHS` without ``key``."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        if not key:
            raise ValueError("the API key must not be empty")
        self.app = app
        self._key = key.encode("utf-8")

    def __repr__(self) -> str:  # never the key, whatever prints this object
        return "ApiKeyAuth(key=<hidden>)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or is_open(path):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is not None and hmac.compare_digest(token, self._key):
            await self.app(scope, receive, send)
            return
        if token is None:
            code, message = "missing_api_key", "this service needs an API key: send Authorization: Bearer KEY"
        else:
            code, message = "invalid_api_key", "the API key sent is not valid for this service"
        status, body = error_body(401, code, message, None, path)
        await send_json(send, status, body, [(b"www-authenticate", b"Bearer")])
