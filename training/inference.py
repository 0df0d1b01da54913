"""A warm base model with named adapters: answer or stream a batch of conversations with adapter X or none.

Rating generation, the playground, automatic metrics and regression suites all answer through one
``WarmBase`` per base model, taken from one process-wide pool (``warm_base`` / ``default_pool``), so
memory holds one copy of the base weights however many of them are in use. Adapters are loaded beside
the base under a name derived from their content (``adapter_fingerprint``); the few most recently used
stay loaded. Training answers with its own, already loaded PeftModel through ``WarmBase.wrap``, so every
answer in Tuneloop comes from the same loop: the chat template, left padding, the same stop tokens and
the decoding options of ``DecodingSettings``.

Example::

    warm = warm_base(ws, "default")
    run3 = warm.add_adapter("workspace/runs/3/adapter")
    base, tuned = (warm.answer(conversations, adapter=a, settings=DecodingSettings(max_new_tokens=64))
                   for a in (None, run3))
    for event in warm.stream([question, question], adapters=[None, run3], settings=DecodingSettings()):
        print(event.row, event.text, end="")
"""
from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

from core.errors import TuneloopError
from core.options import Options, option
from core.workspace import Workspace

BASE_ADAPTER = "__base__"       # peft's name for "no adapter" in a mixed batch
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class DecodingSettings(Options):
    """How answers are decoded, whoever asks: rating generation, the playground, metrics and suites.

    Greedy by default, so two answers to one prompt differ only by the adapter. An options class: the same
    fields give the tabs' decoding forms, the CLIs' flags and the settings stored beside an evaluation.
    """
    what: ClassVar[str] = "decoding settings"
    max_new_tokens: int = option(200, "the longest answer, in tokens", min=1, max=8192)
    do_sample: bool = option(False, "sample instead of decoding greedily (off: the same answer every time)",
                             flag="sample", label="Sample")
    temperature: float = option(0.7, "sampling only: higher gives more varied answers", min=0.01, max=5.0)
    top_p: float = option(0.95, "sampling only: sample from the smallest set of tokens this likely", min=0.01,
                          max=1.0, label="Top-p")
    repetition_penalty: float = option(1.1, "above 1.0 discourages repeating the same words (1.0: none)",
                                       min=0.01, max=10.0)
    seed: int = option(0, "the same seed on both sides: sampled answers differ only by the adapter")

    @classmethod
    def from_knobs(cls, *, temperature: float = 0.0, top_p: float | None = None, max_new_tokens: int | None = None,
                   repetition_penalty: float | None = None, seed: int | None = None) -> "DecodingSettings":
        """From a temperature knob on which 0 means greedy (the playground's sliders, its CLI)."""
        defaults = cls()
        sample = float(temperature) > 0
        return cls.from_dict({
            "max_new_tokens": defaults.max_new_tokens if max_new_tokens is None else max_new_tokens,
            "do_sample": sample, "temperature": float(temperature) if sample else defaults.temperature,
            "top_p": defaults.top_p if top_p is None else top_p, "seed": defaults.seed if seed is None else seed,
            "repetition_penalty": defaults.repetition_penalty if repetition_penalty is None else repetition_penalty})

    @property
    def knob_temperature(self) -> float:
        """The temperature as a knob shows it: 0 when greedy."""
        return self.temperature if self.do_sample else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The settings as stored beside an evaluation and in cache keys (no sampling knobs when greedy)."""
        d = super().to_dict()
        if not self.do_sample:
            d.pop("temperature")
            d.pop("top_p")
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "DecodingSettings":
        """Settings from ``to_dict``, a YAML mapping or a form, validated; names an unknown or mistyped key."""
        return super().from_dict(data).validate()

    def generate_kwargs(self) -> dict[str, Any]:
        """The arguments ``model.generate`` gets for these settings."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample,
                                  "repetition_penalty": self.repetition_penalty}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


