"""Authentication, CSRF and security headers of the dashboard.

- **Token.** A request is authenticated by `Authorization: Bearer <token>`, or by the session
  cookie the login form sets (`jqd_auth`: an HMAC of the browser's id, so the token itself is
  never stored in the browser). Tokens are compared in constant time. Without a token
  (`no_auth`) every request is authenticated: the CLI allows that only on 127.0.0.1.
- **CSRF.** Every POST carries a token bound to the browser's id cookie (`jqd_id`, random):
  `HMAC(key, "csrf" + id)` in the form field `csrf` or the header `X-CSRF-Token`, checked
  server-side; a cross-site form can read neither. Cookies are HttpOnly and SameSite=Strict.
- **Headers.** A strict Content-Security-Policy (scripts and styles only from the app's own
  static files: no inline script can run, so an escaped-or-not `<script>` in job data is
  inert), no framing, no MIME sniffing, no referrer, no caching of pages.
"""

from __future__ import annotations

import secrets
from collections.abc import MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._state import Dashboard

__all__ = [
    "AUTH_COOKIE",
    "CSP",
    "ID_COOKIE",
    "SecurityMiddleware",
    "auth_cookie_headers",
    "csrf_ok",
    "csrf_token",
    "local_path",
    "read_form",
]

ID_COOKIE = "jqd_id"
AUTH_COOKIE = "jqd_auth"
SESSION_SECONDS = 12 * 3600

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# reachable without a token: the login form and the static assets
_PUBLIC = ("/login", "/static/")


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header: ignore it
                continue
    return {k: m.value for k, m in jar.items()}


def _cookie(scope: Scope, name: str, value: str, *, max_age: int | None) -> bytes:
    path = scope.get("root_path") or "/"
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if scope.get("scheme") == "https":
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")


def auth_cookie_headers(request: Request, dash: Dashboard) -> list[tuple[bytes, bytes]]:
    """Set-Cookie headers of a fresh login: a new browser id (no session fixation) and the
    proof of login bound to it."""
    nonce = secrets.token_urlsafe(24)
    return [
        (b"set-cookie", _cookie(request.scope, ID_COOKIE, nonce, max_age=None)),
        (
            b"set-cookie",
            _cookie(request.scope, AUTH_COOKIE, dash.sign("auth", nonce), max_age=SESSION_SECONDS),
        ),
    ]


def logout_cookie_headers(request: Request) -> list[tuple[bytes, bytes]]:
    """Set-Cookie headers that end the session."""
    return [(b"set-cookie", _cookie(request.scope, AUTH_COOKIE, "", max_age=0))]


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser (for the forms of the page being rendered)."""
    dash: Dashboard = request.app.state.dashboard
    return dash.sign("csrf", request.scope["jqd_nonce"])


def csrf_ok(request: Request, given: str | None) -> bool:
    """Whether `given` (a form field or header) is this browser's CSRF token; a browser
    without an id cookie (a first request, or a forged one) has none."""
    dash: Dashboard = request.app.state.dashboard
    nonce = request.scope.get("jqd_cookie_nonce")
    if not nonce or not given:
        return False
    return dash.verify("csrf", nonce, given)


_FORM_MAX = 64 * 1024


async def read_form(request: Request) -> FormData:
    """The request's url-encoded form (every form of the dashboard is one; anything else
    reads as empty). Parsed here, without `python-multipart`; at most 64 KB."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return FormData()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_MAX:
            raise HTTPException(413, "form too large")
    try:
        pairs: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100)
        )
    except ValueError:
        raise HTTPException(400, "bad form") from None
    return FormData(pairs)


def local_path(request: Request, target: str | None, default: str) -> str:
    """`target` when it is a path of this app (a redirect after login or an action), else
    `default`: never an open redirect."""
    root = request.scope.get("root_path", "")
    if (
        target
        and target.startswith(root + "/")
        and not target.startswith("//")
        and "\\" not in target
        and "://" not in target
    ):
        return target
    return default


class SecurityMiddleware:
    """Adds the security headers, gives each browser an id cookie, and refuses requests
    without the token (a login redirect for pages, 401 otherwise)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dash: Dashboard = scope["app"].state.dashboard
        await dash.startup()
        cookies = _cookies(scope)
        cookie_nonce = cookies.get(ID_COOKIE) or ""
        if len(cookie_nonce) > 100:
            cookie_nonce = ""
        nonce = cookie_nonce or secrets.token_urlsafe(24)
        scope["jqd_nonce"] = nonce
        scope["jqd_cookie_nonce"] = cookie_nonce
        path = _route_path(scope)
        authed, how = _authenticate(dash, scope, cookies, cookie_nonce)
        scope["jqd_auth"] = how
        static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                sets_id = any(
                    k == b"set-cookie" and v.startswith(ID_COOKIE.encode() + b"=")
                    for k, v in headers
                )
                if not cookie_nonce and not static and not sets_id:
                    headers.append((b"set-cookie", _cookie(scope, ID_COOKIE, nonce, max_age=None)))
                message["headers"] = headers
            await send(message)

        if not authed and not any(path.startswith(p) for p in _PUBLIC):
            await _refuse(scope, path, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _authenticate(
    dash: Dashboard, scope: Scope, cookies: dict[str, str], nonce: str
) -> tuple[bool, str]:
    if not dash.auth:
        return True, "none"
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and dash.token_matches(given.strip()):
                return True, "bearer"
    proof = cookies.get(AUTH_COOKIE)
    if nonce and proof and dash.verify("auth", nonce, proof):
        return True, "cookie"
    return False, ""


async def _refuse(scope: Scope, path: str, send: Any) -> None:
    headers: MutableMapping[bytes, bytes] = {}
    accept = b""
    for key, value in scope.get("headers", []):
        if key == b"accept":
            accept = value
    if scope.get("method") == "GET" and b"text/html" in accept:
        root = scope.get("root_path", "")
        target = root + path
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            target += "?" + query
        headers[b"location"] = f"{root}/login?next={quote(target, safe='')}".encode("latin-1")
        status, body = 303, b""
    else:
        headers[b"www-authenticate"] = b'Bearer realm="jobqueue dashboard"'
        status, body = 401, b"authentication required\n"
    headers[b"content-type"] = b"text/plain; charset=utf-8"
    headers[b"content-length"] = str(len(body)).encode()
    await send({"type": "http.response.start", "status": status, "headers": list(headers.items())})
    await send({"type": "http.response.body", "body": body})
