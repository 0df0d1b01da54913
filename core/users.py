"""Users and roles of a workspace, for the hosted demo.

Roles: ``admin`` (everything), ``rater`` (the Rate tab and their own progress), ``viewer`` (the
playground). Passwords are stored as scrypt hashes (memory-hard; hashlib's, no extra package).
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
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8


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


def add_user(ws: Workspace, name: str, role: str, password: str) -> User:
    if not NAME_RE.match(name or ""):
        raise TuneloopError(f"user name '{name}' must be 1-64 letters, digits or . _ @ -")
    if role not in ROLES:
        raise TuneloopError(f"role '{role}' is not one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise TuneloopError(f"the password must have at least {MIN_PASSWORD} characters")
    with ws.transaction() as db:
        if db.execute("select 1 from users where name=?", (name,)).fetchone():
            raise TuneloopError(f"there is already a user '{name}'; remove it first to change its role or password")
        db.execute("insert into users (name, role, password_hash) values (?, ?, ?)",
                   (name, role, hash_password(password)))
    return get_user(ws, name)


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
        check_password(password or "", hash_password("timing-equaliser"))  # same cost for unknown names
        return False
    return check_password(password or "", row["password_hash"]) and row["role"] in roles
