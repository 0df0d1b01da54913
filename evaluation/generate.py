"""Answers for every arm of an evaluation, generated ahead of rating, and the prompts they answer.

An arm is whatever answers a prompt (``evaluation.arena.Arm``): the **base** model; the **prompted** base (a
system prompt and k examples drawn from a version's train split, given as earlier turns; which examples is
stored in the arm's settings, so the arm can be answered again the same way); a **run** (its adapter on the
same base); an **endpoint** (any OpenAI-compatible ``/v1/chat/completions``, such as ``python -m training
serve``; the API key comes from an environment variable the admin names, and only that name is stored).

The local arms come from the process's one warm copy of the base model (``training.inference.warm_base``,
shared with the playground and the automatic metrics): with every adapter off, or the run's adapter on, so
they use the same tokenizer, chat template and decoding settings. Prompts go through in batches, shortest
first (less padding); every finished batch (an endpoint's every answer) is stored in the workspace's
generation cache, keyed by what answered (the model, the engine when it is llama.cpp, the adapter; an
endpoint's URL and model), the decoding settings and the conversation it was sent (the prompted arm's system
prompt and examples included), so a cancelled or repeated job picks up where it was.

Why an evaluation is made is its **purpose**, stored in its settings: ``measure`` (held-out test prompts; the
votes feed the statistics only) or ``improve`` (prompts from the training pool, typed or uploaded, or requests
served by the endpoint with their text logged; votes and corrections become training data, so these prompts
carry the ``train`` split).

Example::

    items = prompts_for(ws, "test", purpose="measure", version="v4")
    base, arms = resolve_arms(ws, [parse_arm("base"), parse_arm("prompted:3"), parse_arm("run:3")],
                              items=items, version="v4")
    answers = generate_answers(ws, items, arms, base_model=base, settings=DecodingSettings(max_new_tokens=128))
    eid = prepare_evaluation(ws, items, arms=arms, base_model=base, purpose="measure", prompt_source="test")
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import Record, canonical_json, new_record_id
from evaluation.arena import Arm, EvalItem, GoldItem, RaterChecks, create_evaluation
from training.inference import DecodingSettings, WarmBase, adapter_fingerprint, default_pool

Progress = Callable[[int, int, str], None]      # (done, total, what is happening)

PURPOSES = {
    "measure": "Rate to measure: held-out test prompts; the votes feed the statistics only, never the training data.",
    "improve": "Rate to improve: prompts from the training pool, typed, uploaded or served; the votes and corrections "
               "become training data for the next version.",
}
# Where prompts come from, the purpose each serves, and what it is, in one sentence.
PROMPT_SOURCES = {
    "test": ("measure", "The test split of a dataset version: prompts no run trained on."),
    "train": ("improve", "The train split of a dataset version: the pool the next round trains on."),
    "typed": ("improve", "Prompts typed here, one per line."),
    "file": ("improve", "Prompts from an uploaded file, in any format the Data tab imports."),
    "served": ("improve", "Requests the endpoint answered (python -m training serve), where it logged their text."),
}
ARM_KINDS = ("base", "prompted", "run", "endpoint")
ENDPOINT_TIMEOUT_S = 120


class GenerationCancelled(TuneloopError):
    """Generation was stopped; the batches finished before the stop are kept in the cache."""


@dataclass(frozen=True)
class PromptItem:
    """A prompt to answer: the conversation up to and including its last user turn."""
    prompt_id: str
    messages: list[dict[str, str]]
    label: str | None = None
    split: str | None = None


# -- prompts ----------------------------------------------------------------------------------

def record_label(record: Record, label_field: str | None = None) -> str | None:
    """The record's label for per-label results: its meta ``label_field`` (without one: ``label``, else
    ``intent``), as text; None when it has none."""
    label = record.meta.get(label_field) if label_field else record.meta.get("label", record.meta.get("intent"))
    return None if label is None else str(label)


def prompt_from_record(record: Record, label_field: str | None = None) -> PromptItem | None:
    """The record's conversation cut after its last user turn, labelled by ``record_label``; None when it has
    no user turn."""
    last_user = max((i for i, m in enumerate(record.messages) if m["role"] == "user"), default=None)
    if last_user is None:
        return None
    return PromptItem(record.id, record.messages[: last_user + 1], record_label(record, label_field),
                      record.meta.get("split"))


def prompts_from_records(records: Iterable[Record], *, split: str | None = "test", limit: int | None = None,
                         label_field: str | None = None) -> list[PromptItem]:
    records = list(records)
    if split:
        chosen = [r for r in records if r.meta.get("split") == split]
        if not chosen:
            raise TuneloopError(f"no record is in the '{split}' split; build a split first (Splits tab), or rate "
                                f"typed or uploaded prompts")
    else:
        chosen = records
    items = [p for p in (prompt_from_record(r, label_field) for r in chosen) if p is not None]
    return items[:limit] if limit else items


def prompts_from_version(ws: Workspace, version: int | str, *, split: str | None = "test",
                         limit: int | None = None) -> list[PromptItem]:
    """A version's prompts of one split (the test split by default), labelled by the version's label field."""
    from curation.data.versions import load_records
    from curation.review.labels import label_field
    return prompts_from_records(load_records(ws, version), split=split, limit=limit,
                                label_field=label_field(ws, version))


def prompts_from_texts(texts: Iterable[str]) -> list[PromptItem]:
    """Typed prompts, one per entry; blank entries are skipped; ids come from the text."""
    items, seen = [], set()
    for text in texts:
        if text.strip() and text.strip() not in seen:
            seen.add(text.strip())
            messages = [{"role": "user", "content": text.strip()}]
            items.append(PromptItem(new_record_id(messages, salt="typed"), messages))
    if not items:
        raise TuneloopError("no prompts given; type one prompt per line")
    return items


def prompts_from_file(path: str | Path, *, limit: int | None = None) -> list[PromptItem]:
    """Uploaded prompts: every conversation of a file in any format the importer reads."""
    from curation.data.formats import read_records
    return prompts_from_records(read_records(path).records, split=None, limit=limit)


def prompts_from_served(ws: Workspace, *, limit: int | None = None) -> list[PromptItem]:
    """Requests the endpoint answered with their text logged (``serve --log-text``), oldest first, each
    conversation once; the prompt id is the response id the client got (``chatcmpl-...``)."""
    rows = ws.db.execute("select id, request_text from serve_requests where status=200 and request_text is not null"
                         " order by created_at, rowid").fetchall()
    items, seen = [], set()
    for row in rows:
        messages = [m for m in json.loads(row["request_text"]) if m.get("role") in ("system", "user", "assistant")]
        item = prompt_from_record(Record(row["id"], messages, {}))
        if item is not None and canonical_json(item.messages) not in seen:
            seen.add(canonical_json(item.messages))
            items.append(item)
    if not items:
        total = ws.db.execute("select count(*) from serve_requests where status=200").fetchone()[0]
        raise TuneloopError(f"no served request has its text logged ({total} answered without it); start the "
                            f"endpoint with 'Log request text' on (`python -m training serve --log-text`), let it "
                            f"answer, then prepare again")
    return items[:limit] if limit else items


def check_purpose(purpose: str, source: str) -> None:
    """Refuse a prompt source that does not serve the purpose (test prompts only measure; the rest improve)."""
    if purpose not in PURPOSES:
        raise TuneloopError(f"'{purpose}' is not a purpose; choose measure (held-out test prompts) or improve "
                            f"(prompts whose votes become training data)")
    if source not in PROMPT_SOURCES:
        raise TuneloopError(f"'{source}' is not a prompt source; choose one of {', '.join(PROMPT_SOURCES)}")
    serves = PROMPT_SOURCES[source][0]
    if serves != purpose:
        allowed = ", ".join(k for k, (p, _) in PROMPT_SOURCES.items() if p == purpose)
        raise TuneloopError(f"prompts from '{source}' serve rating to {serves}, not to {purpose}; to {purpose}, "
                            f"take prompts from: {allowed}")


def prompts_for(ws: Workspace, source: str, *, purpose: str, version: int | str | None = None,
                texts: Iterable[str] = (), path: str | Path | None = None,
                limit: int | None = None) -> list[PromptItem]:
    """The prompts of one source for one purpose (``PROMPT_SOURCES``), checked against it. Prompts to improve
    with carry the ``train`` split, so the merge of their corrections lands in the training data."""
    check_purpose(purpose, source)
    if source in ("test", "train"):
        if version is None:
            raise TuneloopError(f"choose the dataset version whose {source} split holds the prompts")
        items = prompts_from_version(ws, version, split=source, limit=limit)
    elif source == "typed":
        items = prompts_from_texts(texts)[:limit] if limit else prompts_from_texts(texts)
    elif source == "file":
        if not path:
            raise TuneloopError("upload a file of prompts (any format the Data tab imports)")
        items = prompts_from_file(path, limit=limit)
    else:
        items = prompts_from_served(ws, limit=limit)
    if purpose == "improve":
        items = [PromptItem(i.prompt_id, i.messages, i.label, "train") for i in items]
    return items


# -- runs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunModels:
    """What a run's responses come from: its base model (as the user named it) and its adapter folder."""
    base_model: str
    adapter: str
    run_id: str | None


