"""What wraps every request: the Host and cross-site checks, the session cookie, the security headers, and the
error shapes (`{"error": "one line"}`; see the route list in app.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from stylemapgan.editing import EditingError
from stylemapgan.serving.bodies import validation_message
from stylemapgan.serving.errors import ApiError
from stylemapgan.serving.state import server_state

log = logging.getLogger("stylemapgan.serving")

SESSION_COOKIE = "stylemapgan_session"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
}
STATELESS_PATHS = ("/api/stats",)  # and /static/: a script or a crawler asking for these uses up no session


def from_another_site(request: Request) -> bool:
    """Did another web page make the browser send this? (See the module docstring of app.py.)"""
    fetch_site = request.headers.get("sec-fetch-site", "").lower()
    if fetch_site in ("cross-site", "same-site"):  # same-site: another port of localhost is another app
        opens_page = request.url.path == "/" and request.method == "GET" and (
            request.headers.get("sec-fetch-mode", "").lower() == "navigate")
        return not opens_page
    origin = request.headers.get("origin")
    if origin is not None and request.method not in ("GET", "HEAD", "OPTIONS"):
        return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
    return False


def host_allowed(host_header: str, allowed: Sequence[str]) -> bool:
    """Host header (without port) in the allowed list: a DNS-rebinding page cannot talk to a local server."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return "*" in allowed or host in allowed


def opens_page_from_another_site(request: Request) -> bool:
    """A link on another site opening the page: the browser leaves out our SameSite=Strict cookie on that one
    request, so offering a new cookie would replace the user's session (and hide their uploads)."""
    return request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site")


async def guard_and_session(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Refuse a wrong Host (400) or another site's request (403) before it gets a session; then find the
    session (`request.state.session`: the cookie's, or the shared anonymous one with a cookie offered; see
    store.py), and set the offered cookie and the security headers on the answer."""
    state = server_state(request)
    if not host_allowed(request.headers.get("host", ""), state.allowed_hosts):
        return JSONResponse({"error": "host not allowed"}, status_code=400, headers=SECURITY_HEADERS)
    if from_another_site(request):
        return JSONResponse({"error": "refused: a request from another site"}, status_code=403,
                            headers=SECURITY_HEADERS)
    offer = False
    if request.url.path.startswith("/static/") or request.url.path in STATELESS_PATHS:
        session = None
    else:
        session, offer = state.sessions.session_for(request.cookies.get(SESSION_COOKIE))
        offer = offer and not opens_page_from_another_site(request)
    request.state.session = session
    response = await call_next(request)
    if offer:
        response.set_cookie(SESSION_COOKIE, state.sessions.offer(), httponly=True, samesite="strict", path="/")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.message}
    if exc.status == 409:
        body["superseded"] = True
    return JSONResponse(body, status_code=exc.status)


async def on_editing_error(request: Request, exc: EditingError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": validation_message(exc)}, status_code=422)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, status_code=500,
                        headers=SECURITY_HEADERS)  # this response bypasses the middleware


ERROR_HANDLERS: dict[Any, Callable[..., Any]] = {
    ApiError: on_api_error,
    EditingError: on_editing_error,
    RequestValidationError: on_validation_error,
    StarletteHTTPException: on_http_error,
    Exception: on_unexpected,
}
