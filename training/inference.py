"""A warm base model with named adapters: answer or stream a batch of conversations with adapter X or none.

Rating generation, the playground, automatic metrics and regression suites all answer through one
``WarmBase`` per base model, taken from one process-wide pool (``warm_base`` / ``default_pool``), so
memory holds one copy of the base weights however many of them are in use. Adapters are loaded beside
the base under a name derived from their content (``adapter_fingerprint``); the few most recently used
stay loaded. Training answers with its own, already loaded PeftModel through ``WarmBase.wrap``, so every
answer in Tuneloop comes from the same loop: the chat template, left padding, the same stop tokens and
the decoding options of ``DecodingSettings``.

Two engines answer behind the same interface (``TUNELOOP_ENGINE``: auto | llama.cpp | transformers):
llama.cpp (llama-cpp-python) on the base's GGUF file with each adapter converted once to a GGUF LoRA
(``training.gguf``), one llama.cpp context per row so base and fine-tuned rows run side by side; and
transformers with fp32 weights (peft's ``adapter_names`` mixes adapters in one batch). "auto" takes
llama.cpp where it imports, no 4-bit model was asked for and the base is a GGUF file (the default model
is), else transformers; a forced llama.cpp also converts a folder or hub base (f16) once. Both engines
tokenize with the model's own tokenizer and chat template and choose each token from the logits by
transformers' rules (``choose_token``), so the same weights give the same greedy answers.

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
import ctypes
import hashlib
import logging
import os
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
ENGINES = ("auto", "llama.cpp", "transformers")
ENGINE_ENV = "TUNELOOP_ENGINE"
THREADS_ENV = "TUNELOOP_THREADS"
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


def requested_engine(engine: str | None = None) -> str:
    """The engine asked for: ``engine``, else ``$TUNELOOP_ENGINE``, else "auto"; names a misspelt one."""
    text = str(engine or os.environ.get(ENGINE_ENV) or "auto").strip().lower()
    text = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "llama_cpp": "llama.cpp", "gguf": "llama.cpp",
            "hf": "transformers", "torch": "transformers"}.get(text, text)
    if text not in ENGINES:
        raise TuneloopError(f"{ENGINE_ENV}='{engine or os.environ.get(ENGINE_ENV)}' is not an engine; choose "
                            f"auto (the fastest that gives the same answers), llama.cpp or transformers")
    return text


def import_llama_cpp():
    """llama-cpp-python, imported with its OpenMP threads told to sleep rather than spin while they wait: on
    shared cores spinning made two threads ten times slower than one (read as the library loads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import llama_cpp
    return llama_cpp


def llama_cpp_missing() -> str | None:
    """Why llama.cpp cannot answer in this process (None when llama-cpp-python imports)."""
    try:
        import_llama_cpp()
    except Exception as exc:        # a half-built wheel fails with OSError, not only ImportError
        return f"llama-cpp-python does not import here ({type(exc).__name__}: {exc})"
    return None


def choose_engine(resolved, requested: str, *, load_in_4bit: bool = False) -> tuple[str, str]:
    """(engine, why): which engine answers for ``resolved`` when ``requested`` (auto | llama.cpp | transformers)."""
    if requested == "transformers":
        return "transformers", f"{ENGINE_ENV}=transformers"
    missing = llama_cpp_missing()
    if requested == "llama.cpp":
        if load_in_4bit:
            raise TuneloopError(f"llama.cpp answers from GGUF weights, not from a 4-bit model; turn 4-bit off or "
                                f"set {ENGINE_ENV}=auto")
        if missing:
            raise TuneloopError(f"{ENGINE_ENV}=llama.cpp, but {missing}; run `make setup`, or set {ENGINE_ENV}=auto")
        return "llama.cpp", f"{ENGINE_ENV}=llama.cpp"
    if load_in_4bit:
        return "transformers", "a 4-bit model was asked for"
    if missing:
        return "transformers", missing
    from training.models import gguf_source
    if gguf_source(resolved) is None:
        return "transformers", (f"{resolved.name} is not a GGUF file; {ENGINE_ENV}=llama.cpp converts it (once, "
                                f"where llama.cpp's converter knows its tokenizer)")
    return "llama.cpp", "the fastest engine on this base"


def inference_threads() -> int | None:
    """``$TUNELOOP_THREADS``: CPU threads for answering (None: each engine's own choice)."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise TuneloopError(f"{THREADS_ENV}='{text}' must be a whole number of CPU threads, 1 or more")
    return int(text)


def choose_token(logits, seen, settings: "DecodingSettings", rng=None, *, top_k: int | None = None) -> int:
    """The next token from one row's logits by transformers' rules, for an engine that only gives logits.

    ``seen`` marks (bool per vocabulary entry) every token of the prompt and the answer so far: the repetition
    penalty divides their positive scores and multiplies their negative ones. Greedy takes the first best
    score; sampling then applies the temperature, top-k and top-p and draws with ``rng`` (numpy).
    """
    import numpy as np
    scores = np.array(logits, dtype=np.float32)
    if settings.repetition_penalty != 1.0:
        idx = np.flatnonzero(seen)
        picked = scores[idx]
        scores[idx] = np.where(picked < 0, picked * settings.repetition_penalty, picked / settings.repetition_penalty)
    if not settings.do_sample:
        return int(np.argmax(scores))
    scores /= settings.temperature
    if top_k and top_k < scores.size:
        scores[scores < np.partition(scores, -top_k)[-top_k]] = -np.inf
    order = np.argsort(scores)
    probs = np.exp(scores[order] - scores[order[-1]])
    probs /= probs.sum()
    if settings.top_p < 1.0:
        drop = np.cumsum(probs) <= 1 - settings.top_p
        drop[-1] = False
        probs[drop] = 0
        probs /= probs.sum()
    return int(order[rng.choice(probs.size, p=probs)])


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
    engine: str = "transformers"    # which engine answered (see ``choose_engine``)


class WarmBase:
    """One base model in memory with named adapters beside it, answering with any one of them or none.

    ``add_adapter`` only registers a folder; the model and the adapters load on first use, under the
    model's lock, which also makes every answer and stream take its turn on the model. ``engine`` says
    which engine answers (see ``choose_engine``; ``engine_reason`` why); in auto mode an adapter that
    llama.cpp cannot take is answered by transformers, and ``engine_for`` says so before answering.
    ``using`` and ``load`` always give the transformers model (scoring needs its logits and gradients).
    """

    def __init__(self, resolved, *, load_in_4bit: bool = False, max_adapters: int = 4, engine: str | None = None,
                 cache_dir: str | Path | None = None):
        self.resolved = resolved
        self.name = resolved.name if resolved is not None else "the model"
        self.load_in_4bit = load_in_4bit
        self.max_adapters = max_adapters
        self.requested_engine = requested_engine(engine) if resolved is not None else "transformers"
        self.engine, self.engine_reason = (choose_engine(resolved, self.requested_engine, load_in_4bit=load_in_4bit)
                                           if resolved is not None else ("transformers", "a model handed over"))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._identity = ({"base": resolved.path, "revision": resolved.revision, "4bit": load_in_4bit}
                         if resolved is not None else {"base": self.name})
        self.model = None
        self.tokenizer = None
        self.llama: LlamaCppModel | None = None
        self._gen_config = None
        self._no_llama: dict[str, str] = {}                  # adapter name -> why llama.cpp cannot take it
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
        warm.name = warm._identity["base"] = name
        warm.model, warm.tokenizer = model, tokenizer
        warm._loaded.update((n, None) for n in getattr(model, "peft_config", {}))
        return warm

    @property
    def loaded(self) -> bool:
        return self.model is not None or self.llama is not None

    def engine_for(self, adapters: Sequence[str | None]) -> str:
        """The engine that answers a request with these adapters: llama.cpp unless one of them cannot go there."""
        if self.engine != "llama.cpp" or any(a in self._no_llama for a in adapters):
            return "transformers"
        return "llama.cpp"

    @property
    def identity(self) -> dict[str, Any]:
        """What the generation cache keys the base's answers by (``identity_for`` without an adapter)."""
        return self.identity_for([None])

    def identity_for(self, adapters: Sequence[str | None]) -> dict[str, Any]:
        """What the generation cache keys answers with these adapters by: the weights' folder and revision, the
        precision, and the engine when llama.cpp answers them (its answers are cached apart; transformers' keys
        stay as they were). An adapter that failed to convert to GGUF answers with transformers, keyed so."""
        if self.engine_for(adapters) == "llama.cpp":
            return {**self._identity, "engine": "llama.cpp"}
        return self._identity

    def needs_preparing(self, adapters: Sequence[str | None]) -> bool:
        """Something must load or convert before these adapters can answer (the first use takes longer)."""
        if self.engine_for(adapters) == "transformers":
            return self.model is None
        return self.llama is None or any(a is not None and a not in self.llama.adapters for a in adapters)

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
            if self.llama is not None:
                self.llama.close()
                self.llama = None
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
        with self._lock, self.held():
            if self._ready_llama([adapter]):
                return self._answer_llama(conversations, adapter, settings, prefixes)
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
        with self._lock:
            tokenizer = self._tokenizer()
        # return_dict: transformers 5 answers tokenize=True with a BatchEncoding, whose len() is its 2 keys.
        return [len(tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True,
                                                  return_dict=True)["input_ids"]) for c in conversations]

    def chat_tokenizer(self):
        """The tokenizer with the chat template every engine renders conversations with, loaded on its own
        (without the model) when the model is not loaded yet."""
        with self._lock:
            return self._tokenizer()

    def load(self):
        """(model, tokenizer), loading them on first use."""
        with self._lock:
            return self._ready([])

    def stream(self, conversations: Sequence[Conversation], *, adapters: Sequence[str | None],
               settings: DecodingSettings | None = None, cancel: threading.Event | None = None,
               threads: int | None = None) -> Iterator[TokenEvent]:
        """Every row's answer as it grows, all rows at once, row i with ``adapters[i]``: in ONE ``generate``
        call with transformers, a context per row taking turns with llama.cpp (``TokenEvent.engine`` says).

        Setting ``cancel`` (or closing the iterator) stops the generation; rows end with ``ended`` events.
        ``threads`` sets llama.cpp's CPU threads for this request (None: the model's own).
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
            if self._ready_llama(adapters):
                engine, tokenizer = "llama.cpp", self._tokenizer()
                rows = list(zip(self._prompt_ids(tokenizer, conversations), adapters))
                streamers = _row_streamers(tokenizer, len(conversations), events, self._stop_ids())
                target, args = self._llama_streaming, (rows, settings, streamers, cancel, events, failure, threads)
            else:
                engine = "transformers"
                model, tokenizer = self._ready(adapters)
                model.eval()
                batch = self._encode(tokenizer, conversations, model.device)
                self._check_fits(model, batch, settings)
                streamers = _row_streamers(tokenizer, len(conversations), events,
                                           set(self._stops(model, tokenizer)["eos_token_id"]))
                kwargs = {**settings.generate_kwargs(), **self._stops(model, tokenizer)}
                if self._loaded:
                    kwargs["adapter_names"] = [a or BASE_ADAPTER for a in adapters]
                target, args = self._generate_streaming, (model, batch, kwargs, settings.seed, streamers, cancel,
                                                          events, failure)
            thread = threading.Thread(target=target, name="warm-base-stream", daemon=True, args=args)
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
                yield TokenEvent(row, text, stream_end, tuple(replace(s.stats) for s in streamers), engine)
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

    def _llama_streaming(self, rows, settings, streamers, cancel, events, failure, threads) -> None:
        import numpy as np
        try:
            for streamer, (prompt, _) in zip(streamers, rows):
                streamer.put(np.array(prompt))          # the prompt first, as generate hands it over (skipped)
            self.llama.generate(rows, settings, stop_ids=self._stop_ids(), cancel=cancel, top_k=self._top_k(),
                                threads=threads, on_token=lambda row, token: streamers[row].put(np.array([token])))
            for streamer in streamers:
                streamer.end()
        except BaseException as exc:   # reported to the consumer, which raises it in its own thread
            failure.append(exc)
            events.put((None, "", True))
        finally:
            self._lock.release()

    def _answer_llama(self, conversations: list[Conversation], adapter: str | None, settings: DecodingSettings,
                      prefixes: Sequence[str] | None) -> list[str]:
        tokenizer = self._tokenizer()
        rows = [(ids, adapter) for ids in self._prompt_ids(tokenizer, conversations, prefixes)]
        answers = self.llama.generate(rows, settings, stop_ids=self._stop_ids(), top_k=self._top_k())
        return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in answers]

    # -- under the lock -------------------------------------------------------------------------

    def _tokenizer(self):
        if self.tokenizer is None:
            from training.models import load_tokenizer
            self.tokenizer = load_tokenizer(self.resolved)
        return self.tokenizer

    def _generation_config(self):
        """The base's generation config (its end-of-sequence tokens, top-k), read without loading the model."""
        if self._gen_config is None:
            from transformers import GenerationConfig
            try:
                self._gen_config = GenerationConfig.from_pretrained(self.resolved.path)
            except OSError:             # a folder without generation_config.json: transformers' defaults
                self._gen_config = GenerationConfig()
        return self._gen_config

    def _stop_ids(self) -> set[int]:
        """What ``_stops`` gives transformers: the model's end-of-sequence tokens and the tokenizer's."""
        model_eos = self._generation_config().eos_token_id
        if model_eos is None:
            from transformers import AutoConfig
            model_eos = AutoConfig.from_pretrained(self.resolved.path).eos_token_id
        return set(_as_list(model_eos)) | set(_as_list(self._tokenizer().eos_token_id))

    def _top_k(self) -> int | None:
        return self._generation_config().top_k

    def _prompt_ids(self, tokenizer, conversations: Sequence[Conversation],
                    prefixes: Sequence[str] | None = None) -> list[list[int]]:
        """Each conversation's chat-templated prompt as token ids, exactly as ``_encode`` gives them (no padding)."""
        texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        if prefixes is not None:
            texts = [text + prefix for text, prefix in zip(texts, prefixes)]
        return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]

    def _ready_llama(self, adapters: Sequence[str | None]) -> bool:
        """Load the GGUF base and the adapters' GGUF LoRAs (holding the lock) when llama.cpp answers them;
        False when transformers answers (the engine, or auto mode and an adapter llama.cpp cannot take)."""
        if self.engine_for(adapters) != "llama.cpp":
            return False
        if self.llama is None:
            try:
                self.llama = LlamaCppModel(self._base_gguf(), threads=inference_threads())
            except TuneloopError as exc:
                if self.requested_engine == "llama.cpp":
                    raise
                self.engine, self.engine_reason = "transformers", str(exc)
                return False
        for name in (a for a in adapters if a is not None):
            if name in self.llama.adapters:
                continue
            try:
                self.llama.add_adapter(name, self._adapter_gguf(name))
            except TuneloopError as exc:
                if self.requested_engine == "llama.cpp":
                    raise
                self._no_llama[name] = str(exc)
                return False
            while len(self.llama.adapters) > max(self.max_adapters, len(adapters)):
                self.llama.drop_adapter(next(a for a in self.llama.adapters if a not in adapters))
        return True

    def _gguf_dir(self) -> Path:
        from training.models import model_cache_dir
        return (self.cache_dir or model_cache_dir(None)) / "gguf"

    def _base_gguf(self) -> Path:
        """The base's GGUF file: the one it came from, else an f16 conversion of its folder (made once)."""
        from training.models import gguf_source
        source = gguf_source(self.resolved)
        if source is not None:
            return source
        from training.gguf import convert_model
        target = self._gguf_dir() / f"{Path(self.resolved.path).name}-{self.resolved.revision[:12]}-f16.gguf"
        return target if target.is_file() else convert_model(self.resolved.path, target, quant="f16")

    def _adapter_gguf(self, name: str) -> Path:
        """The adapter as a GGUF LoRA against this base, converted once (named by content and base revision)."""
        folder = self._folders.get(name)
        if folder is None:
            raise TuneloopError(f"{self.name} has no adapter '{name}'; add its folder with add_adapter first")
        if "a" + adapter_fingerprint(folder) != name:
            raise TuneloopError(f"the adapter in {folder} was retrained since it was chosen; choose it again")
        target = self._gguf_dir() / f"lora-{name[1:17]}-{self.resolved.revision[:12]}.gguf"
        if target.is_file():
            return target
        from training.gguf import convert_adapter
        return convert_adapter(folder, self.resolved.path, target)

    def _ready(self, adapters: Sequence[str | None]):
        """Load the model and the named adapters (holding the lock); returns (model, tokenizer)."""
        if self.model is None:
            from training.models import load_model_and_tokenizer
            if inference_threads():
                import torch
                torch.set_num_threads(inference_threads())     # the process's torch: set once, before loading
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


