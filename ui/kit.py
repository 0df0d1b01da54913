"""Small pieces every tab uses the same way: errors, who is calling, stop switches, version and run pickers,
and the static scripts the tabs ask for.

A tab's handlers are module-level functions that take the workspace (and the request) and return a dict
keyed by component; this kit is what they share, so that no tab writes its own error formatter, caller
helper, cancel dict or version picker.
"""
from __future__ import annotations

import functools
import html
import inspect
import threading
import typing
from pathlib import Path

import gradio as gr

from core.access import LOCAL_USER, caller
from core.errors import TuneloopError

STATIC = Path(__file__).parent / "static"


# -- errors -------------------------------------------------------------------------------------------

def error_markdown(exc: Exception) -> str:
    """A TuneloopError as a readable block (first line bold, the rest as a list); anything else as a short,
    honest sentence."""
    if isinstance(exc, TuneloopError):
        lines = str(exc).splitlines() or [""]
        head, rest = lines[0], lines[1:]
        body = "\n".join(f"- {html.escape(line.strip())}" for line in rest if line.strip())
        return f"**⚠️ {html.escape(head)}**\n\n{body}" if body else f"**⚠️ {html.escape(head)}**"
    return f"**⚠️ Something went wrong: {html.escape(type(exc).__name__)}: {html.escape(str(exc))}**"


def _shown(exc: TuneloopError) -> gr.Error:
    return gr.Error(str(exc), print_exception=False)