def adapter_fingerprint(folder: str | Path) -> str:
    """What an adapter is, by content: changes when it is retrained, not when its folder is copied or moved."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise TuneloopError(f"{folder} is not an adapter folder (it has no adapter_config.json)")
    h = hashlib.sha256()
    for name in ADAPTER_FILES:
        p = folder / name
        if p.is_file():
            with p.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:24]


@dataclass
class RowStats:
    """How one row's answer came out: tokens, time to the first token, tokens per second after it."""
    tokens: int = 0
    first_token_s: float | None = None
    tokens_per_s: float | None = None
    finished: bool = False          # ended by itself (a stop token), not by the token limit or a stop

    def describe(self) -> str:
        if not self.tokens:
            return "no tokens"
        speed = f", {self.tokens_per_s:.1f} tokens/s" if self.tokens_per_s else ""
        tokens = "1 token" if self.tokens == 1 else f"{self.tokens} tokens"
        return f"{tokens}, first after {self.first_token_s:.2f} s{speed}"


@dataclass(frozen=True)
class TokenEvent:
    """A new piece of one row's answer (possibly empty), with every row's figures so far."""
    row: int
    text: str
    ended: bool                     # the row's answer is complete
    stats: tuple[RowStats, ...] = field(default_factory=tuple)