# -- the llama.cpp engine -------------------------------------------------------------------------

class LlamaCppModel:
    """A GGUF base model in llama.cpp with GGUF LoRA adapters beside it: the fast CPU engine of ``WarmBase``.

    The weights load once (memory-mapped); each row answered at the same time gets a llama.cpp context of
    its own (its KV cache and its adapter), kept for the next request. Prompts are token ids from the
    model's own tokenizer; tokens are chosen by ``choose_token``.
    """
    ROWS_AT_ONCE = 4                    # contexts in use at once (each holds a KV cache of n_ctx tokens)

    def __init__(self, gguf: str | Path, *, threads: int | None = None):
        llama_cpp = import_llama_cpp()
        from llama_cpp import _internals
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)   # no load report on every start
        self._llama = llama_cpp
        self.path = Path(gguf)
        try:
            self._model = _internals.LlamaModel(path_model=str(self.path),
                                                params=llama_cpp.llama_model_default_params(), verbose=False)
        except ValueError as exc:
            raise TuneloopError(f"llama.cpp could not load {self.path} ({exc}); check it is a complete GGUF "
                                f"file") from exc
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._model.vocab)
        # The longest conversation a context holds: the model's own limit, at most 4096 tokens of KV cache.
        self.n_ctx = min(llama_cpp.llama_model_n_ctx_train(self._model.model), 4096)
        self.threads = threads or os.cpu_count() or 1
        self._adapters: dict[str, Any] = {}
        self._contexts: list[Any] = []          # idle contexts, reused
        self._contexts_lock = threading.Lock()

    def add_adapter(self, name: str, path: str | Path) -> None:
        """Load the GGUF LoRA at ``path`` under ``name`` (once)."""
        if name not in self._adapters:
            adapter = self._llama.llama_adapter_lora_init(self._model.model, str(path).encode())
            if not adapter:
                raise TuneloopError(f"llama.cpp could not load the LoRA {path} on {self.path.name}; it must be "
                                    f"converted against this base model")
            self._adapters[name] = adapter

    def drop_adapter(self, name: str) -> None:
        adapter = self._adapters.pop(name, None)
        if adapter is not None:
            with self._contexts_lock:
                for ctx in self._contexts:      # no idle context may keep pointing at it
                    self._set_adapter(ctx, None)
            self._llama.llama_adapter_lora_free(adapter)

    @property
    def adapters(self) -> list[str]:
        return list(self._adapters)

    def close(self) -> None:
        with self._contexts_lock:
            for ctx in self._contexts:
                ctx.close()
            self._contexts.clear()
        self._adapters.clear()          # freed with the model
        self._model.close()

    def generate(self, rows: Sequence[tuple[list[int], str | None]], settings: DecodingSettings, *,
                 stop_ids: set[int], on_token=None, cancel: threading.Event | None = None,
                 top_k: int | None = None, threads: int | None = None) -> list[list[int]]:
        """Each row's new tokens (ending with its stop token when it stopped by itself).

        A row is (prompt token ids, adapter name or None). Up to ``ROWS_AT_ONCE`` rows answer together, each
        in its own context: with at least one thread per row they run at the same time, each on its share of
        the threads (the base's and the tuned side's prompts are read at once, so neither first token waits
        for the other side's prompt); with fewer threads than rows they take turns token by token, every
        decode using all the threads. Either way both sides of the Playground grow together. A context keeps
        its KV cache between requests, so a prompt that starts like the context's last one (the chat
        template's system turn, a conversation's earlier turns) only evaluates what is new.
        ``on_token(row, token)`` hears every new token as it comes; ``threads`` overrides the model's own.
        """
        rows = list(rows)
        out: list[list[int]] = [[] for _ in rows]
        for first in range(0, len(rows), self.ROWS_AT_ONCE):
            group = range(first, min(first + self.ROWS_AT_ONCE, len(rows)))
            contexts = {}
            per_row = (threads or self.threads) // len(group)
            try:
                for n in group:
                    contexts[n] = self._context(per_row or threads or self.threads, rows[n][1], rows[n][0])
                turns = {n: self._row_steps(contexts[n], n, rows[n][0], rows[n][1], settings, stop_ids, on_token,
                                            cancel, top_k, out[n]) for n in group}
                if per_row and len(group) > 1:
                    _side_by_side(list(turns.values()))
                    turns = {}
                while turns:
                    for n in list(turns):
                        if next(turns[n], None) is None:
                            del turns[n]
            finally:
                with self._contexts_lock:
                    self._contexts.extend(contexts.values())
        return out

    def _context(self, threads: int, adapter: str | None = None, prompt: Sequence[int] = ()):
        """An idle context, preferably one already set to ``adapter`` (switching rebuilds its graph and drops its
        KV cache) whose cached tokens share the longest start with ``prompt``."""
        with self._contexts_lock:
            same = [c for c in self._contexts if c.adapter == adapter]
            ctx = (max(same, key=lambda c: _shared_start(c.tokens, prompt)) if same
                   else self._contexts[-1] if self._contexts else None)
            if ctx is not None:
                self._contexts.remove(ctx)
        if ctx is None:
            from llama_cpp import _internals
            params = self._llama.llama_context_default_params()
            params.n_ctx = self.n_ctx
            params.n_batch = params.n_ubatch = 512
            params.n_seq_max = 1
            params.no_perf = True
            ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
            ctx.adapter, ctx.tokens = None, []
        ctx.set_n_threads(threads, threads)
        return ctx

    def _set_adapter(self, ctx, adapter: str | None) -> None:
        if ctx.adapter == adapter:
            return
        llama = self._llama
        if adapter is None:
            llama.llama_set_adapters_lora(ctx.ctx, None, 0, None)
        elif adapter not in self._adapters:
            raise TuneloopError(f"llama.cpp has no adapter '{adapter}' loaded on {self.path.name}")
        else:
            chosen = (llama.llama_adapter_lora_p_ctypes * 1)(self._adapters[adapter])
            llama.llama_set_adapters_lora(ctx.ctx, chosen, 1, (ctypes.c_float * 1)(1.0))
        ctx.adapter = adapter
        ctx.kv_cache_clear()            # the cached keys and values were computed under the other adapter
        ctx.tokens = []

    def _reuse_cache(self, ctx, prompt: list[int]) -> list[int]:
        """Keep the context's cached start of ``prompt`` (at least its last token is evaluated again, for its
        logits) and return the tokens still to evaluate."""
        keep = min(_shared_start(ctx.tokens, prompt), len(prompt) - 1)
        if keep <= 0 or not ctx.kv_cache_seq_rm(0, keep, -1):
            ctx.kv_cache_clear()
            keep = 0
        ctx.tokens = list(prompt[:keep])
        return list(prompt[keep:])

    def _row_steps(self, ctx, row: int, prompt: list[int], adapter: str | None, settings: DecodingSettings,
                   stop_ids: set[int], on_token, cancel, top_k, new: list[int]) -> Iterator[bool]:
        """One row's answer, one token (appended to ``new``) per step."""
        import numpy as np
        llama = self._llama
        if len(prompt) + settings.max_new_tokens > self.n_ctx:
            raise TuneloopError(f"the conversation ({len(prompt)} tokens) plus {settings.max_new_tokens} new tokens "
                                f"is longer than {self.path.name} reads here ({self.n_ctx}); start a new "
                                f"conversation or lower the max new tokens")
        if any(t >= self.n_vocab or t < 0 for t in prompt):
            raise TuneloopError(f"the tokenizer gives token ids that {self.path.name} does not have "
                                f"({self.n_vocab} tokens); the GGUF file belongs to another model")
        self._set_adapter(ctx, adapter)
        pending = self._reuse_cache(ctx, prompt)
        seen = np.zeros(self.n_vocab, dtype=bool)
        seen[prompt] = True
        rng = np.random.default_rng(settings.seed)
        while len(new) < settings.max_new_tokens and not (cancel is not None and cancel.is_set()):
            for start in range(0, len(pending), 512):
                chunk = pending[start:start + 512]
                tokens = (llama.llama_token * len(chunk))(*chunk)
                code = llama.llama_decode(ctx.ctx, llama.llama_batch_get_one(tokens, len(chunk)))
                if code != 0:
                    ctx.kv_cache_clear()
                    ctx.tokens = []
                    raise TuneloopError(f"llama.cpp could not decode on {self.path.name} (code {code})")
                ctx.tokens += chunk
            logits = np.ctypeslib.as_array(llama.llama_get_logits_ith(ctx.ctx, -1), shape=(self.n_vocab,))
            token = choose_token(logits, seen, settings, rng, top_k=top_k)
            new.append(token)
            if on_token is not None:
                on_token(row, token)
            if token in stop_ids:
                return
            seen[token] = True
            pending = [token]
            yield True


