"""Two checks every request passes before it reaches a route (plain ASGI middleware).

* The query string must decode as UTF-8 once percent-decoded: ``?q=%ff`` is answered 400
  instead of being searched as a replacement character.
* With an access token set, ``/api/*`` needs it: ``Authorization: Bearer TOKEN``, or the
  ``gz_token`` cookie, or a ``token`` query parameter (what a ``<video src>`` or ``<img src>``
  can carry); otherwise 401. Opening the page as ``/?token=TOKEN`` sets the cookie
  (HttpOnly, SameSite=Strict), so the page and its video elements work without the token
  in every link. The page itself and its static files hold no archive data and stay open.
"""

from __future__ import annotations

import hmac
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, unquote_to_bytes

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "gz_token"
PAGES = ("/", "/watch")


def invalid_utf8_param(query_string: bytes) -> str | None:
    """The first ``name=value`` pair whose percent-decoding is not UTF-8 (shown escaped), or None.

    >>> invalid_utf8_param(b"q=caf%C3%A9&k=5") is None, invalid_utf8_param(b"q=%ff")
    (True, 'q=%ff')
    """
    for part in query_string.split(b"&"):
        try:
            unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return part[:60].decode("ascii", "backslashreplace")
    return None


class AccessGuard:
    def __init__(self, app: ASGIApp, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        qs: bytes = scope.get("query_string", b"")
        bad = invalid_utf8_param(qs)
        if bad is not None:
            await JSONResponse({"detail": f"the query string is not valid UTF-8 ({bad}); percent-encode "
                                          "text as UTF-8"}, 400)(scope, receive, send)
            return
        if not self.token:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        query_token = dict(parse_qsl(qs.decode("latin-1"))).get("token")
        if path.startswith("/api/") and not self._authorized(scope, query_token):
            await JSONResponse(
                {"detail": "this server needs an access token: send 'Authorization: Bearer TOKEN', "
                           "or open the page as /?token=TOKEN"}, 401,
                headers={"WWW-Authenticate": 'Bearer realm="groundzero"'})(scope, receive, send)
            return
        if path in PAGES and query_token is not None and self._same(query_token):
            send = self._setting_cookie(send)
        await self.app(scope, receive, send)

    def _same(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _authorized(self, scope: Scope, query_token: str | None) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._same(value.strip()):
            return True
        if query_token is not None and self._same(query_token):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except CookieError:  # a malformed cookie header is simply no token
            return False
        return COOKIE in cookie and self._same(cookie[COOKIE].value)

    def _setting_cookie(self, send: Send) -> Send:
        value = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", value)]}
            await send(message)

        return wrapped