def resolve_adapter(ws: Workspace, run: str | Path) -> RunModels:
    """A run id from the run registry, a run folder holding ``adapter/``, or an adapter folder."""
    path = Path(str(run)).expanduser()
    for folder in (path, path / "adapter"):
        if (folder / "adapter_config.json").is_file():
            config = json.loads((folder / "adapter_config.json").read_text())
            base = config.get("base_model_name_or_path")
            if not base:
                raise TuneloopError(f"{folder} does not say which base model it was trained on; name it with --base")
            return RunModels(base_model=str(base), adapter=str(folder.resolve()), run_id=None)
    return _registry_run(ws, str(run))


def _registry_run(ws: Workspace, run_id: str) -> RunModels:
    if not run_id.strip().lstrip("#").removeprefix("run-").isdigit():
        raise TuneloopError(f"'{run_id}' is neither a run id (such as 3) nor a folder holding an adapter")
    from training import registry
    run = registry.get_run(ws, run_id)
    if not (run.adapter_dir / "adapter_config.json").is_file():
        raise TuneloopError(f"run {run.label} has no adapter yet (status: {run.status}); rate it once it has finished")
    return RunModels(base_model=run.base_model, adapter=str(run.adapter_dir), run_id=str(run.id))


# -- arms -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArmRequest:
    """An arm as the admin asks for it (the tab's form, the CLI's ``--arm``), before ``resolve_arms`` draws
    the prompted arm's examples and finds a run's adapter.

    ``run``: a run id or adapter folder (kind run); ``examples``, ``system_prompt``, ``seed``: the prompted
    arm's k examples from the train split, its system prompt, the seed that draws the examples; ``url``,
    ``model``, ``api_key_env``: the endpoint's base URL (``http://host:8000/v1``), model name and the name of
    the environment variable holding its API key (none: no key is sent).
    """
    kind: str
    run: str | None = None
    examples: int = 0
    system_prompt: str = ""
    seed: int = 0
    url: str = ""
    model: str = ""
    api_key_env: str = ""


