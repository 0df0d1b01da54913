"""The gradio half of access control: every handler of an app checks the caller's role first, and every
HTTP request passes ``SessionGuard`` before it reaches an app.

Gradio exposes every event handler through its HTTP API, whether or not its button is on screen,
so permissions cannot live in the page. ``guard_handlers`` wraps every handler of a Blocks so that
it first runs ``core.access.check_role`` on the caller (``request.username``, from the login) against
the roles allowed for that app; ``LoginPageWithoutApi`` keeps the login page from describing the API.
``SessionGuard`` answers only the server's own host names and origin, lets a visitor who has not logged
in reach the login page and nothing else, keeps uploads and served files to the app that takes them,
throttles logins and ends sessions (``core.sessions``), and sends each role to its own page: a rater who
logs in at ``/`` is logged in to ``/rate/`` and lands there; ``password_check`` runs scrypt off the event loop.
``login_line`` puts "logged in as NAME (role) · log out" on every page.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import re
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import gradio as gr
from starlette.requests import Request

from core.access import AccessDenied, check_role
from core.users import authenticate, get_user, role_and_epoch


def guard_handlers(blocks, ws, roles: tuple[str, ...]) -> None:
    """Wrap every event handler in ``blocks`` with ``check_role(..., roles)`` before it runs."""
    for block_fn in _block_functions(blocks):
        if block_fn.fn is None or getattr(block_fn.fn, "__tuneloop_guarded__", False):
            continue
        block_fn.fn = _guarded(block_fn.fn, ws, roles)


def _block_functions(blocks):
    fns = blocks.fns
    return list(fns.values()) if isinstance(fns, dict) else list(fns)


def _check_or_refuse(ws, request, roles) -> None:
    try:
        check_role(ws, request, roles)
    except AccessDenied as exc:
        raise gr.Error(str(exc), title="Not allowed", print_exception=False) from None  # logged above, one line


def _resolved_hints(fn) -> dict:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable hints: Gradio would not have seen them either
        return {}


def _guarded(fn, ws, roles):
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    cut = next((i for i, p in enumerate(params) if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)),
               len(params))
    extra = inspect.Parameter("_tuneloop_request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                              annotation=gr.Request)
    new_sig = sig.replace(parameters=params[:cut] + [extra] + params[cut:])

    def split(args):
        # Gradio inserts the request at our parameter's index, or appends it when fewer inputs came.
        args = list(args)
        for i in range(len(args) - 1, -1, -1):
            if isinstance(args[i], gr.Request) and i >= min(cut, len(args) - 1):
                request = args.pop(i)
                return args, request
        return args, None

    if inspect.isasyncgenfunction(fn):
        async def wrapper(*args, **kwargs):
            args, request = split(args)
            _check_or_refuse(ws, request, roles)
            async for item in fn(*args, **kwargs):
                yield item
    elif inspect.isgeneratorfunction(fn):
        def wrapper(*args, **kwargs):
            args, request = split(args)
            _check_or_refuse(ws, request, roles)
            yield from fn(*args, **kwargs)
    elif inspect.iscoroutinefunction(fn):
        async def wrapper(*args, **kwargs):
            args, request = split(args)
            _check_or_refuse(ws, request, roles)
            return await fn(*args, **kwargs)
    else:
        def wrapper(*args, **kwargs):
            args, request = split(args)
            _check_or_refuse(ws, request, roles)
            return fn(*args, **kwargs)

    functools.update_wrapper(wrapper, fn)
    del wrapper.__wrapped__  # Gradio must see the new signature, not the original's
    wrapper.__signature__ = new_sig
    # Resolved hints: string annotations would not resolve against this module's globals.
    wrapper.__annotations__ = {**_resolved_hints(fn), "_tuneloop_request": gr.Request}
    wrapper.__tuneloop_guarded__ = True
    return wrapper


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)


class LoginPageWithoutApi:
    """ASGI middleware: Gradio's login page embeds the description of every handler of the app behind
    it (names, labels, current choices and defaults); a visitor who has not logged in gets it empty."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or "/gradio_api/" in scope["path"]:
            return await self.app(scope, receive, send)
        start, chunks = None, []

        async def rewrite(message):
            nonlocal start
            if message["type"] == "http.response.start":
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in message["headers"])
                if not html:
                    return await send(message)
                start = message
                return None
            if start is None or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            body = b"".join(chunks)
            if b'"auth_required":true' in body:  # the login page: no config, so no API description either
                body = _API_INFO.sub(b'window.gradio_api_info = {"named_endpoints":{},"unnamed_endpoints":{}};'
                                     b'</script>', body)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})

        return await self.app(scope, receive, rewrite)


