"""The Playground tab: ask the base model and a fine-tuned run the same thing and watch both answer.

Only wires widgets to ``evaluation.playground``; ``build_playground_tab(ws)`` creates one ``gr.Tab`` inside the
caller's Blocks. ``allow_send=False`` (the read-only viewer role) leaves out "send to dataset" entirely, so no
handler for it exists in that app's API.
"""

import html
import random
import threading

from core.access import check_role
from core.errors import TuneloopError
from curation.ui.common import error_markdown, short
from evaluation import playground as P
from training.inference import DecodingSettings

INTRO = """### Playground: the base model and the fine-tuned one, side by side
Type a question (or pick one from the test split) and both models answer at the same time, word by word:
on the **left** the model before fine-tuning (or another run, if you choose one to compare against), on the
**right** the fine-tuned run. Both get exactly the same question, system prompt and decoding settings, so any
difference comes from the fine-tuning. Keep chatting to test a multi-turn conversation: each side continues
from its own earlier answers."""
SETTINGS_HELP = ("Shared by both sides. **Temperature 0** answers the same way every time (best for comparing); "
                 "higher values make answers more varied, and **Regenerate** then shows another sample.")
SEND_HELP = ("Liked an answer, or know how it should read? Take it from the left or right side, edit it, and add it "
             "to the dataset: it becomes a new training example (the conversation plus this answer) in a new "
             "dataset version, marked as coming from the playground with the run, the side and your name. "
             "An answer to a test-split example stays in the test split.")
EMPTY_STATE = {"left": [], "right": [], "origin": None, "matchup": None}

_running: dict[str, threading.Event] = {}       # session -> the stop switch of its current answer pair
_running_lock = threading.Lock()