def parse_arm(text: str, *, system_prompt: str = "", seed: int = 0, api_key_env: str = "") -> ArmRequest:
    """``base`` | ``prompted:K`` | ``run:N`` (or ``run:FOLDER``) | ``endpoint:URL#MODEL``, as the CLI takes them."""
    kind, _, rest = text.strip().partition(":")
    if kind == "base" and not rest:
        return ArmRequest("base")
    if kind == "prompted" and rest.strip().isdigit():
        return ArmRequest("prompted", examples=int(rest), system_prompt=system_prompt, seed=seed)
    if kind == "run" and rest.strip():
        return ArmRequest("run", run=rest.strip())
    if kind == "endpoint" and "#" in rest:
        url, _, model = rest.rpartition("#")
        if url.strip() and model.strip():
            return ArmRequest("endpoint", url=url.strip(), model=model.strip(), api_key_env=api_key_env)
    raise TuneloopError(f"'{text}' is not an arm; give base, prompted:K (K examples from the train split), run:N "
                        f"(a run id or adapter folder) or endpoint:URL#MODEL "
                        f"(e.g. endpoint:http://127.0.0.1:8000/v1#run-3)")


def resolve_arms(ws: Workspace, requests: Iterable[ArmRequest], *, items: list[PromptItem] = (),
                 version: int | str | None = None, base_model: str | None = None) -> tuple[str, list[Arm]]:
    """(the base model every local arm answers with, the arms). The runs' adapters are found and must share
    one base (``base_model``, when given, must be it; without runs it is the base, default 'default'); the
    prompted arm's examples are drawn from ``version``'s train split, never one of ``items``."""
    requests = list(requests)
    if len(requests) < 2:
        raise TuneloopError("an evaluation compares at least two arms (e.g. base and a run)")
    runs = [(r, resolve_adapter(ws, r.run)) for r in requests if r.kind == "run"]
    bases = {m.base_model for _, m in runs}
    if len(bases) > 1:
        raise TuneloopError(f"the runs are on different base models ({', '.join(sorted(bases))}); one evaluation "
                            f"answers from one base model, so rate runs of one base together")
    base = next(iter(bases)) if bases else (base_model or "default")
    if base_model and bases and base_model != base:
        raise TuneloopError(f"the runs were trained on {base}, not on {base_model}")
    arms: list[Arm] = []
    for request in requests:
        if request.kind == "base":
            arms.append(Arm("base", "base"))
        elif request.kind == "run":
            arms.append(run_arm(dict(runs)[request]))
        elif request.kind == "prompted":
            arms.append(prompted_arm(ws, request, version=version, exclude={i.prompt_id for i in items}))
        elif request.kind == "endpoint":
            arms.append(Arm(f"endpoint {request.model}", "endpoint",
                            settings={"url": request.url.rstrip("/"), "model": request.model,
                                      "api_key_env": request.api_key_env.strip()}))
        else:
            raise TuneloopError(f"'{request.kind}' is not a kind of arm; choose one of {', '.join(ARM_KINDS)}")
    names = [a.name for a in arms]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TuneloopError(f"the arm {', '.join(twice)} is asked for twice; each arm answers once")
    return base, arms


