"""Users and roles of a workspace, for the hosted demo.

Roles: ``admin`` (everything), ``rater`` (the Rate tab and their own progress), ``viewer`` (the
playground). Passwords are stored as scrypt hashes (memory-hard; hashlib's, no extra package).
Each user has a session epoch, a random value every login is tied to: a new password, or removing and
re-adding the name, draws a new one, so the user's earlier sessions end and never come back.
A workspace with no users runs in local mode: no logins, served on 127.0.0.1 only.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from core.errors import TuneloopError
from core.workspace import Workspace

ROLES = ("admin", "rater", "viewer")
# scrypt cost: 2^14 × 8 × 128 B = 16 MiB per check; about 50 ms here, costly to brute-force.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")  # used with fullmatch: no trailing newline slips through
MIN_PASSWORD = 8
# What an unknown name's password is checked against: the same scrypt work as a real user's, and it never
# matches (no password hashes to all zeros).
_NO_SUCH_USER = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 32}"


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: str


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                         maxmem=64 * 1024 * 1024, dklen=len(digest) // 2)
    return hmac.compare_digest(got.hex(), digest)


def _check_password_rule(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise TuneloopError(f"the password must have at least {MIN_PASSWORD} characters")


def add_user(ws: Workspace, name: str, role: str, password: str) -> User:
    if not NAME_RE.fullmatch(name or ""):
        raise TuneloopError(f"user name {name!r} must be 1-64 letters, digits or . _ @ - (no spaces or line breaks)")
    if role not in ROLES:
        raise TuneloopError(f"role '{role}' is not one of {', '.join(ROLES)}")
    _check_password_rule(password)
    with ws.transaction() as db:
        if db.execute("select 1 from users where name=?", (name,)).fetchone():
            raise TuneloopError(f"there is already a user '{name}'; remove it first to change its role, "
                                f"or change its password with: users passwd {name}")
        db.execute("insert into users (name, role, password_hash, session_epoch) values (?, ?, ?, ?)",
                   (name, role, hash_password(password), secrets.token_hex(16)))
    return get_user(ws, name)


def set_password(ws: Workspace, name: str, password: str) -> None:
    """Give ``name`` a new password and end every session the user has (on every server of the workspace)."""
    _check_password_rule(password)
    with ws.transaction() as db:
        changed = db.execute("update users set password_hash=?, session_epoch=? where name=?",
                             (hash_password(password), secrets.token_hex(16), name)).rowcount
    if not changed:
        raise TuneloopError(f"there is no user '{name}' (see: users list)")


def role_and_epoch(ws: Workspace, name: str) -> tuple[str, str] | None:
    """(role, session epoch) of a user, or None when there is no such user: what a live session is checked
    against on every request."""
    row = ws.db.execute("select role, session_epoch from users where name=?", (name,)).fetchone()
    return (row[0], row[1]) if row else None


def remove_user(ws: Workspace, name: str) -> None:
    with ws.transaction() as db:
        if db.execute("delete from users where name=?", (name,)).rowcount == 0:
            raise TuneloopError(f"there is no user '{name}'")


def get_user(ws: Workspace, name: str | None) -> User | None:
    if not name:
        return None
    row = ws.db.execute("select name, role, created_at from users where name=?", (name,)).fetchone()
    return User(**dict(row)) if row else None


def list_users(ws: Workspace) -> list[User]:
    return [User(**dict(r)) for r in ws.db.execute("select name, role, created_at from users order by name")]


def has_users(ws: Workspace) -> bool:
    return ws.db.execute("select 1 from users limit 1").fetchone() is not None


def authenticate(ws: Workspace, name: str, password: str, roles: tuple[str, ...] = ROLES) -> bool:
    """True when the password matches and the user's role is one of ``roles``."""
    row = ws.db.execute("select role, password_hash from users where name=?", (name or "",)).fetchone()
    if row is None:
        check_password(password or "", _NO_SUCH_USER)  # one scrypt, as for a known name
        return False
    return check_password(password or "", row["password_hash"]) and row["role"] in roles