def build_playground_tab(ws, *, allow_send: bool = True):
    """The "Playground" tab; ``allow_send=False`` for read-only viewers."""
    import gradio as gr

    defaults = DecodingSettings()
    run_choices = P.playground_runs(ws)
    example_choices, example_note = _example_choices(ws)
    with gr.Tab("Playground"):
        gr.Markdown(INTRO)
        with gr.Row():
            run = gr.Dropdown(run_choices, value=run_choices[0][1] if run_choices else None, label="Fine-tuned run",
                              info="A finished training run (right side).", scale=3)
            adapter = gr.Textbox(label="…or an adapter folder", scale=3,
                                 info="A folder with adapter_config.json; used instead of the run when set.")
            against = gr.Dropdown([("Base model (before fine-tuning)", "base")] + run_choices, value="base",
                                  label="Compare against (left side)", scale=3,
                                  info="The base model, or another run trained on the same base model.")
            refresh = gr.Button("↻ Refresh runs and examples", scale=1)
        with gr.Accordion("Decoding settings (the same for both sides)", open=False):
            gr.Markdown(SETTINGS_HELP)
            system = gr.Textbox(label="System prompt", lines=2,
                                placeholder="Optional: instructions both models get first")
            with gr.Row():
                temperature = gr.Slider(0, 1.5, value=defaults.knob_temperature, step=0.05, label="Temperature",
                                        info="0 = always the same answer")
                top_p = gr.Slider(0.1, 1.0, value=defaults.top_p, step=0.05, label="Top-p",
                                  info="Used when temperature > 0")
                max_tokens = gr.Slider(8, 512, value=defaults.max_new_tokens, step=8, label="Max new tokens",
                                       info="Longer answers take longer")
        with gr.Accordion("Start from a test example", open=False):
            gr.Markdown("Pick a question from the test split of the current dataset version (questions the model did "
                        "not train on). Its reference answer is shown below for comparison.")
            with gr.Row():
                example = gr.Dropdown(example_choices, value=None, label="Test example", info=example_note, scale=4)
            reference = gr.Markdown("")
        status = gr.Markdown("", elem_id="playground-status")
        try:
            labels = _labels(_matchup(ws, run_choices[0][1] if run_choices else None, "", "base"))
        except TuneloopError:
            labels = _labels(None)
        with gr.Row(equal_height=True):
            left_chat = gr.Chatbot(label=labels[0], height=420, buttons=["copy", "copy_all"], elem_id="playground-left",
                                   placeholder="The left answer appears here.")
            right_chat = gr.Chatbot(label=labels[1], height=420, buttons=["copy", "copy_all"],
                                    elem_id="playground-right", placeholder="The right answer appears here.")
        message = gr.Textbox(label="Your message", lines=2, elem_id="playground-message",
                             placeholder="Ask something, then press Enter or “Ask both” (Shift+Enter: new line).")
        with gr.Row():
            ask = gr.Button("Ask both", variant="primary")
            regenerate = gr.Button("↻ Regenerate")
            stop = gr.Button("■ Stop", variant="stop")
            clear = gr.Button("New conversation")
        state = gr.State(dict(EMPTY_STATE))

        pick = [run, adapter, against]
        knobs = [system, temperature, top_p, max_tokens]
        streamed = [left_chat, right_chat, status, state, message]

        def on_models_change(run_id, folder, other, st):
            try:
                matchup = _matchup(ws, run_id, folder, other)
            except TuneloopError as exc:
                names = _labels(None)
                return gr.Chatbot(label=names[0]), gr.Chatbot(label=names[1]), error_markdown(exc), st
            if st.get("matchup") in (None, matchup):
                names = _labels(matchup)
                return gr.Chatbot(label=names[0]), gr.Chatbot(label=names[1]), "", st
            # Other models: a new conversation, so each answer is read against the models that wrote it.
            names = _labels(matchup)
            return (gr.Chatbot(value=[], label=names[0]), gr.Chatbot(value=[], label=names[1]),
                    "Models changed: a new conversation starts.", dict(EMPTY_STATE))

        for widget in (run, against):
            widget.change(on_models_change, [*pick, state], [left_chat, right_chat, status, state])
        for event in (adapter.submit, adapter.blur):
            event(on_models_change, [*pick, state], [left_chat, right_chat, status, state])

        def on_refresh(run_id, other):
            choices = P.playground_runs(ws)
            ids = {c[1] for c in choices}
            examples, note = _example_choices(ws)
            keep = run_id if run_id in ids else (choices[0][1] if choices else None)
            return (gr.Dropdown(choices=choices, value=keep),
                    gr.Dropdown(choices=[("Base model (before fine-tuning)", "base")] + choices,
                                value=other if other in ids else "base"),
                    gr.Dropdown(choices=examples, value=None, info=note))

        refresh.click(on_refresh, [run, against], [run, against, example])

        def on_example(record_id):
            if not record_id:
                return gr.update(), gr.update(), "", gr.update(), gr.update(), gr.update(), gr.update()
            try:
                record = _example(ws, record_id)
            except TuneloopError as exc:
                return gr.update(), gr.update(), error_markdown(exc), gr.update(), gr.update(), gr.update(), gr.update()
            sys_prompt, earlier, question, answer = P.example_conversation(record)
            st = {"left": list(earlier), "right": list(earlier), "origin": P.example_origin(record), "matchup": None}
            shown = _chat(earlier)
            ref = (f"**Reference answer** (from the dataset, record `{html.escape(record.id)}`):\n\n> "
                   + html.escape(answer).replace("\n", "\n> ") if answer else "*This example has no reference answer.*")
            return question, sys_prompt, ref, shown, shown, st, "Example loaded: press **Ask both**."

        example.change(on_example, [example], [message, system, reference, left_chat, right_chat, state, status])

        def on_ask(run_id, folder, other, sys_prompt, temp, top, max_new, text, st, request: gr.Request):
            yield from _ask(ws, run_id, folder, other, sys_prompt, temp, top, max_new, text, st, request)

        def on_regenerate(run_id, folder, other, sys_prompt, temp, top, max_new, text, st, request: gr.Request):
            last_user = max((i for i, m in enumerate(st["right"]) if m["role"] == "user"), default=None)
            if last_user is None:
                yield gr.update(), gr.update(), "Nothing to regenerate yet: ask something first.", st, text
                return
            question = st["right"][last_user]["content"]
            trimmed = {**st, "left": _before_last_user(st["left"]), "right": _before_last_user(st["right"])}
            yield from _ask(ws, run_id, folder, other, sys_prompt, temp, top, max_new, question, trimmed, request,
                            keep_message=text)

        inputs = [*pick, *knobs, message, state]
        ask.click(on_ask, inputs, streamed)
        message.submit(on_ask, inputs, streamed)
        regenerate.click(on_regenerate, inputs, streamed)

        def on_stop(request: gr.Request):
            with _running_lock:
                event = _running.get(_session(request))
            if event is None:
                return "Nothing is running."
            event.set()
            return "Stopping…"

        stop.click(on_stop, None, status)

        def on_clear():
            return [], [], "", dict(EMPTY_STATE), "", None, ""

        clear.click(on_clear, None, [left_chat, right_chat, status, state, message, example, reference])

        if allow_send:
            _send_section(ws, state, system)


def _send_section(ws, state, system):
    import gradio as gr

    with gr.Accordion("Send an answer to the dataset", open=False):
        gr.Markdown(SEND_HELP)
        with gr.Row():
            side = gr.Radio([("Left answer", "left"), ("Right answer", "right")], value="right", label="Which answer",
                            scale=2)
            take = gr.Button("Take this answer to edit", scale=1)
        answer = gr.Textbox(label="Answer to add (edit it as you like)", lines=6, elem_id="playground-answer")
        original = gr.State("")
        send = gr.Button("Add to dataset (new version)", variant="primary")
        result = gr.Markdown("")

        def on_take(which, st):
            text = _last_answer(st[which])
            if not text:
                return "", "", "No answer on that side yet: ask something first."
            return text, text, ""

        take.click(on_take, [side, state], [answer, original, result])

        def on_send(which, text, orig, st, sys_prompt, request: gr.Request):
            try:
                author = check_role(ws, request, ("admin",))
                if st.get("matchup") is None or not _last_answer(st[which]):
                    raise TuneloopError("ask something first, then take an answer from the left or right side")
                matchup = st["matchup"]
                version, record = P.send_to_dataset(
                    ws, _before_last_answer(st[which]), text, side=matchup.left if which == "left" else matchup.right,
                    author=author, original_answer=orig, origin=st.get("origin"), system_prompt=sys_prompt)
            except TuneloopError as exc:
                return error_markdown(exc)
            edited = "edited, " if record.meta["edited"] else ""
            return (f"✅ Added record `{record.id}` ({edited}from {html.escape(record.meta['model'])}) as "
                    f"**{version.name}**, now the current version. It is a training example from the next run on.")

        send.click(on_send, [side, answer, original, state, system], result)