# scrypt takes ~50 ms of CPU and 16 MiB: two at a time, in threads of their own, so that password guesses
# neither block the event loop nor take the threads Gradio runs handlers in.
_PASSWORD_CHECKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tuneloop-login")


def password_check(ws, roles: tuple[str, ...]):
    """The ``auth`` callable of an app taking ``roles``: ``core.users.authenticate`` in the login threads."""
    async def check(name: str, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_PASSWORD_CHECKS, authenticate, ws, name, password, roles)
    return check


def login_line(blocks, ws) -> gr.HTML:
    """An empty line at the top of a page that, once the page loads, says who is logged in, with a logout link
    (nothing in local mode, where nobody logs in)."""
    line = gr.HTML(elem_id="tuneloop-login")

    def logged_in_as(request: gr.Request = None) -> str:
        return logged_in_line(ws, getattr(request, "username", None))

    blocks.load(logged_in_as, None, line, show_progress="hidden")
    return line


def logged_in_line(ws, name: str | None) -> str:
    """ "logged in as NAME (role) · log out" as HTML, or empty when nobody is logged in."""
    user = get_user(ws, name)
    if user is None:
        return ""
    from html import escape
    # relative: /logout from the dashboard, /rate/logout from the rating page; the guard ends the sessions
    return (f"<div class='tuneloop-login'>logged in as <b>{escape(user.name)}</b> ({escape(user.role)}) · "
            f"<a href='logout' id='tuneloop-logout'>log out</a></div>")


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
HOST_RE = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?")   # a name and a port, nothing else
TOKEN_COOKIE = "access-token-"   # Gradio's session cookies: access-token-<app>, access-token-unsecure-<app>
# Reachable before logging in: the login page, its scripts, styles and fonts, and the login itself.
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
PUBLIC_PATHS = ("", "/", "/favicon.ico", "/theme.css", "/gradio_api/theme.css", "/manifest.json", "/robots.txt",
                "/gradio_api/login_check", "/gradio_api/login_check/", "/logout")
LOGIN_PATHS = ("/login", "/login/")
# Gradio routes Tuneloop never uses; the run-history page embeds the API description of its app.
CLOSED_PREFIXES = ("/gradio_api/runs", "/gradio_api/run-history", "/monitoring", "/gradio_api/vibe-",
                   "/gradio_api/undo-vibe-edit", "/gradio_api/dev/", "/gradio_api/proxy=")
# Routes that take a file from the visitor or serve one from the server.
FILE_PREFIXES = ("/gradio_api/upload", "/gradio_api/file=", "/gradio_api/file/", "/gradio_api/process_recording",
                 "/gradio_api/stream/")
MAX_LOGIN_BODY = 64 * 1024
REFUSED_LOGIN_PAUSE_S = 1.0   # how long a login the throttle refuses waits for its 429
# The largest request an app without uploads takes: a vote with a 1,000,000-character comment and correction
# is about 2 MB.
MAX_EVENT_BODY = 4 * 1024 * 1024
FORM_OVERHEAD = 64 * 1024   # a multipart upload's boundaries and headers beside the file itself


@dataclass(frozen=True)
class MountRule:
    """One mounted app as the guard sees it: its path, the roles it takes, whether its tabs take and
    serve files (only the admin app does), and the largest request body it is sent (bytes)."""
    prefix: str
    roles: tuple[str, ...]
    files: bool
    max_body: int = MAX_EVENT_BODY


