"""The Playground tab: ask the base model and a fine-tuned run the same thing and watch both answer.

Only wires widgets to ``evaluation.playground``, in the house pattern: ``layout`` creates the widgets (a
``PlaygroundWidgets``), the module-level handlers take the workspace, the widgets and the page's values (a
dict keyed by component) and return outputs keyed by component, ``build_playground_tab(ws)`` wires them with
``ui.kit.bind`` inside the caller's Blocks. ``allow_send=False`` (the read-only viewer role) leaves out "send
to dataset" entirely, so no handler for it exists in that app's API, and the adapter-folder box.

Only an admin (or the local user of a workspace without logins) names an adapter folder: the handlers ask
``may_name_folders`` on the server, and everyone else gets the workspace's runs only, whatever they send.
"""
from __future__ import annotations

import html
import random
from types import SimpleNamespace

import gradio as gr

from core.access import LOCAL_USER, caller, check_role
from core.errors import TuneloopError
from core.users import get_user
from curation.ui.common import short
from evaluation import playground as P
from training.inference import ENGINES, DecodingSettings, inference_threads, requested_engine
from ui.kit import CancelRegistry, bind, clear_on_input, error_markdown, picker, refresh_on_select

INTRO = """### Playground: the base model and the fine-tuned one, side by side
Type a question (or pick one from the test split) and both models answer at the same time, word by word:
on the **left** the model before fine-tuning (or another run, if you choose one to compare against), on the
**right** the fine-tuned run. Both get exactly the same question, system prompt and decoding settings, so any
difference comes from the fine-tuning. Keep chatting to test a multi-turn conversation: each side continues
from its own earlier answers."""
SETTINGS_HELP = ("Shared by both sides. **Temperature 0** answers the same way every time (best for comparing); "
                 "higher values make answers more varied, and **Regenerate** then shows another sample.")
ENGINE_HELP = ("**llama.cpp**: fastest on CPU; **transformers**: the reference weights; **auto** picks llama.cpp "
               "when it can. Threads: the CPU threads llama.cpp answers with (0 or empty: its own choice).")
SEND_HELP = ("Liked an answer, or know how it should read? Take it from the left or right side, edit it, and add it "
             "to the dataset: it becomes a new training example (the conversation plus this answer) in a new "
             "dataset version, marked as coming from the playground with the run, the side and your name. "
             "An answer to a test-split example stays in the test split.")
EMPTY_STATE = {"left": [], "right": [], "origin": None, "matchup": None}
BASE_CHOICE = ("Base model (before fine-tuning)", "base")
ANSWERS = CancelRegistry()      # the Stop button: each browser session's answer pair in progress


def first_run(ws) -> str | None:
    """What the run picker shows first: the newest run with an adapter."""
    runs = P.playground_runs(ws)
    return runs[0][1] if runs else None


class PlaygroundWidgets(SimpleNamespace):
    """The Playground tab's components by name (``layout`` fills it), and the groups its handlers use."""

    @property
    def models(self) -> list:
        return [self.run, self.adapter, self.against]

    @property
    def asking(self) -> set:
        """What an answer pair is asked with."""
        return {*self.models, self.system, self.temperature, self.top_p, self.max_tokens, self.engine, self.threads,
                self.message, self.state}

    @property
    def streamed(self) -> list:
        return [self.left_chat, self.right_chat, self.status, self.state, self.message]