class WarmBase:
    """One base model in memory with named adapters beside it, answering with any one of them or none.

    ``add_adapter`` only registers a folder; the model and the adapters load on first use, under the
    model's lock, which also makes every answer and stream take its turn on the model.
    """

    def __init__(self, resolved, *, load_in_4bit: bool = False, max_adapters: int = 4):
        self.resolved = resolved
        self.name = resolved.name if resolved is not None else "the model"
        self.load_in_4bit = load_in_4bit
        self.max_adapters = max_adapters
        # What the generation cache keys answers by: the weights' folder and revision, and the precision.
        self.identity = ({"base": resolved.path, "revision": resolved.revision, "4bit": load_in_4bit}
                         if resolved is not None else {"base": self.name})
        self.model = None
        self.tokenizer = None
        self._folders: dict[str, str] = {}                   # adapter name -> folder, for every adapter added
        self._loaded: OrderedDict[str, None] = OrderedDict()  # names loaded on the model, least recent first
        self._lock = threading.Lock()
        self._users = 0
        self._users_lock = threading.Lock()

    @classmethod
    def wrap(cls, model, tokenizer, *, name: str = "the model") -> "WarmBase":
        """An already loaded (model, tokenizer), such as training's PeftModel, answering through this loop.

        Its adapters keep their names (``active_adapter`` is the one training trains); none can be added.
        """
        warm = cls(None, max_adapters=0)
        warm.name = warm.identity["base"] = name
        warm.model, warm.tokenizer = model, tokenizer
        warm._loaded.update((n, None) for n in getattr(model, "peft_config", {}))
        return warm

    @property
    def loaded(self) -> bool:
        return self.model is not None

    @property
    def active_adapter(self) -> str | None:
        """The adapter a wrapped PeftModel has on (None for a plain model)."""
        return getattr(self.model, "active_adapter", None) if self._loaded else None

    @property
    def in_use(self) -> bool:
        """Someone holds this model or it is answering: the pool must not drop it."""
        return self._users > 0 or self._lock.locked()

    @contextlib.contextmanager
    def held(self) -> Iterator["WarmBase"]:
        """Mark the model as in use for a longer job (a batch of batches, a queue of questions)."""
        self._use()
        try:
            yield self
        finally:
            self._release()

    def _use(self) -> None:
        with self._users_lock:
            self._users += 1

    def _release(self) -> None:
        with self._users_lock:
            self._users -= 1

    def add_adapter(self, folder: str | Path) -> str:
        """Register the adapter in ``folder``; returns the name to answer with. It loads on first use."""
        if self.resolved is None:
            raise TuneloopError(f"{self.name} answers with the adapters it was given; it cannot load {folder}")
        name = "a" + adapter_fingerprint(folder)
        self._folders[name] = str(Path(folder).resolve())
        return name

    def unload(self) -> bool:
        """Free the weights when nobody is using them (they load again on the next use); True when freed."""
        if self.resolved is None or self._users or not self._lock.acquire(blocking=False):
            return False
        try:
            self.model = self.tokenizer = None
            self._loaded.clear()
        finally:
            self._lock.release()
        return True

    @contextlib.contextmanager
    def using(self, adapter: str | None) -> Iterator[tuple[Any, Any]]:
        """(model, tokenizer) with ``adapter`` on, or every adapter off for None, for the caller alone.

        For scoring code such as perplexity; the model is in eval mode and goes back to training mode after.
        """
        with self._lock, self.held():
            model, tokenizer = self._ready([adapter])
            was_training = model.training
            model.eval()
            try:
                with self._switched(model, adapter):
                    yield model, tokenizer
            finally:
                if was_training:
                    model.train()

    def answer(self, conversations: Sequence[Conversation], *, adapter: str | None = None,
               settings: DecodingSettings | None = None, batch_size: int | None = None,
               prefixes: Sequence[str] | None = None) -> list[str]:
        """The assistant's reply to each conversation (special tokens dropped, stripped), in order.

        ``batch_size`` conversations go through ``generate`` at a time (all at once when None). ``prefixes``
        (one per conversation) are text the assistant's turn already starts with: the reply continues it and
        holds only what comes after it.
        """
        import torch
        settings = (settings or DecodingSettings()).validate()
        conversations = list(conversations)
        step = batch_size or max(len(conversations), 1)
        replies: list[str] = []
        with self.using(adapter) as (model, tokenizer):
            for start in range(0, len(conversations), step):
                batch = self._encode(tokenizer, conversations[start:start + step], model.device,
                                     prefixes[start:start + step] if prefixes is not None else None)
                torch.manual_seed(settings.seed)
                with torch.inference_mode():
                    out = model.generate(**batch, **settings.generate_kwargs(), **self._stops(model, tokenizer))
                width = batch["input_ids"].shape[1]
                replies += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
        return replies

    def prompt_lengths(self, conversations: Sequence[Conversation]) -> list[int]:
        """Tokens of each conversation's prompt (chat template with the generation prompt)."""
        tokenizer = self.load()[1]
        return [len(tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True)) for c in conversations]

    def load(self):
        """(model, tokenizer), loading them on first use."""
        with self._lock:
            return self._ready([])

    def stream(self, conversations: Sequence[Conversation], *, adapters: Sequence[str | None],
               settings: DecodingSettings | None = None,
               cancel: threading.Event | None = None) -> Iterator[TokenEvent]:
        """Every row's answer as it grows, all rows in ONE ``generate`` call, row i with ``adapters[i]``.

        Setting ``cancel`` (or closing the iterator) stops the generation; rows end with ``ended`` events.
        """
        settings = (settings or DecodingSettings()).validate()
        conversations, adapters = list(conversations), list(adapters)
        if len(adapters) != len(conversations):
            raise TuneloopError(f"{len(conversations)} conversations but {len(adapters)} adapters; name one "
                                f"adapter (or None) per conversation")
        cancel = cancel or threading.Event()
        events: queue.Queue = queue.Queue()
        failure: list[BaseException] = []
        # The lock is taken here and handed to the generation thread, which releases it when it is done.
        self._lock.acquire()
        try:
            model, tokenizer = self._ready(adapters)
            model.eval()
            batch = self._encode(tokenizer, conversations, model.device)
            self._check_fits(model, batch, settings)
            streamers = _row_streamers(tokenizer, len(conversations), events,
                                       set(self._stops(model, tokenizer)["eos_token_id"]))
            kwargs = {**settings.generate_kwargs(), **self._stops(model, tokenizer)}
            if self._loaded:
                kwargs["adapter_names"] = [a or BASE_ADAPTER for a in adapters]
            thread = threading.Thread(target=self._generate_streaming, name="warm-base-stream", daemon=True,
                                      args=(model, batch, kwargs, settings.seed, streamers, cancel, events, failure))
            thread.start()
        except BaseException:
            self._lock.release()
            raise
        ended = [False] * len(conversations)
        try:
            while not all(ended) and not failure:
                row, text, stream_end = events.get()
                if row is None:
                    break
                ended[row] = ended[row] or stream_end
                yield TokenEvent(row, text, stream_end, tuple(replace(s.stats) for s in streamers))
        except BaseException:
            cancel.set()            # the consumer went away (or failed): the model must not go on generating
            raise
        finally:
            thread.join()
        if failure:
            exc = failure[0]
            if isinstance(exc, TuneloopError):
                raise exc
            raise TuneloopError(f"{self.name} could not answer: {type(exc).__name__}: {exc}") from exc

    def _generate_streaming(self, model, batch, kwargs, seed, streamers, cancel, events, failure) -> None:
        import torch
        from transformers import StoppingCriteriaList
        try:
            torch.manual_seed(seed)
            with torch.inference_mode():
                model.generate(**batch, **kwargs, streamer=_batch_streamer(streamers),
                               stopping_criteria=StoppingCriteriaList([_stop_when_set(cancel)]))
        except BaseException as exc:   # reported to the consumer, which raises it in its own thread
            failure.append(exc)
            events.put((None, "", True))
        finally:
            self._lock.release()

    # -- under the lock -------------------------------------------------------------------------

    def _ready(self, adapters: Sequence[str | None]):
        """Load the model and the named adapters (holding the lock); returns (model, tokenizer)."""
        if self.model is None:
            from training.models import load_model_and_tokenizer
            self.model, self.tokenizer = load_model_and_tokenizer(self.resolved, load_in_4bit=self.load_in_4bit)
            self.model.eval()
        wanted = [a for a in adapters if a is not None]
        for name in wanted:
            if name not in self._loaded:
                self._load_adapter(name, keep=wanted)
            self._loaded.move_to_end(name)
        return self.model, self.tokenizer

    def _load_adapter(self, name: str, keep: list[str]) -> None:
        folder = self._folders.get(name)
        if folder is None:
            raise TuneloopError(f"{self.name} has no adapter '{name}'; add its folder with add_adapter first")
        if "a" + adapter_fingerprint(folder) != name:
            raise TuneloopError(f"the adapter in {folder} was retrained since it was chosen; choose it again")
        from peft import PeftModel
        try:
            if not self._loaded:
                self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=name)
            else:
                self.model.load_adapter(folder, adapter_name=name)
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise TuneloopError(f"the adapter in {folder} does not fit {self.name}: {exc}") from exc
        self.model.eval()
        self._loaded[name] = None
        while len(self._loaded) > max(self.max_adapters, len(keep)):
            oldest = next(n for n in self._loaded if n not in keep)
            self.model.delete_adapter(oldest)
            del self._loaded[oldest]

    def _switched(self, model, adapter: str | None):
        if not self._loaded:
            return contextlib.nullcontext()
        if adapter is None:
            return model.disable_adapter()
        if model.active_adapter != adapter:
            model.set_adapter(adapter)
        return contextlib.nullcontext()

    @staticmethod
    def _encode(tokenizer, conversations: Sequence[Conversation], device, prefixes: Sequence[str] | None = None):
        """The chat-templated batch, padded on the left so every row continues from the right edge (after its
        assistant prefix, when given)."""
        texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        if prefixes is not None:
            texts = [text + prefix for text, prefix in zip(texts, prefixes)]
        side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        try:
            return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        finally:
            tokenizer.padding_side = side

    @staticmethod
    def _stops(model, tokenizer) -> dict[str, Any]:
        """The model's end-of-sequence tokens and the tokenizer's end of turn: an answer ends at any of them."""
        ids = _as_list(model.generation_config.eos_token_id)
        ids += [i for i in _as_list(tokenizer.eos_token_id) if i not in ids]
        return {"eos_token_id": ids, "pad_token_id": tokenizer.pad_token_id}

    def _check_fits(self, model, batch, settings: DecodingSettings) -> None:
        limit = getattr(model.config, "max_position_embeddings", None)
        length = batch["input_ids"].shape[1]
        if limit and length + settings.max_new_tokens > limit:
            raise TuneloopError(f"the conversation ({length} tokens) plus {settings.max_new_tokens} new tokens is "
                                f"longer than {self.name} can read ({limit}); start a new conversation or lower "
                                f"the max new tokens")


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _row_streamers(tokenizer, rows: int, events: queue.Queue, stop_ids: set[int]) -> list:
    """One ``TextIteratorStreamer`` per row of the batch: its text goes, tagged with the row, into ``events``."""
    from transformers import TextIteratorStreamer

    class RowStreamer(TextIteratorStreamer):
        def __init__(self, row: int):
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.row = row
            self.stats = RowStats()
            self.started = time.perf_counter()
            self.first_at = 0.0

        def put(self, value):
            if not self.next_tokens_are_prompt:
                if self.stats.finished:
                    return          # this row is done; generate pads it until the other rows finish
                if int(value.reshape(-1)[0]) in stop_ids:
                    self.stats.finished = True
                    return
                now = time.perf_counter()
                self.stats.tokens += 1
                if self.stats.first_token_s is None:
                    self.stats.first_token_s, self.first_at = now - self.started, now
                elif now > self.first_at:
                    self.stats.tokens_per_s = (self.stats.tokens - 1) / (now - self.first_at)
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False):
            events.put((self.row, text, stream_end))

    return [RowStreamer(row) for row in range(rows)]