def run_arm(models: RunModels) -> Arm:
    """A run's arm: named by its registry id (else by its folder), answering with its adapter."""
    name = f"run {models.run_id}" if models.run_id else f"adapter {Path(models.adapter).parent.name}"
    return Arm(name, "run", run_id=int(models.run_id) if models.run_id else None, settings={"adapter": models.adapter})


def prompted_arm(ws: Workspace, request: ArmRequest, *, version: int | str | None,
                 exclude: set[str] = frozenset()) -> Arm:
    """The base with a prompt: the system prompt and ``request.examples`` conversations drawn (by its seed) from
    ``version``'s train split, none of them in ``exclude``; the examples are stored in the arm's settings."""
    from curation.data.versions import get_version, load_records
    if version is None:
        raise TuneloopError("the prompted base draws its examples from a version's train split; choose the version")
    if request.examples < 0:
        raise TuneloopError(f"the prompted base needs 0 or more examples (got {request.examples})")
    chosen = get_version(ws, version)
    pool = [(r.id, example_turns(r.messages)) for r in load_records(ws, chosen.id)
            if r.meta.get("split") == "train" and r.id not in exclude]
    pool = [(rid, turns) for rid, turns in pool if turns]
    if len(pool) < request.examples:
        raise TuneloopError(f"{chosen.name} has {len(pool)} train conversation(s) that can serve as examples (a user "
                            f"turn answered by the assistant, not a prompt being rated); ask for at most {len(pool)}")
    drawn = random.Random(request.seed).sample(sorted(pool, key=lambda p: p[0]), request.examples)
    if not request.system_prompt.strip() and not drawn:
        raise TuneloopError("the prompted base needs a system prompt or at least one example")
    return Arm(f"prompted base ({request.examples} examples)", "prompted",
               settings={"system_prompt": request.system_prompt.strip(), "version": chosen.id, "seed": request.seed,
                         "examples": [{"id": rid, "messages": turns} for rid, turns in drawn]})