def layout(ws, *, allow_send: bool = True) -> PlaygroundWidgets:
    """The Playground tab's widgets, created inside the caller's Blocks; nothing is wired yet."""
    defaults = DecodingSettings()
    example_choices, example_note = example_picker_choices(ws)
    w = PlaygroundWidgets(allow_send=allow_send)
    with gr.Tab("Playground") as w.tab:
        gr.Markdown(INTRO)
        with gr.Row():
            w.run = picker(lambda: P.playground_runs(ws), lambda: first_run(ws), label="Fine-tuned run",
                           info="A finished training run (right side).", scale=3)
            w.adapter = gr.Textbox(label="…or an adapter folder", scale=3, visible=allow_send,
                                   info="A folder with adapter_config.json; used instead of the run when set.")
            w.against = picker(lambda: [BASE_CHOICE] + P.playground_runs(ws), lambda: "base",
                               label="Compare against (left side)", scale=3,
                               info="The base model, or another run trained on the same base model.")
            w.refresh = gr.Button("↻ Refresh runs and examples", scale=1)
        with gr.Accordion("Decoding settings (the same for both sides)", open=False):
            gr.Markdown(SETTINGS_HELP)
            w.system = gr.Textbox(label="System prompt", lines=2,
                                  placeholder="Optional: instructions both models get first")
            with gr.Row():
                w.temperature = gr.Slider(0, 1.5, value=defaults.knob_temperature, step=0.05, label="Temperature",
                                          info="0 = always the same answer")
                w.top_p = gr.Slider(0.1, 1.0, value=defaults.top_p, step=0.05, label="Top-p",
                                    info="Used when temperature > 0")
                w.max_tokens = gr.Slider(8, 512, value=defaults.max_new_tokens, step=8, label="Max new tokens",
                                         info="Longer answers take longer")
        with gr.Accordion("Engine (how the answers are computed)", open=False):
            gr.Markdown(ENGINE_HELP)
            with gr.Row():
                w.engine = gr.Radio([(name, name) for name in ENGINES], value=engine_default(), label="Engine",
                                    elem_id="playground-engine", scale=3)
                w.threads = gr.Number(value=threads_default(), precision=0, minimum=0, label="Threads", scale=1,
                                      elem_id="playground-threads")
        with gr.Accordion("Start from a test example", open=False):
            gr.Markdown("Pick a question from the test split of the current dataset version (questions the model did "
                        "not train on). Its reference answer is shown below for comparison.")
            with gr.Row():
                w.example = gr.Dropdown(example_choices, value=None, label="Test example", info=example_note, scale=4)
            w.reference = gr.Markdown("")
        w.status = gr.Markdown("", elem_id="playground-status")
        try:
            labels = chat_labels(chosen_matchup(ws, w.run.value, "", "base"))
        except TuneloopError:
            labels = chat_labels(None)
        with gr.Row(equal_height=True):
            w.left_chat = gr.Chatbot(label=labels[0], height=420, buttons=["copy", "copy_all"],
                                     elem_id="playground-left", placeholder="The left answer appears here.")
            w.right_chat = gr.Chatbot(label=labels[1], height=420, buttons=["copy", "copy_all"],
                                      elem_id="playground-right", placeholder="The right answer appears here.")
        w.message = gr.Textbox(label="Your message", lines=2, elem_id="playground-message",
                               placeholder="Ask something, then press Enter or “Ask both” (Shift+Enter: new line).")
        with gr.Row():
            w.ask = gr.Button("Ask both", variant="primary")
            w.regenerate = gr.Button("↻ Regenerate")
            w.stop = gr.Button("■ Stop", variant="stop")
            w.clear = gr.Button("New conversation")
        w.state = gr.State(dict(EMPTY_STATE))
        if allow_send:
            with gr.Accordion("Send an answer to the dataset", open=False):
                gr.Markdown(SEND_HELP)
                with gr.Row():
                    w.side = gr.Radio([("Left answer", "left"), ("Right answer", "right")], value="right",
                                      label="Which answer", scale=2)
                    w.take = gr.Button("Take this answer to edit", scale=1)
                w.answer = gr.Textbox(label="Answer to add (edit it as you like)", lines=6, elem_id="playground-answer")
                w.original = gr.State("")
                w.send = gr.Button("Add to dataset (new version)", variant="primary")
                w.result = gr.Markdown("")
    return w


# -- handlers -------------------------------------------------------------------------------------

def may_name_folders(ws, request) -> bool:
    """Whether this caller may load an adapter from a folder on the server: admins, and the local user."""
    name = caller(ws, request)
    if name == LOCAL_USER:
        return True
    user = get_user(ws, name)
    return user is not None and user.role == "admin"


