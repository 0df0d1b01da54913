"""Users, roles and password hashing (the workspace database, real scrypt)."""
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from core import users
from core.errors import TuneloopError
from core.users import (add_user, authenticate, check_password, has_users, hash_password, list_users, remove_user,
                        role_and_epoch, set_password)
from core.workspace import Workspace
from tests.old_workspace import old_workspace

ROOT = Path(__file__).resolve().parent.parent


def test_password_hash_is_salted_scrypt():
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert check_password("correct horse", a) and not check_password("wrong horse", a)
    assert "correct horse" not in a


def test_add_list_remove_and_authenticate(ws):
    assert not has_users(ws)
    add_user(ws, "ada", "admin", "secret-pass-1")
    add_user(ws, "rita", "rater", "secret-pass-2")
    assert [(u.name, u.role) for u in list_users(ws)] == [("ada", "admin"), ("rita", "rater")]
    assert authenticate(ws, "rita", "secret-pass-2", ("rater", "admin"))
    assert not authenticate(ws, "rita", "secret-pass-2", ("admin",))      # right password, wrong app
    assert not authenticate(ws, "rita", "nope", ("rater",))
    assert not authenticate(ws, "nobody", "secret-pass-2")
    stored = ws.db.execute("select password_hash from users where name='ada'").fetchone()[0]
    assert "secret-pass-1" not in stored
    remove_user(ws, "rita")
    assert [u.name for u in list_users(ws)] == ["ada"]


@pytest.mark.parametrize("name, role, password, message", [
    ("bad name!", "admin", "longenough", "must be 1-64 letters"),
    ("bob", "owner", "longenough", "not one of admin, rater, viewer"),
    ("bob", "rater", "short", "at least 8 characters"),
    ("eve\n", "rater", "longenough", "must be 1-64 letters"),       # `$` alone would let a newline through
])
def test_bad_users_are_refused(ws, name, role, password, message):
    with pytest.raises(TuneloopError, match=message):
        add_user(ws, name, role, password)
    assert not has_users(ws)


def test_duplicate_and_unknown(ws):
    add_user(ws, "bob", "rater", "longenough")
    with pytest.raises(TuneloopError, match="already a user 'bob'"):
        add_user(ws, "bob", "admin", "longenough")
    with pytest.raises(TuneloopError, match="no user 'zed'"):
        remove_user(ws, "zed")


def test_users_cli(tmp_path):
    ws = tmp_path / "ws"
    pw = tmp_path / "pw.txt"
    pw.write_text("s3cret-password\n")

    def run(*args):
        return subprocess.run([sys.executable, "app.py", "--workspace", str(ws), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert "local mode" in run("users", "list").stdout
    out = run("users", "add", "ada", "--role", "admin", "--password-file", str(pw))
    assert out.returncode == 0 and "added ada (admin)" in out.stdout
    assert "ada\tadmin" in run("users", "list").stdout
    out = run("users", "add", "ada", "--role", "rater", "--password-file", str(pw))
    assert out.returncode == 1 and "already a user" in out.stderr
    out = run("users", "add", "eve\n", "--role", "rater", "--password-file", str(pw))
    assert out.returncode == 1 and "must be 1-64 letters" in out.stderr and "eve" not in run("users", "list").stdout
    pw.write_text("another-password\n")
    out = run("users", "passwd", "ada", "--password-file", str(pw))
    assert out.returncode == 0 and "changed the password of ada" in out.stdout
    assert authenticate(Workspace.open(ws), "ada", "another-password")
    assert not authenticate(Workspace.open(ws), "ada", "s3cret-password")
    assert run("users", "passwd", "zed", "--password-file", str(pw)).returncode == 1
    assert "removed ada" in run("users", "remove", "ada").stdout


def test_no_users_means_loopback_only(tmp_path):
    out = subprocess.run([sys.executable, "app.py", "--workspace", str(tmp_path / "ws"), "--host", "0.0.0.0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "no users" in out.stderr and "users add NAME --role admin" in out.stderr


def test_an_unknown_name_costs_the_same_scrypt_work_as_a_known_one(ws, monkeypatch):
    add_user(ws, "ada", "admin", "secret-pass-1")
    calls = []
    real = hashlib.scrypt

    def counted(*args, **kwargs):
        calls.append(kwargs["n"])
        return real(*args, **kwargs)
    monkeypatch.setattr(users.hashlib, "scrypt", counted)
    assert not authenticate(ws, "ada", "wrong-password")
    known = list(calls)
    calls.clear()
    assert not authenticate(ws, "nobody", "wrong-password")
    assert calls == known == [users.SCRYPT_N]


def test_a_new_password_or_re_adding_a_name_draws_a_new_session_epoch(ws):
    add_user(ws, "ada", "admin", "secret-pass-1")
    first = role_and_epoch(ws, "ada")
    set_password(ws, "ada", "secret-pass-2")
    second = role_and_epoch(ws, "ada")
    assert first[0] == second[0] == "admin" and len(first[1]) == 32 and first[1] != second[1]
    assert authenticate(ws, "ada", "secret-pass-2") and not authenticate(ws, "ada", "secret-pass-1")
    remove_user(ws, "ada")
    assert role_and_epoch(ws, "ada") is None
    add_user(ws, "ada", "admin", "secret-pass-2")
    assert role_and_epoch(ws, "ada")[1] not in (first[1], second[1])
    with pytest.raises(TuneloopError, match="no user 'zed'"):
        set_password(ws, "zed", "secret-pass-3")
    with pytest.raises(TuneloopError, match="at least 8"):
        set_password(ws, "ada", "short")


def test_users_of_a_workspace_made_before_session_epochs_get_one(tmp_path):
    ws = old_workspace(tmp_path / "old", {("core", "m002_session_epoch")})
    ws.db.execute("insert into users (name, role, password_hash) values (?, ?, ?)",
                  ("ada", "admin", hash_password("secret-pass-1")))
    ws.db.execute("insert into users (name, role, password_hash) values (?, ?, ?)",
                  ("rita", "rater", hash_password("secret-pass-2")))
    ws.migrate()
    epochs = {name: role_and_epoch(ws, name)[1] for name in ("ada", "rita")}
    assert all(len(e) == 32 for e in epochs.values()) and epochs["ada"] != epochs["rita"]
    assert authenticate(ws, "ada", "secret-pass-1")