def _batch_streamer(streamers):
    from transformers.generation.streamers import BaseStreamer

    class BatchStreamer(BaseStreamer):
        """Hands each row of the batch to its row's streamer."""

        def put(self, value):
            for i, streamer in enumerate(streamers):
                streamer.put(value[i:i + 1])

        def end(self):
            for streamer in streamers:
                streamer.end()

    return BatchStreamer()


def _stop_when_set(cancel: threading.Event):
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet()


# -- the process-wide pool ------------------------------------------------------------------------

class BasePool:
    """The warm base models, at most ``max_models`` at once; an idle one makes room for another base model."""

    def __init__(self, *, max_models: int = 1, max_adapters: int = 4):
        self.max_models = max_models
        self.max_adapters = max_adapters
        self._models: OrderedDict[tuple[str, str, bool], WarmBase] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ws: Workspace | None, base_model: str, *, load_in_4bit: bool = False) -> WarmBase:
        """The warm model for ``base_model`` (not loaded until it first answers)."""
        return self._take(ws, base_model, load_in_4bit, hold=False)

    @contextlib.contextmanager
    def hold(self, ws: Workspace | None, base_model: str, *, load_in_4bit: bool = False) -> Iterator[WarmBase]:
        """The warm model for ``base_model``, kept from being dropped until the block ends (taken under the
        pool's lock, so no other base model can push it out before the caller holds it)."""
        model = self._take(ws, base_model, load_in_4bit, hold=True)
        try:
            yield model
        finally:
            model._release()

    def _take(self, ws, base_model: str, load_in_4bit: bool, *, hold: bool) -> WarmBase:
        from training.models import resolve_base_model
        resolved = resolve_base_model(base_model, ws)
        key = (resolved.path, resolved.revision, bool(load_in_4bit))
        with self._lock:
            model = self._models.get(key)
            if model is None:
                for other in list(self._models):
                    if len(self._models) < self.max_models:
                        break
                    if self._models[other].unload():
                        del self._models[other]
                if len(self._models) >= self.max_models:
                    busy = ", ".join(m.name for m in self._models.values())
                    raise TuneloopError(f"{busy} is busy answering (rating generation or the playground); try "
                                        f"{resolved.name} again when those answers are done")
                model = self._models[key] = WarmBase(resolved, load_in_4bit=load_in_4bit,
                                                     max_adapters=self.max_adapters)
            self._models.move_to_end(key)
            if hold:
                model._use()
            return model

    def models(self) -> list[WarmBase]:
        """The warm models now in the pool, least recently used first."""
        with self._lock:
            return list(self._models.values())


_default_pool = BasePool()


def default_pool() -> BasePool:
    """The pool the whole process shares: rating generation, the playground, metrics, regression suites."""
    return _default_pool


def warm_base(ws: Workspace | None, base_model: str, *, load_in_4bit: bool = False) -> WarmBase:
    """The process's one warm copy of ``base_model`` (see ``BasePool.get``)."""
    return default_pool().get(ws, base_model, load_in_4bit=load_in_4bit)