def models_changed(ws, w: PlaygroundWidgets, data: dict, request: gr.Request = None) -> dict:
    """New chat labels for the chosen models; other models than the conversation's start a new one."""
    st = data[w.state]
    try:
        matchup = chosen_matchup(ws, data[w.run], data[w.adapter], data[w.against],
                                 folders=may_name_folders(ws, request))
    except TuneloopError as exc:
        names = chat_labels(None)
        return {w.left_chat: gr.Chatbot(label=names[0]), w.right_chat: gr.Chatbot(label=names[1]),
                w.status: error_markdown(exc), w.state: st}
    names = chat_labels(matchup)
    if st.get("matchup") in (None, matchup):
        return {w.left_chat: gr.Chatbot(label=names[0]), w.right_chat: gr.Chatbot(label=names[1]), w.status: "",
                w.state: st}
    # Other models: a new conversation, so each answer is read against the models that wrote it.
    return {w.left_chat: gr.Chatbot(value=[], label=names[0]), w.right_chat: gr.Chatbot(value=[], label=names[1]),
            w.status: "Models changed: a new conversation starts.", w.state: dict(EMPTY_STATE)}


def refresh_models(ws, w: PlaygroundWidgets, data: dict) -> dict:
    """The runs and test examples as they are now; a chosen run that still exists stays."""
    examples, note = example_picker_choices(ws)
    runs, against = w.run.tuneloop_choices(), w.against.tuneloop_choices()
    return {w.run: gr.update(choices=runs, value=data[w.run] if data[w.run] in {c[1] for c in runs}
                             else first_run(ws)),
            w.against: gr.update(choices=against, value=data[w.against] if data[w.against] in {c[1] for c in against}
                                 else "base"),
            w.example: gr.update(choices=examples, value=None, info=note)}


def pick_example(ws, w: PlaygroundWidgets, data: dict) -> dict:
    """Start the conversation from a test example: its question, system prompt and earlier turns, and its
    reference answer for comparison."""
    if not data[w.example]:
        return {w.status: ""}
    try:
        record = example_record(ws, data[w.example])
    except TuneloopError as exc:
        return {w.status: error_markdown(exc)}
    sys_prompt, earlier, question, answer = P.example_conversation(record)
    shown = chat_turns(earlier)
    ref = (f"**Reference answer** (from the dataset, record `{html.escape(record.id)}`):\n\n> "
           + html.escape(answer).replace("\n", "\n> ") if answer else "*This example has no reference answer.*")
    return {w.message: question, w.system: sys_prompt, w.reference: ref, w.left_chat: shown, w.right_chat: shown,
            w.state: {"left": list(earlier), "right": list(earlier), "origin": P.example_origin(record),
                      "matchup": None},
            w.status: "Example loaded: press **Ask both**."}


def ask_both(ws, w: PlaygroundWidgets, data: dict, request: gr.Request = None):
    """Stream both answers to the typed message."""
    yield from answer_pair(ws, w, data, data[w.message], data[w.state], request)


def regenerate_last(ws, w: PlaygroundWidgets, data: dict, request: gr.Request = None):
    """Answer the last question again (another sample when sampling), the typed message kept."""
    st = data[w.state]
    last_user = max((i for i, m in enumerate(st["right"]) if m["role"] == "user"), default=None)
    if last_user is None:
        yield {w.status: "Nothing to regenerate yet: ask something first."}
        return
    trimmed = {**st, "left": before_last_user(st["left"]), "right": before_last_user(st["right"])}
    yield from answer_pair(ws, w, data, st["right"][last_user]["content"], trimmed, request,
                           keep_message=data[w.message])


def stop_answers(ws, w: PlaygroundWidgets, request: gr.Request = None) -> dict:
    """Stop this browser tab's answer pair."""
    return {w.status: "Stopping…" if ANSWERS.cancel(request) else "Nothing is running."}


def new_conversation(ws, w: PlaygroundWidgets) -> dict:
    return {w.left_chat: [], w.right_chat: [], w.status: "", w.state: dict(EMPTY_STATE), w.message: "",
            w.example: None, w.reference: ""}


def take_answer(ws, w: PlaygroundWidgets, data: dict) -> dict:
    """Put the chosen side's last answer in the editor (and remember it as the original)."""
    text = last_answer(data[w.state][data[w.side]])
    if not text:
        return {w.answer: "", w.original: "", w.result: "No answer on that side yet: ask something first."}
    return {w.answer: text, w.original: text, w.result: ""}