def example_turns(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """A conversation as an example for the prompted base: its user and assistant turns up to its last
    assistant answer (none when no user turn is answered)."""
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    last = max((i for i, m in enumerate(turns) if m["role"] == "assistant"), default=None)
    if last is None or not any(m["role"] == "user" for m in turns[:last]):
        return []
    return turns[: last + 1]


def arm_conversation(arm: Arm, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """What the arm is sent for a prompt: the prompt itself, or for the prompted base its system prompt (else
    the prompt's own), the examples as earlier turns, then the prompt's turns."""
    if arm.kind != "prompted":
        return messages
    own = next((m["content"] for m in messages if m["role"] == "system"), "")
    system = arm.settings.get("system_prompt") or own
    out = [{"role": "system", "content": system}] if system else []
    for example in arm.settings.get("examples", []):
        out += example["messages"]
    return out + [m for m in messages if m["role"] != "system"]


def run_arm_conversations(model: WarmBase, arm: Arm, conversations: list[list[dict[str, str]]]) -> list:
    """What a run's arm is sent for each prompt: the prompt under the run's system-prompt choice, as it trained
    (``training.data.run_conversations``, with the config kept beside its adapter)."""
    from training.data import adapter_run_config, run_conversations
    return run_conversations(conversations, adapter_run_config(arm.settings["adapter"]), model.chat_tokenizer())


# -- generation with the cache ----------------------------------------------------------------

def cache_key(model: WarmBase, settings: DecodingSettings, messages: list[dict[str, str]], *,
              adapter_identity: str | None, adapter: str | None = None) -> str:
    """Base responses (``adapter_identity`` None) do not depend on the adapter: every run of a base shares them.
    ``adapter`` (its name in ``model``) keys by the engine that answers with it (``WarmBase.identity_for``)."""
    parts = [model.identity_for([adapter]), settings.to_dict(), messages, adapter_identity or "base"]
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def endpoint_cache_key(arm: Arm, settings: DecodingSettings, messages: list[dict[str, str]]) -> str:
    """An endpoint's answers are keyed by its URL and model (not its key), the settings and the conversation."""
    parts = ["endpoint", arm.settings["url"], arm.settings["model"], settings.to_dict(), messages]
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def endpoint_answer(arm: Arm, messages: list[dict[str, str]], settings: DecodingSettings) -> str:
    """One answer from an OpenAI-compatible endpoint (``POST {url}/chat/completions``), greedy unless the
    settings sample; the API key, when the arm names its environment variable, is read from there now."""
    import httpx
    url, model, key_env = arm.settings["url"], arm.settings["model"], arm.settings.get("api_key_env")
    headers = {}
    if key_env:
        key = os.environ.get(key_env)
        if not key:
            raise TuneloopError(f"the API key of {url} is read from the environment variable {key_env}, which is not "
                                f"set where Tuneloop runs; set it and start again (the key is never stored)")
        headers["Authorization"] = f"Bearer {key}"
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": settings.max_new_tokens,
                            "temperature": settings.temperature if settings.do_sample else 0.0,
                            "seed": settings.seed}
    if settings.do_sample:
        body["top_p"] = settings.top_p
    target = url if url.endswith("/chat/completions") else f"{url}/chat/completions"
    try:
        reply = httpx.post(target, json=body, headers=headers, timeout=ENDPOINT_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise TuneloopError(f"the endpoint {target} did not answer ({type(exc).__name__}: {exc}); check the URL "
                            f"(it ends in /v1) and that the server is running") from None
    try:
        payload = reply.json()
    except ValueError:
        payload = {}
    if reply.status_code != 200:
        said = (payload.get("error") or {}).get("message") if isinstance(payload, dict) else None
        raise TuneloopError(f"the endpoint {target} refused the request with HTTP {reply.status_code}"
                            + (f": {said}" if said else ""))
    try:
        return str(payload["choices"][0]["message"]["content"] or "").strip()
    except (KeyError, IndexError, TypeError):
        raise TuneloopError(f"the endpoint {target} answered without choices[0].message.content; is it "
                            f"OpenAI-compatible?") from None


def generate_answers(ws: Workspace, items: list[PromptItem], arms: list[Arm], *, base_model: str,
                     settings: DecodingSettings | None = None, batch_size: int = 8, load_in_4bit: bool = False,
                     progress: Progress | None = None,
                     cancel: threading.Event | None = None) -> dict[str, list[str]]:
    """Every arm's answer to every prompt ({arm name: answers in the prompts' order}), from the cache where
    possible: the local arms (base, prompted, runs) from the warm ``base_model``, endpoints over HTTP.

    Raises ``GenerationCancelled`` when ``cancel`` is set; the batches done so far stay cached.
    """
    settings = (settings or DecodingSettings()).validate()
    if batch_size < 1:
        raise TuneloopError(f"batch size must be at least 1 (got {batch_size})")
    sent = {(n, arm.name): arm_conversation(arm, item.messages) for arm in arms for n, item in enumerate(items)}
    keys = {(n, arm.name): endpoint_cache_key(arm, settings, sent[(n, arm.name)])
            for arm in arms if arm.kind == "endpoint" for n in range(len(items))}
    found: dict[str, str] = {}
    total, done = len(arms) * len(items), 0

    def todo(arm: Arm) -> list[int]:
        return [n for n in range(len(items)) if keys[(n, arm.name)] not in found]

    def stored(rows: list[tuple[str, str]], arm: Arm) -> None:
        nonlocal done
        with ws.transaction() as db:
            db.executemany("insert or replace into generation_cache (key, response) values (?, ?)", rows)
        found.update(rows)
        done += len(rows)
        if progress:
            progress(done, total, f"{done} of {total} responses ({arm.name})")

    def stop_if_asked() -> None:
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled(f"generation stopped after {done} of {total} responses; they are kept, "
                                      f"and a new start continues from there")

    local = [a for a in arms if a.kind != "endpoint"]
    if progress and local:
        progress(0, total, f"loading the model {base_model} (once per process)")
    # The warm model is held for the local arms only: an endpoint may be this process's own (the Serve panel).
    with (default_pool().hold(ws, base_model, load_in_4bit=load_in_4bit) if local
          else contextlib.nullcontext()) as model:
        for arm in (a for a in local if a.kind == "run"):      # a run answers as it was trained
            sent.update(zip([(n, arm.name) for n in range(len(items))],
                            run_arm_conversations(model, arm, [sent[(n, arm.name)] for n in range(len(items))])))
        fingerprints = {a.name: adapter_fingerprint(a.settings["adapter"]) for a in local if a.kind == "run"}
        names = {a.name: model.add_adapter(a.settings["adapter"]) for a in local if a.kind == "run"}
        keys.update({(n, arm.name): cache_key(model, settings, sent[(n, arm.name)],
                                              adapter_identity=fingerprints.get(arm.name), adapter=names.get(arm.name))
                     for arm in local for n in range(len(items))})
        found.update(_cached(ws, list(keys.values())))
        done = sum(key in found for key in keys.values())
        if progress:
            progress(done, total, f"{done} of {total} responses cached")
        for arm in local:
            missing = todo(arm)
            if not missing:
                continue
            adapter = names.get(arm.name)
            lengths = model.prompt_lengths([sent[(n, arm.name)] for n in missing])
            ordered = [n for _, n in sorted(zip(lengths, missing))]
            for start in range(0, len(ordered), batch_size):
                stop_if_asked()
                batch = ordered[start:start + batch_size]
                replies = model.answer([sent[(n, arm.name)] for n in batch], adapter=adapter, settings=settings)
                for n in batch:         # keyed by the engine that answered (a failed GGUF conversion: transformers)
                    keys[(n, arm.name)] = cache_key(model, settings, sent[(n, arm.name)],
                                                    adapter_identity=fingerprints.get(arm.name), adapter=adapter)
                stored([(keys[(n, arm.name)], reply) for n, reply in zip(batch, replies)], arm)
    for arm in arms:
        if arm.kind == "endpoint":
            for n in todo(arm):
                stop_if_asked()
                stored([(keys[(n, arm.name)], endpoint_answer(arm, sent[(n, arm.name)], settings))], arm)
    return {arm.name: [found[keys[(n, arm.name)]] for n in range(len(items))] for arm in arms}


def generate_pairs(ws: Workspace, items: list[PromptItem], *, base_model: str, adapter: str | Path,
                   settings: DecodingSettings | None = None, batch_size: int = 8, load_in_4bit: bool = False,
                   progress: Progress | None = None, cancel: threading.Event | None = None) -> list[tuple[str, str]]:
    """(base response, fine-tuned response) for every prompt: ``generate_answers`` for the base and one adapter."""
    arms = [Arm("base", "base"), Arm("fine-tuned", "run", settings={"adapter": str(adapter)})]
    answers = generate_answers(ws, items, arms, base_model=base_model, settings=settings, batch_size=batch_size,
                               load_in_4bit=load_in_4bit, progress=progress, cancel=cancel)
    return list(zip(answers["base"], answers["fine-tuned"]))


def _cached(ws: Workspace, keys: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        rows = ws.db.execute(f"select key, response from generation_cache where key in ({','.join('?' * len(chunk))})",
                             chunk).fetchall()
        found.update((r[0], r[1]) for r in rows)
    return found


# -- evaluations ------------------------------------------------------------------------------

def purpose_of(settings: dict[str, Any]) -> str | None:
    """An evaluation's purpose (measure | improve) from its stored settings; None for one made before purposes."""
    return settings.get("purpose")


def prepare_evaluation(ws: Workspace, items: list[PromptItem], *, arms: list[Arm] | None = None,
                       base_model: str | None = None, models: RunModels | None = None, name: str | None = None,
                       purpose: str = "measure", prompt_source: str = "test", dataset_version: int | None = None,
                       overlap: int = 1, guidelines: str = "", settings: DecodingSettings | None = None,
                       batch_size: int = 8, load_in_4bit: bool = False, progress: Progress | None = None,
                       cancel: threading.Event | None = None, created_by: str | None = None,
                       pairs_per_prompt: int | None = None, gold: list[GoldItem] = (),
                       checks: RaterChecks | None = None) -> int:
    """Generate every arm's answer to every prompt, then create the evaluation; returns its id.
    ``pairs_per_prompt``, ``gold`` and ``checks`` go to ``create_evaluation`` as they are.

    ``arms`` and their ``base_model`` come from ``resolve_arms``; ``models`` alone is the two-arm shortcut
    (the base against one run). The purpose and where the prompts came from are stored in the evaluation's
    settings beside the decoding settings (``purpose_of`` reads it back).
    """
    if not items:
        raise TuneloopError("there are no prompts to rate")
    check_purpose(purpose, prompt_source)
    if arms is None:
        if models is None:
            raise TuneloopError("name the arms to compare (or the run to compare with its base)")
        base_model, arms = models.base_model, [Arm("base", "base"), run_arm(models)]
    settings = (settings or DecodingSettings()).validate()
    answers = generate_answers(ws, items, arms, base_model=base_model or "default", settings=settings,
                               batch_size=batch_size, load_in_4bit=load_in_4bit, progress=progress, cancel=cancel)
    eval_items = [EvalItem(prompt_id=p.prompt_id, messages=p.messages, responses={a.name: answers[a.name][n]
                                                                                  for a in arms},
                           label=p.label, split=p.split) for n, p in enumerate(items)]
    from training.models import resolve_base_model
    local = any(a.kind != "endpoint" for a in arms)
    shown_base = resolve_base_model(base_model or "default", ws).name if local else arms[0].settings["model"]
    # the base as named (a folder by its full path), so answering more prompts later needs no --base
    answered_with = {"base_model": stored_base_name(base_model or "default")} if local else {}
    return create_evaluation(ws, name or " vs ".join(a.name for a in arms), eval_items, arms=arms,
                             base_model=shown_base, dataset_version=dataset_version, overlap=overlap,
                             guidelines=guidelines, created_by=created_by, pairs_per_prompt=pairs_per_prompt,
                             gold=gold, checks=checks,
                             settings={**settings.to_dict(), "purpose": purpose, "prompt_source": prompt_source,
                                       **answered_with})


def stored_base_name(name: str) -> str:
    """A base model's name as an evaluation stores it: a folder or .gguf file by its full path, else as given."""
    from training.models import classify_base_model
    kind, text = classify_base_model(name)
    return str(Path(text).expanduser().resolve()) if kind in ("folder", "gguf") else text