def show_errors(fn):
    """A handler decorator: a TuneloopError becomes a message in the page (``gr.Error``) instead of a stack
    trace. Works for plain, generator, async and async-generator handlers; Gradio still sees ``fn``'s
    signature."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except TuneloopError as exc:
                raise _shown(exc) from None
    elif inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except TuneloopError as exc:
                raise _shown(exc) from None
    elif inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except TuneloopError as exc:
                raise _shown(exc) from None
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except TuneloopError as exc:
                raise _shown(exc) from None
    return wrapper


class ClearMessages:
    """A handler that empties the message components it was made for: wired by ``clear_on_input``, it is how
    a new choice clears an error about the previous one."""

    def __init__(self, messages):
        self.messages = list(messages)

    def __call__(self):
        return {message: "" for message in self.messages}   # a dict: Gradio takes it for one output or many


def clear_on_input(pickers, messages) -> None:
    """A new choice the user makes in any of ``pickers`` (``input``: the user's, not a refresh's) empties every
    one of ``messages``, so an error about what was chosen before does not stay on screen under the new choice."""
    clear = ClearMessages(messages)
    for chosen in pickers:
        chosen.input(clear, None, clear.messages, show_progress="hidden", api_name=False, queue=False)


# -- wiring -------------------------------------------------------------------------------------------

def bind(handler, *bound):
    """``handler`` with its first arguments fixed (the workspace, the tab's widgets), in a form Gradio can
    wire: unlike ``functools.partial``, Gradio still sees the remaining parameters with their types, so
    ``gr.Request``, ``gr.Progress`` and ``gr.SelectData`` arrive, and a generator still streams."""
    signature = inspect.signature(handler)
    rest = list(signature.parameters.values())[len(bound):]
    if inspect.isgeneratorfunction(inspect.unwrap(handler)):
        def wired(*args, **kwargs):
            yield from handler(*bound, *args, **kwargs)
    else:
        def wired(*args, **kwargs):
            return handler(*bound, *args, **kwargs)
    functools.update_wrapper(wired, handler)
    del wired.__wrapped__  # Gradio must see the bound signature, not the handler's
    wired.__signature__ = signature.replace(parameters=rest)
    hints = typing.get_type_hints(handler)
    wired.__annotations__ = {k: v for k, v in hints.items() if k == "return" or k in {p.name for p in rest}}
    return wired


# -- who is calling -----------------------------------------------------------------------------------

def caller_name(ws, request, typed: str | None = None, *, missing: str | None = None) -> str:
    """Who gets the credit for an action: the logged-in user; in local mode (no logins) the name typed in
    the tab, else 'local'. With ``missing``, a local caller who typed no name gets that message as a
    TuneloopError instead (for work that must be told apart per person: reviews, votes)."""
    name = caller(ws, request)
    if name != LOCAL_USER:
        return name
    typed = (typed or "").strip()
    if typed:
        return typed
    if missing:
        raise TuneloopError(missing)
    return LOCAL_USER


# -- stop switches ------------------------------------------------------------------------------------

class CancelRegistry:
    """Per-browser-session stop switches for long work (a scan, a generation): ``start`` hands the work a
    fresh ``threading.Event``, the Stop button's handler calls ``cancel`` with its own request, and the
    same browser tab's work sees the event set. Sessions never stop each other's work."""

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _session(request) -> str:
        return getattr(request, "session_hash", None) or LOCAL_USER

    def start(self, request) -> threading.Event:
        """A new, unset event for this session's next piece of work (replacing any earlier one)."""
        event = threading.Event()
        with self._lock:
            self._events[self._session(request)] = event
        return event

    def cancel(self, request) -> bool:
        """Set this session's event; False when the session has no work to stop."""
        with self._lock:
            event = self._events.get(self._session(request))
        if event is None or event.is_set():
            return False
        event.set()
        return True

    def finish(self, request, event: threading.Event) -> None:
        """Forget ``event`` once its work is over (unless the session has started newer work since)."""
        with self._lock:
            if self._events.get(self._session(request)) is event:
                del self._events[self._session(request)]


# -- version and run pickers --------------------------------------------------------------------------

def version_choices(ws, *, splits_only: bool = False) -> list[tuple[str, str]]:
    """(label, value) pairs for a version dropdown, newest first, the current version marked. With
    ``splits_only`` the versions made by a split come first (they are what training needs); the others
    follow, since data can arrive already split."""
    from curation.data.versions import current_version, list_versions
    current = current_version(ws)
    versions = list(reversed(list_versions(ws)))
    if splits_only:
        versions = [v for v in versions if v.step == "split"] + [v for v in versions if v.step != "split"]
    return [(f"{v.name}{' (current)' if current and v.id == current.id else ''} · {v.step} · "
             f"{v.num_records} records", v.name) for v in versions]


def default_version(ws, *, splits_only: bool = False) -> str | None:
    """What a version picker shows first: the current version; with ``splits_only`` the current version when
    it descends from a split (a merge of corrections after the split keeps the splits), else the newest split."""
    from curation.data.versions import current_version, list_versions
    current = current_version(ws)
    if splits_only:
        versions = list_versions(ws)
        by_id = {v.id: v for v in versions}
        ancestor = current if current is not None and getattr(current, "kind", "sft") == "sft" else None
        while ancestor is not None:
            if ancestor.step == "split":
                return current.name
            ancestor = by_id.get(ancestor.parent_id)
        return next((v.name for v in reversed(versions) if v.step == "split"), None)
    return current.name if current else None


def run_choices(ws, *, with_adapter: bool = False) -> list[tuple[str, str]]:
    """(label, value) pairs for a run dropdown, newest first; ``with_adapter`` keeps the runs that have
    written an adapter (what generation and export need)."""
    from training.registry import list_runs
    return [(f"{r.label} · {r.status_text}", str(r.id)) for r in list_runs(ws)
            if not with_adapter or (r.adapter_dir / "adapter_config.json").is_file()]


def default_run(ws, *, with_adapter: bool = False) -> str | None:
    """What a run picker shows first: a run still going, else the newest."""
    from training.registry import list_runs
    runs = [r for r in list_runs(ws)
            if not with_adapter or (r.adapter_dir / "adapter_config.json").is_file()]
    pick = next((r for r in runs if r.active), runs[0] if runs else None)
    return str(pick.id) if pick else None


def version_picker(ws, label: str, *, splits_only: bool = False, **kw) -> gr.Dropdown:
    """A version dropdown (current version preselected, or the newest split) that ``refresh_on_select``
    keeps up to date. Extra keywords go to ``gr.Dropdown`` (``value=None`` for no preselection)."""
    kw.setdefault("value", default_version(ws, splits_only=splits_only))
    picker = gr.Dropdown(version_choices(ws, splits_only=splits_only), label=label, **kw)
    picker.tuneloop_choices = functools.partial(version_choices, ws, splits_only=splits_only)
    picker.tuneloop_default = functools.partial(default_version, ws, splits_only=splits_only)
    return remember_choice(picker)


def run_picker(ws, label: str, *, with_adapter: bool = False, **kw) -> gr.Dropdown:
    """A run dropdown (a running or the newest run preselected) that ``refresh_on_select`` keeps up to
    date. Extra keywords go to ``gr.Dropdown``."""
    if not kw.get("multiselect"):
        kw.setdefault("value", default_run(ws, with_adapter=with_adapter))
    picker = gr.Dropdown(run_choices(ws, with_adapter=with_adapter), label=label, **kw)
    picker.tuneloop_choices = functools.partial(run_choices, ws, with_adapter=with_adapter)
    picker.tuneloop_default = functools.partial(default_run, ws, with_adapter=with_adapter)
    return remember_choice(picker)

def picker(choices, default, *, label: str, **kw) -> gr.Dropdown:
    """A dropdown of any other kind of choice that ``refresh_on_select`` keeps up to date: ``choices()`` gives
    its (label, value) pairs, ``default()`` what it shows first (and instead of a vanished value)."""
    kw.setdefault("value", default())
    made = gr.Dropdown(choices(), label=label, **kw)
    made.tuneloop_choices, made.tuneloop_default = choices, default
    return remember_choice(made)


def remember_choice(picker: gr.Dropdown) -> gr.Dropdown:
    """Give ``picker`` a state (``picker.tuneloop_chosen``) holding what the user picked in it, None until
    they pick: a refresh keeps a value the user chose and lets a preselected one follow the default (the
    current version, the newest run), so a version made since is what the picker shows."""
    picker.tuneloop_chosen = gr.State(None)
    picker.input(lambda value: value, picker, picker.tuneloop_chosen, show_progress="hidden", api_name=False)
    return picker


def picked_value(picker: gr.Dropdown, data: dict):
    """What an action acts on from ``picker``: the value the user picked, else the picker's default as it
    stands now (a preselection the page may still show from before the tab's refresh arrived). The caller
    puts ``picker.tuneloop_chosen`` among the event's inputs; without it the shown value is taken."""
    chosen = getattr(picker, "tuneloop_chosen", None)
    if chosen is None or chosen not in data or data[chosen] is not None:
        return data[picker]
    default = picker.tuneloop_default()
    if picker.multiselect:
        return [default] if default else []
    return default if default is not None else data[picker]


def picker_updates(pickers: list[gr.Dropdown], values: list, chosen: list | None = None) -> list:
    """Fresh choices for each picker; a chosen value that still exists stays, a vanished one (or none)
    becomes the picker's default. Multi-select pickers keep the chosen values that still exist.
    ``chosen`` (the pickers' ``tuneloop_chosen`` states) says what the user picked: a value shown that the
    user never picked is a preselection and follows the default (the current version moves on)."""
    out = []
    for n, (picker, value) in enumerate(zip(pickers, values)):
        choices = picker.tuneloop_choices()
        known = {c[1] for c in choices}
        picked = True if chosen is None else chosen[n] is not None
        if picker.multiselect:
            if not picked:
                value = [picker.tuneloop_default()] if picker.tuneloop_default() else []
            out.append(gr.update(choices=choices, value=[v for v in (value or []) if v in known]))
        else:
            keep = value in known and picked
            out.append(gr.update(choices=choices, value=value if keep else picker.tuneloop_default()))
    return out


class PickerRefresh:
    """What ``refresh_on_select`` returns: ``after(event)`` re-reads the pickers once an action that
    makes a version or a run has finished."""

    def __init__(self, pickers: list[gr.Dropdown]):
        self.pickers = list(pickers)
        self.inputs = self.pickers + [p.tuneloop_chosen for p in self.pickers]

    def __call__(self, *values):
        """Values of the pickers, then (from the page) what the user picked in each."""
        n = len(self.pickers)
        chosen = list(values[n:]) if len(values) > n else None
        updates = picker_updates(self.pickers, list(values[:n]), chosen)
        return updates[0] if len(updates) == 1 else updates

    def after(self, dependency):
        """Chain the refresh after ``dependency`` (an event listener's return value)."""
        return dependency.then(self, self.inputs, self.pickers, show_progress="hidden", api_name=False)


def refresh_on_select(tab, ws, pickers: list[gr.Dropdown]) -> PickerRefresh:
    """Re-read every picker's choices whenever ``tab`` is selected, so that "current" always means current
    and a version or run made elsewhere is there to pick. The pickers come from ``version_picker`` and
    ``run_picker`` (for ``ws``)."""
    refresh = PickerRefresh(pickers)
    tab.select(refresh, refresh.inputs, refresh.pickers, show_progress="hidden", api_name=False)
    return refresh


# -- static scripts -----------------------------------------------------------------------------------

def static_js(name: str) -> str:
    """The script ``ui/static/<name>.js``, for ``js=`` or (wrapped by ``static_head``) ``head=``."""
    return (STATIC / f"{name}.js").read_text(encoding="utf-8")


def static_css(name: str) -> str:
    """The stylesheet ``ui/static/<name>.css`` as a ``<style>`` block for ``gr.Blocks(head=...)``."""
    return f"<style>\n{(STATIC / f'{name}.css').read_text(encoding='utf-8')}</style>"


def static_head(*names: str) -> str:
    """The page-head HTML for ``gr.Blocks(head=...)``: each name's ``.css`` (if there is one) and ``.js``."""
    parts = []
    for name in names:
        css = STATIC / f"{name}.css"
        if css.is_file():
            parts.append(f"<style>\n{css.read_text(encoding='utf-8')}</style>")
        parts.append(f"<script>\n{static_js(name)}</script>")
    return "\n".join(parts)