def send_answer(ws, w: PlaygroundWidgets, data: dict, request: gr.Request = None) -> dict:
    """Add the conversation with the (edited) answer to the dataset as a new version, with provenance."""
    st, which = data[w.state], data[w.side]
    try:
        author = check_role(ws, request, ("admin",))
        if st.get("matchup") is None or not last_answer(st[which]):
            raise TuneloopError("ask something first, then take an answer from the left or right side")
        matchup = st["matchup"]
        version, record = P.send_to_dataset(
            ws, before_last_answer(st[which]), data[w.answer], side=matchup.left if which == "left" else matchup.right,
            author=author, original_answer=data[w.original], origin=st.get("origin"), system_prompt=data[w.system])
    except TuneloopError as exc:
        return {w.result: error_markdown(exc)}
    edited = "edited, " if record.meta["edited"] else ""
    return {w.result: f"✅ Added record `{record.id}` ({edited}from {html.escape(record.meta['model'])}) as "
                      f"**{version.name}**, now the current version. It is a training example from the next run on."}


# -- wiring ---------------------------------------------------------------------------------------

def build_playground_tab(ws, *, allow_send: bool = True) -> PlaygroundWidgets:
    """The "Playground" tab; ``allow_send=False`` for read-only viewers."""
    w = layout(ws, allow_send=allow_send)
    changing = {*w.models, w.state}
    changed = [w.left_chat, w.right_chat, w.status, w.state]
    for event in (w.run.change, w.against.change, w.adapter.submit, w.adapter.blur):
        event(bind(models_changed, ws, w), changing, changed)
    refresh_on_select(w.tab, ws, [w.run, w.against])
    w.refresh.click(bind(refresh_models, ws, w), {w.run, w.against}, [w.run, w.against, w.example])
    w.example.change(bind(pick_example, ws, w), {w.example},
                     [w.message, w.system, w.reference, w.left_chat, w.right_chat, w.state, w.status])
    for event in (w.ask.click, w.message.submit):
        event(bind(ask_both, ws, w), w.asking, w.streamed)
    w.regenerate.click(bind(regenerate_last, ws, w), w.asking, w.streamed)
    w.stop.click(bind(stop_answers, ws, w), None, [w.status])
    w.clear.click(bind(new_conversation, ws, w), None,
                  [w.left_chat, w.right_chat, w.status, w.state, w.message, w.example, w.reference])
    if allow_send:
        w.take.click(bind(take_answer, ws, w), {w.side, w.state}, [w.answer, w.original, w.result])
        w.send.click(bind(send_answer, ws, w), {w.side, w.answer, w.original, w.state, w.system}, [w.result])
        clear_on_input([w.run, w.against, w.example, w.side], [w.result])
    return w


# -- presenters and helpers the handlers share ------------------------------------------------------

def answer_pair(ws, w: PlaygroundWidgets, data: dict, text, st, request, *, keep_message=""):
    """Stream both answers into the two chats; the conversation state changes only when they are done."""
    question = (text or "").strip()
    if not question:
        yield {w.left_chat: chat_turns(st["left"]), w.right_chat: chat_turns(st["right"]),
               w.status: "Type a question first.", w.state: st, w.message: text}
        return
    try:
        matchup = P.matchup_for(ws, (data[w.adapter] or "").strip() or data[w.run], against=data[w.against],
                                folders=may_name_folders(ws, request))
        if st.get("matchup") not in (None, matchup):
            st = dict(EMPTY_STATE)       # other models than the conversation's: start it anew
        temp = data[w.temperature]
        seed = random.randrange(2 ** 31) if float(temp) > 0 else 0
        settings = DecodingSettings.from_knobs(temperature=temp, top_p=data[w.top_p],
                                               max_new_tokens=data[w.max_tokens], seed=seed)
    except TuneloopError as exc:
        yield {w.left_chat: chat_turns(st["left"]), w.right_chat: chat_turns(st["right"]),
               w.status: error_markdown(exc), w.state: st, w.message: text}
        return
    asked = [c + [{"role": "user", "content": question}] for c in (st["left"], st["right"])]
    cancel = ANSWERS.start(request)
    last = None
    try:
        threads = data[w.threads]
        for last in P.stream_pair(ws, matchup, asked, settings, system_prompt=data[w.system] or "", cancel=cancel,
                                  engine=data[w.engine], threads=int(threads) if threads else None):
            yield {w.left_chat: chat_turns(asked[0], last.texts[0]), w.right_chat: chat_turns(asked[1], last.texts[1]),
                   w.status: status_line(last, settings), w.state: st, w.message: keep_message}
    except TuneloopError as exc:
        yield {w.left_chat: chat_turns(st["left"]), w.right_chat: chat_turns(st["right"]),
               w.status: error_markdown(exc), w.state: st, w.message: text}
        return
    finally:
        ANSWERS.finish(request, cancel)
    done = {**st, "matchup": matchup,
            "left": asked[0] + [{"role": "assistant", "content": last.texts[0].strip()}],
            "right": asked[1] + [{"role": "assistant", "content": last.texts[1].strip()}]}
    yield {w.left_chat: chat_turns(done["left"]), w.right_chat: chat_turns(done["right"]),
           w.status: status_line(last, settings), w.state: done, w.message: keep_message}


