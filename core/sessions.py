"""Login sessions of a hosted app and how fast a name or an address may guess passwords.

Plain Python, no HTTP: ``ui.access.SessionGuard`` asks ``Sessions`` on every request whether the session
cookie it carries is still good (the user exists, with the same session epoch and a role the app takes,
neither idle nor older than the limits), and asks ``LoginThrottle`` before every login whether to check
the password at all. ``ServingOptions`` holds the limits (flags of ``python app.py``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from core.options import Options, option
from core.users import role_and_epoch

log = logging.getLogger("tuneloop.access")


@dataclass
class ServingOptions(Options):
    """How a hosted server decides who may reach it and for how long."""
    what = "serving options"
    allowed_host: list[str] = option(
        [], "host names the server answers to besides loopback and --host: the public name behind a reverse "
            "proxy or on a Space (also $TUNELOOP_ALLOWED_HOSTS, comma-separated)", flag="allowed-host")
    session_idle_hours: float = option(12.0, "a login ends after this many hours without a request", min=0.0001)
    session_max_days: float = option(7.0, "a login ends this many days after it began, however active", min=0.0001)
    login_failures_per_user: int = option(
        5, "wrong passwords for one name before its logins are refused for a while (the wait doubles with "
           "every further failure)", min=1)
    login_failures_per_address: int = option(
        20, "wrong passwords from one address before its logins are refused for a while", min=1)
    upload_limit_mb: float = option(500.0, "largest file an admin may upload (raters and viewers upload nothing)",
                                    min=0.001)


@dataclass
class Session:
    user: str
    epoch: str        # the user's session epoch when the login happened
    started: float
    seen: float


class Sessions:
    """The live logins of one server: session token → user. Used from the event loop only."""

    def __init__(self, ws, *, idle_s: float, max_s: float, clock=time.time):
        self.ws, self.idle_s, self.max_s, self.clock = ws, idle_s, max_s, clock
        self._live: dict[str, Session] = {}

    def begin(self, token: str, user: str) -> None:
        """Record a login that has just succeeded for ``user`` under ``token``."""
        standing = role_and_epoch(self.ws, user)
        if standing is not None:
            now = self.clock()
            self._live[token] = Session(user=user, epoch=standing[1], started=now, seen=now)

    def user_of(self, token: str, roles: tuple[str, ...]) -> str | None:
        """The user a token belongs to when the session is still good for an app taking ``roles``; else
        None, and a session that has ended is forgotten so that it never comes back."""
        session = self._live.get(token)
        if session is None:
            return None
        now = self.clock()
        standing = role_and_epoch(self.ws, session.user)
        ended = ("the user was removed" if standing is None
                 else "the password changed or the user was added again" if standing[1] != session.epoch
                 else "idle too long" if now - session.seen > self.idle_s
                 else "too old" if now - session.started > self.max_s else None)
        if ended:
            log.warning("session ended: user=%s (%s)", session.user, ended)
            del self._live[token]
            return None
        if standing[0] not in roles:
            return None
        session.seen = now
        return session.user

    def end(self, token: str) -> None:
        self._live.pop(token, None)


@dataclass
class _Failures:
    count: int = 0
    in_flight: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass
class LoginThrottle:
    """Refuses logins, without checking a password, for a name or an address that has failed too often.

    After ``per_user`` failures for one name (``per_address`` from one address) its logins are refused for
    ``base_s`` seconds, doubling with every further failure up to ``max_s``; attempts still being checked
    count against the limit, so a burst cannot slip past it. A success clears the name's count; an address's
    count clears after ``forget_s`` without failures."""

    per_user: int
    per_address: int
    base_s: float = 1.0
    max_s: float = 900.0
    forget_s: float = 900.0
    clock: object = time.time
    _state: dict = field(default_factory=dict)
    _swept: float = 0.0

    def admit(self, name: str, address: str) -> float:
        """0 when this login may be checked (it is then in flight until ``finish``), else the seconds to
        wait before trying again."""
        now = self.clock()
        keys = self._keys(name, address)
        waits = [self._wait(key, limit, now) for key, limit in keys]
        if max(waits) > 0:
            log.warning("login refused without a check: too many failures (user=%s address=%s)", name, address)
            return max(waits)
        for key, _ in keys:
            self._state.setdefault(key, _Failures()).in_flight += 1
        return 0.0

    def finish(self, name: str, address: str, ok: bool) -> None:
        """The outcome of a login ``admit`` let through."""
        now = self.clock()
        for key, limit in self._keys(name, address):
            state = self._state.setdefault(key, _Failures())
            state.in_flight = max(0, state.in_flight - 1)
            if ok and key[0] == "user":
                state.count = 0
            elif not ok:
                state.count += 1
                state.last = now
                if state.count >= limit:
                    state.locked_until = now + min(self.max_s, self.base_s * 2 ** (state.count - limit))
            if not state.count and not state.in_flight:
                del self._state[key]
        if not ok and now - self._swept > self.forget_s:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget the names and addresses whose failures are older than ``forget_s`` and whose lock has ended:
        a flood of made-up names (from addresses a proxy lets a client choose) leaves nothing behind."""
        self._swept = now
        for key in [k for k, s in self._state.items()
                    if not s.in_flight and now - s.last > self.forget_s and now >= s.locked_until]:
            del self._state[key]

    def _keys(self, name: str, address: str):
        return (("user", name), self.per_user), (("address", address), self.per_address)

    def _wait(self, key, limit: int, now: float) -> float:
        state = self._state.get(key)
        if state is None:
            return 0.0
        if now < state.locked_until:
            return state.locked_until - now
        if state.count and now - state.last > self.forget_s and not state.in_flight:
            state.count = 0
        # Below the limit: as many in flight as failures remain; past a lock: one attempt at a time.
        if state.in_flight >= max(1, limit - state.count):
            return self.base_s
        return 0.0