def _side_by_side(steps: list[Iterator[bool]]) -> None:
    """Run each row's steps to the end in a thread of its own (llama.cpp decodes without holding the GIL);
    the first failure is raised once all have stopped."""
    failures: list[BaseException] = []

    def drain(it):
        try:
            for _ in it:
                pass
        except BaseException as exc:   # raised below, in the caller's thread
            failures.append(exc)

    workers = [threading.Thread(target=drain, args=(it,), name="llama-row", daemon=True) for it in steps]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if failures:
        raise failures[0]


def _shared_start(cached: Sequence[int], prompt: Sequence[int]) -> int:
    """How many leading tokens ``cached`` and ``prompt`` have in common."""
    n = 0
    for a, b in zip(cached, prompt):
        if a != b:
            break
        n += 1
    return n


# -- the process-wide pool ------------------------------------------------------------------------

class BasePool:
    """The warm base models, at most ``max_models`` at once; an idle one makes room for another base model."""

    def __init__(self, *, max_models: int = 1, max_adapters: int = 4):
        self.max_models = max_models
        self.max_adapters = max_adapters
        self._models: OrderedDict[tuple[str, str, bool, str], WarmBase] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ws: Workspace | None, base_model: str, *, load_in_4bit: bool = False,
            engine: str | None = None) -> WarmBase:
        """The warm model for ``base_model`` (not loaded until it first answers); ``engine`` as ``requested_engine``."""
        return self._take(ws, base_model, load_in_4bit, engine, hold=False)

    @contextlib.contextmanager
    def hold(self, ws: Workspace | None, base_model: str, *, load_in_4bit: bool = False,
             engine: str | None = None) -> Iterator[WarmBase]:
        """The warm model for ``base_model``, kept from being dropped until the block ends (taken under the
        pool's lock, so no other base model can push it out before the caller holds it)."""
        model = self._take(ws, base_model, load_in_4bit, engine, hold=True)
        try:
            yield model
        finally:
            model._release()

    def _take(self, ws, base_model: str, load_in_4bit: bool, engine: str | None, *, hold: bool) -> WarmBase:
        from training.models import model_cache_dir, resolve_base_model
        resolved = resolve_base_model(base_model, ws)
        requested = requested_engine(engine)
        key = (resolved.path, resolved.revision, bool(load_in_4bit), requested)
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
                model = self._models[key] = WarmBase(resolved, load_in_4bit=load_in_4bit, engine=requested,
                                                     max_adapters=self.max_adapters, cache_dir=model_cache_dir(ws))
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


def warm_base(ws: Workspace | None, base_model: str, *, load_in_4bit: bool = False,
              engine: str | None = None) -> WarmBase:
    """The process's one warm copy of ``base_model`` (see ``BasePool.get``)."""
    return default_pool().get(ws, base_model, load_in_4bit=load_in_4bit, engine=engine)
