"""The Users tab (admins only): who can log in, with which role; add a user, change a password, remove one.

The same as ``python app.py users add|list|passwd|remove``. A new password ends the user's sessions at once
(``core.users.set_password``); the user stays, with their votes and reviews. In the house pattern: ``layout``
makes the widgets, the handlers take the page's values and return outputs by component, ``build`` wires them.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pandas as pd

from core.errors import TuneloopError
from core.users import ROLES, add_user, has_users, list_users, remove_user, set_password
from ui.kit import bind, error_markdown

HEADERS = ["name", "role", "added (UTC)"]
LOCAL_NOTE = ("_This workspace has no users, so the app runs without logins on 127.0.0.1. Once you add an admin "
              "and restart the app, every page asks for a login._")


class UsersWidgets(SimpleNamespace):
    """The Users tab's components by name (``layout`` fills it)."""

    @property
    def shown(self) -> list:
        return [self.table, self.pick, self.note]


def users_frame(ws) -> pd.DataFrame:
    return pd.DataFrame([[u.name, u.role, u.created_at.replace("T", " ").rstrip("Z")] for u in list_users(ws)],
                        columns=HEADERS)


def layout(ws) -> UsersWidgets:
    w = UsersWidgets()
    with gr.Tab("Users", id="users") as w.tab:
        w.note = gr.Markdown("" if has_users(ws) else LOCAL_NOTE, elem_id="users-note")
        w.table = gr.Dataframe(users_frame(ws), interactive=False, label="Users", elem_id="users-table")
        with gr.Row():
            w.pick = gr.Dropdown([u.name for u in list_users(ws)], label="User", elem_id="users-pick", scale=2)
            w.new_password = gr.Textbox(type="password", label="New password", elem_id="users-new-password", scale=2)
            w.passwd_btn = gr.Button("Change password", elem_id="users-passwd-btn", scale=1)
            w.remove_btn = gr.Button("Remove user", variant="stop", elem_id="users-remove-btn", scale=1)
        with gr.Row():
            w.name = gr.Textbox(label="New user's name", elem_id="users-name", scale=2)
            w.role = gr.Dropdown(list(ROLES), value="rater", label="Role", elem_id="users-role", scale=1)
            w.password = gr.Textbox(type="password", label="Password", elem_id="users-password", scale=2)
            w.add_btn = gr.Button("Add user", elem_id="users-add-btn", scale=1)
        w.message = gr.Markdown(elem_id="users-message")
    return w


def show(ws, w: UsersWidgets) -> dict:
    """The users as they stand (opening the tab)."""
    return _listing(ws, w)


def _listing(ws, w: UsersWidgets, picked: str | None = None) -> dict:
    names = [u.name for u in list_users(ws)]
    return {w.table: users_frame(ws), w.note: "" if names else LOCAL_NOTE,
            w.pick: gr.update(choices=names, value=picked if picked in names else None)}


def change_password(ws, w: UsersWidgets, data: dict) -> dict:
    """A new password for the chosen user; their sessions end, the user stays."""
    name = data[w.pick]
    try:
        if not name:
            raise TuneloopError("choose the user whose password changes")
        set_password(ws, name, data[w.new_password] or "")
    except TuneloopError as exc:
        return {w.message: error_markdown(exc)}
    return {w.message: f"Changed the password of **{name}**; their sessions have ended.", w.new_password: "",
            **_listing(ws, w, name)}


def add(ws, w: UsersWidgets, data: dict) -> dict:
    """A new user with the form's name, role and password."""
    try:
        user = add_user(ws, (data[w.name] or "").strip(), data[w.role], data[w.password] or "")
    except TuneloopError as exc:
        return {w.message: error_markdown(exc)}
    return {w.message: f"Added **{user.name}** ({user.role}).", w.name: "", w.password: "",
            **_listing(ws, w, user.name)}


def remove(ws, w: UsersWidgets, data: dict) -> dict:
    """Remove the chosen user (their sessions end at once)."""
    name = data[w.pick]
    try:
        if not name:
            raise TuneloopError("choose the user to remove")
        remove_user(ws, name)
    except TuneloopError as exc:
        return {w.message: error_markdown(exc)}
    return {w.message: f"Removed **{name}**.", **_listing(ws, w)}


def build(ws) -> UsersWidgets:
    """The Users tab inside the caller's Blocks, wired."""
    w = layout(ws)

    def on(event, handler, inputs, outputs):
        return event(bind(handler, ws, w), inputs, outputs, api_name=False)

    on(w.tab.select, show, None, w.shown)
    on(w.passwd_btn.click, change_password, {w.pick, w.new_password}, [w.message, w.new_password, *w.shown])
    on(w.add_btn.click, add, {w.name, w.role, w.password}, [w.message, w.name, w.password, *w.shown])
    on(w.remove_btn.click, remove, {w.pick}, [w.message, *w.shown])
    return w
