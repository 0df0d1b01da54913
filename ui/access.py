"""The gradio half of access control: every handler of an app checks the caller's role first.

Gradio exposes every event handler through its HTTP API, whether or not its button is on screen,
so permissions cannot live in the page. ``guard_handlers`` wraps every handler of a Blocks so that
it first runs ``core.access.check_role`` on the caller (``request.username``, from the login) against
the roles allowed for that app; ``LoginPageWithoutApi`` keeps the login page from describing the API.
"""
from __future__ import annotations

import functools
import inspect
import re
import typing

import gradio as gr

from core.access import AccessDenied, check_role


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