def engine_default() -> str:
    """The engine the radio starts on: $TUNELOOP_ENGINE's (as the CLI answers), "auto" when it names none."""
    try:
        return requested_engine()
    except TuneloopError:
        return "auto"


def threads_default() -> int | None:
    """The threads box's start: $TUNELOOP_THREADS, empty when it is unset or not a number of threads."""
    try:
        return inference_threads()
    except TuneloopError:
        return None


def status_line(update: P.PairUpdate, settings) -> str:
    if not update.finished:
        return f"**{update.message}**"
    decoding = "greedy" if not settings.do_sample else (f"temperature {settings.temperature}, top-p {settings.top_p}, "
                                                        f"seed {settings.seed}")
    left, right = update.stats
    return (f"**{update.message}** Same settings on both sides: {decoding}, up to {settings.max_new_tokens} new "
            f"tokens; answered by **{update.engine}**.  \nLeft: {left.describe()} · Right: {right.describe()}")


def chosen_matchup(ws, run_id, folder, other, *, folders: bool = True) -> P.Matchup | None:
    """The chosen models; None while neither a run nor an adapter folder is chosen. ``folders=False`` (a caller
    who is not an admin): ``folder`` and the run pickers' values must name the workspace's runs."""
    chosen = (folder or "").strip() or run_id
    return P.matchup_for(ws, chosen, against=other, folders=folders) if chosen else None


def chat_labels(matchup: P.Matchup | None) -> tuple[str, str]:
    if matchup is None:
        return "Left: base model", "Right: fine-tuned (pick a run or an adapter folder above)"
    return f"Left: {matchup.left.label}", f"Right: {matchup.right.label}"


def example_picker_choices(ws) -> tuple[list[tuple[str, str]], str]:
    try:
        records = P.split_examples(ws)
    except TuneloopError as exc:
        return [], str(exc)
    label = lambda r: f"{short(r.prompt, 90)}" + (f" · {r.meta['label']}" if r.meta.get("label") else "")  # noqa: E731
    return [(label(r), r.id) for r in records], f"{len(records)} test questions from the current version"


def example_record(ws, record_id: str):
    for record in P.split_examples(ws):
        if record.id == record_id:
            return record
    raise TuneloopError("that example is no longer in the current version; press ↻ Refresh")


def chat_turns(conversation, streaming: str | None = None) -> list[dict]:
    shown = [{"role": m["role"], "content": m["content"]} for m in conversation if m["role"] != "system"]
    if streaming is not None:
        shown.append({"role": "assistant", "content": streaming or "…"})
    return shown


def last_answer(conversation) -> str:
    return conversation[-1]["content"] if conversation and conversation[-1]["role"] == "assistant" else ""


def before_last_answer(conversation):
    return conversation[:-1] if conversation and conversation[-1]["role"] == "assistant" else list(conversation)


def before_last_user(conversation):
    last_user = max((i for i, m in enumerate(conversation) if m["role"] == "user"), default=len(conversation))
    return conversation[:last_user]