class SessionGuard:
    """ASGI middleware in front of every mounted app.

    ``hosts``: the host names the server answers to (any other Host header is refused, against DNS
    rebinding); ``named_hosts``: those of them configured by name, whose https origin is also the app's own
    behind a proxy. ``sessions`` and ``throttle`` are None in local mode (no logins)."""

    def __init__(self, app, *, mounts: list[MountRule], hosts: set[str], named_hosts: set[str],
                 sessions=None, throttle=None):
        self.app = app
        self.mounts = sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
        self.hosts, self.named_hosts = hosts, named_hosts
        self.sessions, self.throttle = sessions, throttle

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        host = headers.get("host", "")
        plain = HOST_RE.fullmatch(host)
        if plain is None or plain["name"].lower().strip("[]") not in self.hosts:
            return await _refuse(scope, send, 400, f"this server does not answer to the host name '{host}'. "
                                 "To serve it under that name, start it with --allowed-host NAME "
                                 "(or set TUNELOOP_ALLOWED_HOSTS).")
        if not self._own_origin(headers, host, scope):
            return await _refuse(scope, send, 403, "requests from another site are refused: open the app from "
                                 "its own address.")
        mount = next(m for m in self.mounts if m.prefix == "/" or scope["path"] == m.prefix
                     or scope["path"].startswith(m.prefix + "/"))
        sub = scope["path"] if mount.prefix == "/" else scope["path"][len(mount.prefix):]
        if sub.startswith(CLOSED_PREFIXES):
            return await _refuse(scope, send, 404, "not found")
        if self.sessions is not None:
            home = self._home_elsewhere(headers, mount) if sub in ("", "/") else None
            scope, user = self._filter_session_cookies(scope, headers, mount)
            if scope.get("method") == "POST" and sub in LOGIN_PATHS:
                return await self._login(scope, receive, send, mount)
            if user is None and home is not None and scope.get("method") in ("GET", "HEAD"):
                return await _redirect(scope, send, home)
            if user is None and not (scope.get("method") in ("GET", "HEAD")
                                     and (sub in PUBLIC_PATHS or sub.startswith(PUBLIC_PREFIXES))):
                return await _refuse(scope, send, 401, "Not authenticated: log in first.")
            if sub == "/logout":
                for token in _token_cookies(headers).values():
                    self.sessions.end(token)
        if not mount.files and sub.startswith(FILE_PREFIXES):
            return await _refuse(scope, send, 403, "this page neither takes nor serves files")
        if scope["type"] == "http":
            return await self._capped(scope, receive, send, mount.max_body, headers.get("content-length"))
        return await self.app(scope, receive, send)

    async def _capped(self, scope, receive, send, limit: int, length: str | None):
        """The app, sent at most ``limit`` bytes of request body: a larger declared length is refused before
        anything is read, and a body without one is cut off (and refused) once past the limit."""
        too_large = f"a request to this page may hold at most {limit / 2 ** 20:.1f} MiB; this one is larger"
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            return await _refuse(scope, send, 413, too_large)
        read, over, started = 0, False, False

        async def counted():
            nonlocal read, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            read += len(message.get("body", b""))
            if read > limit:
                over = True
                return {"type": "http.disconnect"}   # what a request gives up on: the app stops reading
            return message

        async def unless_over(message):
            # Past the limit the 413 replaces the app's answer, unless the app had begun one: then it finishes
            # that answer (a response is never left unfinished, nor followed by a second one).
            nonlocal started
            if over and not started:
                return None
            started = started or message["type"] == "http.response.start"
            return await send(message)

        try:
            await self.app(scope, counted, unless_over)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _refuse(scope, send, 413, too_large)

    def _own_origin(self, headers: dict, host: str, scope) -> bool:
        origin = headers.get("origin")
        if origin is None:
            # No Origin: not a script on another site, except a cross-site form a browser did not label.
            return not (headers.get("sec-fetch-site") == "cross-site" and scope.get("method") not in ("GET", "HEAD"))
        parts = urlsplit(origin)
        if parts.netloc.lower() == host.lower() and parts.scheme in ("http", "https"):
            return True
        return parts.scheme == "https" and (parts.hostname or "") in self.named_hosts

    def _filter_session_cookies(self, scope, headers: dict, mount: MountRule):
        """The scope without the session cookies that are no longer good for this app, and the user of the
        one that is (None when none is)."""
        user, kept, dropped = None, [], False
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name.startswith(TOKEN_COOKIE):
                found = self.sessions.user_of(value, mount.roles)
                if found is None:
                    dropped = True
                    continue
                user = found
            if name:
                kept.append(part.strip())
        if dropped:
            raw = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
            if kept:
                raw.append((b"cookie", "; ".join(kept).encode("latin-1")))
            scope = {**scope, "headers": raw}
        return scope, user

    def _home_elsewhere(self, headers: dict, mount: MountRule) -> str | None:
        """The page of another app that a session cookie of this visitor is good for (a rater's /rate/ when they
        open /), or None."""
        tokens = _token_cookies(headers).values()
        for other in self.mounts:
            if other is not mount and any(self.sessions.user_of(t, other.roles) for t in tokens):
                return other.prefix.rstrip("/") + "/"
        return None

    def _page_for(self, name: str, mount: MountRule) -> MountRule:
        """The app a user logging in at ``mount`` is logged in to: that one when it takes their role, else the
        first that does (a rater's /rate, a viewer's /playground); an unknown name stays where it is."""
        standing = role_and_epoch(self.sessions.ws, name)
        if standing is None or standing[0] in mount.roles:
            return mount
        return next((m for m in self.mounts if standing[0] in m.roles), mount)

    async def _login(self, scope, receive, send, mount: MountRule):
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_LOGIN_BODY:
                return await _refuse(scope, send, 413, "a login form is a name and a password; this is too large")
        replay_sent = False

        async def replay():
            nonlocal replay_sent
            if replay_sent:
                return await receive()
            replay_sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, replay).form()
        except Exception:  # not a form at all: Gradio would refuse it too
            return await _refuse(scope, send, 400, "send the login as a form with a username and a password")
        name = str(form.get("username") or "").strip()   # as Gradio reads it
        address = (scope.get("client") or ("unknown",))[0]
        wait = self.throttle.admit(name, address)
        if wait:
            # Answered after a pause, not at once: a refusal costs the server nearly nothing, so a guesser told
            # at once would come back hundreds of times a second and take the event loop from the raters.
            await asyncio.sleep(min(wait, REFUSED_LOGIN_PAUSE_S))
            return await _refuse(scope, send, 429, f"too many failed logins for this name or from this address; "
                                 f"try again in {math.ceil(wait)} s", retry_after=math.ceil(wait))
        replay_sent = False
        target = self._page_for(name, mount)
        if target is not mount:
            # the password is checked by the app that takes the role; its session cookie (Path=/) sends the
            # reloaded page there
            path = target.prefix.rstrip("/") + "/login"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        https = scope.get("scheme") in ("https", "wss")
        outcome = {"ok": False}

        async def record(message):
            if message["type"] == "http.response.start":
                outcome["ok"] = message["status"] == 200
                headers = []
                for key, value in message["headers"]:
                    if key.lower() == b"set-cookie" and value.decode("latin-1").startswith(TOKEN_COOKIE):
                        cookie, token = _same_site_cookie(value.decode("latin-1"), https)
                        if outcome["ok"]:
                            self.sessions.begin(token, name)
                        value = cookie.encode("latin-1")
                    headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, replay, record)
        finally:
            self.throttle.finish(name, address, outcome["ok"])


def _headers(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[name] = f"{out[name]}; {text}" if name == "cookie" and name in out else text
    return out


def _token_cookies(headers: dict) -> dict[str, str]:
    pairs = (part.strip().partition("=") for part in headers.get("cookie", "").split(";"))
    return {name: value for name, _, value in pairs if name.startswith(TOKEN_COOKIE)}


def _same_site_cookie(header: str, https: bool) -> tuple[str, str]:
    """Gradio's session cookie rewritten so that a browser never sends it cross-site (SameSite=Lax) and
    marks it Secure only over https; and the token it carries."""
    name_value = header.split(";", 1)[0]
    token = name_value.partition("=")[2].strip('"')
    return f"{name_value}; HttpOnly; Path=/; SameSite=Lax" + ("; Secure" if https else ""), token


async def _redirect(scope, send, location: str) -> None:
    """A 303 to ``location`` on this server."""
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(scope, send, status: int, message: str, retry_after: int | None = None) -> None:
    if scope["type"] == "websocket":
        return await send({"type": "websocket.close", "code": 1008})
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
