"""Who is calling, and may they? The server-side checks every handler passes through.

``caller`` gives handlers the user's name for attribution (rater, reviewer, author); ``check_role``
refuses a caller whose role is not allowed. Both read only ``request.username`` (set by the login), so
nothing here needs gradio: ``ui.access`` wraps every handler of an app with ``check_role``.
"""
from __future__ import annotations

import logging

from core.errors import TuneloopError
from core.users import get_user, has_users

log = logging.getLogger("tuneloop.access")
LOCAL_USER = "local"


class AccessDenied(TuneloopError):
    pass


def caller(ws, request) -> str:
    """The logged-in user's name, or 'local' in a workspace without users (local mode)."""
    name = getattr(request, "username", None) if request is not None else None
    if name:
        return name
    if has_users(ws):
        raise AccessDenied("please log in: this workspace has users, so every action needs a login")
    return LOCAL_USER


def check_role(ws, request, roles: tuple[str, ...]) -> str:
    """The caller's name if their role is in ``roles``; raises AccessDenied otherwise."""
    name = caller(ws, request)
    if name == LOCAL_USER:
        return name
    user = get_user(ws, name)
    if user is None or user.role not in roles:
        log.warning("denied: user=%s role=%s allowed=%s", name, user.role if user else None, roles)
        raise AccessDenied(f"'{name}' may not do this here (needs the role {' or '.join(roles)})")
    return name