# -- helpers the handlers share -----------------------------------------------------------------

def _ask(ws, run_id, folder, other, sys_prompt, temp, top, max_new, text, st, request, *, keep_message=""):
    """Stream both answers into the two chats; the conversation state changes only when they are done."""
    question = (text or "").strip()
    if not question:
        yield _chat(st["left"]), _chat(st["right"]), "Type a question first.", st, text
        return
    try:
        matchup = P.matchup_for(ws, (folder or "").strip() or run_id, against=other)
        if st.get("matchup") not in (None, matchup):
            st = dict(EMPTY_STATE)       # other models than the conversation's: start it anew
        seed = random.randrange(2 ** 31) if float(temp) > 0 else 0
        settings = DecodingSettings.from_knobs(temperature=temp, top_p=top, max_new_tokens=max_new, seed=seed)
    except TuneloopError as exc:
        yield _chat(st["left"]), _chat(st["right"]), error_markdown(exc), st, text
        return
    asked = [c + [{"role": "user", "content": question}] for c in (st["left"], st["right"])]
    cancel = threading.Event()
    session = _session(request)
    with _running_lock:
        _running[session] = cancel
    last = None
    try:
        for last in P.stream_pair(ws, matchup, asked, settings, system_prompt=sys_prompt or "", cancel=cancel):
            yield (_chat(asked[0], last.texts[0]), _chat(asked[1], last.texts[1]), _status(last, settings),
                   st, keep_message)
    except TuneloopError as exc:
        yield _chat(st["left"]), _chat(st["right"]), error_markdown(exc), st, text
        return
    finally:
        with _running_lock:
            if _running.get(session) is cancel:
                del _running[session]
    done = {**st, "matchup": matchup,
            "left": asked[0] + [{"role": "assistant", "content": last.texts[0].strip()}],
            "right": asked[1] + [{"role": "assistant", "content": last.texts[1].strip()}]}
    yield _chat(done["left"]), _chat(done["right"]), _status(last, settings), done, keep_message


def _status(update: P.PairUpdate, settings) -> str:
    if not update.finished:
        return f"**{update.message}**"
    decoding = "greedy" if not settings.do_sample else (f"temperature {settings.temperature}, top-p {settings.top_p}, "
                                                        f"seed {settings.seed}")
    left, right = update.stats
    return (f"**{update.message}** Same settings on both sides: {decoding}, up to {settings.max_new_tokens} new "
            f"tokens.  \nLeft: {left.describe()} · Right: {right.describe()}")


def _matchup(ws, run_id, folder, other) -> P.Matchup | None:
    """The chosen models; None while neither a run nor an adapter folder is chosen."""
    chosen = (folder or "").strip() or run_id
    return P.matchup_for(ws, chosen, against=other) if chosen else None


def _labels(matchup: P.Matchup | None) -> tuple[str, str]:
    if matchup is None:
        return "Left: base model", "Right: fine-tuned (pick a run or an adapter folder above)"
    return f"Left: {matchup.left.label}", f"Right: {matchup.right.label}"


def _example_choices(ws) -> tuple[list[tuple[str, str]], str]:
    try:
        records = P.split_examples(ws)
    except TuneloopError as exc:
        return [], str(exc)
    label = lambda r: f"{short(r.prompt, 90)}" + (f" · {r.meta['label']}" if r.meta.get("label") else "")  # noqa: E731
    return [(label(r), r.id) for r in records], f"{len(records)} test questions from the current version"


def _example(ws, record_id: str):
    for record in P.split_examples(ws):
        if record.id == record_id:
            return record
    raise TuneloopError("that example is no longer in the current version; press ↻ Refresh")


def _chat(conversation, streaming: str | None = None) -> list[dict]:
    shown = [{"role": m["role"], "content": m["content"]} for m in conversation if m["role"] != "system"]
    if streaming is not None:
        shown.append({"role": "assistant", "content": streaming or "…"})
    return shown


def _last_answer(conversation) -> str:
    return conversation[-1]["content"] if conversation and conversation[-1]["role"] == "assistant" else ""


def _before_last_answer(conversation):
    return conversation[:-1] if conversation and conversation[-1]["role"] == "assistant" else list(conversation)


def _before_last_user(conversation):
    last_user = max((i for i, m in enumerate(conversation) if m["role"] == "user"), default=len(conversation))
    return conversation[:last_user]


def _session(request) -> str:
    return getattr(request, "session_hash", None) or "local"
