"""The Users tab's handlers without a browser: an admin adds a user, changes a password (the user and their
sessions' standing change, the user stays) and removes one; bad input is refused with what to do."""
from __future__ import annotations

import gradio as gr

from core.users import authenticate, get_user, role_and_epoch
from tests.tab_page import page
from ui import users as U


def tab(ws):
    with gr.Blocks():
        with gr.Tabs():
            return U.build(ws)


def test_an_admin_adds_a_user_changes_the_password_and_removes_them(ws):
    w = tab(ws)
    assert "no users" in U.show(ws, w)[w.note]
    added = U.add(ws, w, page(w, name=" rosa ", role="rater", password="rosa-pw-Lq9-secret"))
    assert added[w.message] == "Added **rosa** (rater)." and added[w.password] == ""
    assert list(added[w.table]["name"]) == ["rosa"] and added[w.pick]["value"] == "rosa"
    epoch = role_and_epoch(ws, "rosa")[1]
    changed = U.change_password(ws, w, page(w, pick="rosa", new_password="rosa-new-Pw3-secret"))
    assert "Changed the password of **rosa**; their sessions have ended." == changed[w.message]
    assert changed[w.new_password] == "" and get_user(ws, "rosa").role == "rater"
    assert role_and_epoch(ws, "rosa")[1] != epoch                  # every session of theirs has ended
    assert authenticate(ws, "rosa", "rosa-new-Pw3-secret") and not authenticate(ws, "rosa", "rosa-pw-Lq9-secret")
    assert "choose the user" in U.change_password(ws, w, page(w, pick=None, new_password="x"))[w.message]
    removed = U.remove(ws, w, page(w, pick="rosa"))
    assert removed[w.message] == "Removed **rosa**." and get_user(ws, "rosa") is None
    gone = U.change_password(ws, w, page(w, pick="rosa", new_password="a-Pw9-long"))[w.message]
    assert "there is no user &#x27;rosa&#x27;" in gone
