"""Users, roles and password hashing (the workspace database, real scrypt)."""
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import TuneloopError
from core.users import add_user, authenticate, check_password, has_users, hash_password, list_users, remove_user

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
    assert "removed ada" in run("users", "remove", "ada").stdout


def test_no_users_means_loopback_only(tmp_path):
    out = subprocess.run([sys.executable, "app.py", "--workspace", str(tmp_path / "ws"), "--host", "0.0.0.0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "no users" in out.stderr and "users add NAME --role admin" in out.stderr
