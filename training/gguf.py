"""GGUF files for llama.cpp and Ollama: a run's merged model (or its LoRA adapter) converted with
llama.cpp's own converters, and an Ollama ``Modelfile`` with the model's chat template and stop tokens.

The converters (``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py`` and the ``gguf-py`` and
``conversion`` packages they import) come from the llama-cpp-python sdist pinned in requirements.txt;
``make setup`` puts them in ``.venv/share/llama.cpp``. They run as a subprocess of this Python, so a
conversion never loads a second model into the app. q4_k_m is made from the f16 file by llama.cpp's
quantizer (``llama_cpp.llama_model_quantize``, in a subprocess too). While one runs, the caller's
``progress`` is called again every quarter second: when it raises (the tab's Cancel export) or Ctrl-C
arrives, the subprocess is ended and the temp files go, so a cancelled export leaves nothing behind.

Example::

    path = run_gguf(ws, get_run(ws, 3), quant="q8_0")     # runs/run-3/gguf/<fingerprint>-q8_0.gguf, cached
    write_modelfile(path, tokenizer, path.parent)         # then: ollama create my-model -f Modelfile
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from core.errors import TuneloopError
from core.workspace import Workspace, atomic_path, atomic_write, temp_path
from training.registry import Run

QUANTS = ("f16", "q8_0", "q4_k_m")
MODELFILE = "Modelfile"
# Markers for reading a chat template's wrapping of each role; no real message contains them.
_MARK = "\u2402TUNELOOP{}\u2403"


def converter_dir() -> Path:
    """Where ``make setup`` put llama.cpp's converter scripts: ``<venv>/share/llama.cpp``."""
    return Path(sys.prefix) / "share" / "llama.cpp"


def _converter(script: str) -> Path:
    path = converter_dir() / script
    if not path.is_file():
        raise TuneloopError(f"llama.cpp's converter {path} is missing; run `make setup` (it unpacks the converters "
                            f"from the llama-cpp-python sdist pinned in requirements.txt)")
    return path


class ExportCancelled(TuneloopError):
    """The user stopped an export (the tab's Cancel, Ctrl-C): the subprocess was ended and nothing was written."""


# How often a running conversion asks whether to go on (the progress callback is called again, unchanged).
POLL_S = 0.25


def _run_tool(argv: list[str], what: str, failure: str, progress=None, at: tuple[float, str] = (0.0, "")) -> None:
    """Run one of llama.cpp's tools as a subprocess of this Python and wait for it, calling ``progress(*at)``
    every ``POLL_S`` meanwhile. Whatever stops the wait (the callback raising because the user cancelled,
    Ctrl-C) ends the subprocess first, so that no converter goes on writing after its caller has given up."""
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}    # the gguf-py shipped beside it
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                if progress:
                    progress(*at)
    except BaseException:
        _end(proc)
        raise
    if proc.returncode != 0:
        tail = "\n".join((err or out).strip().splitlines()[-6:])
        raise TuneloopError(f"{failure}:\n{tail}")


def _end(proc: subprocess.Popen) -> None:
    """Stop a subprocess: asked to (SIGTERM), then made to (SIGKILL) if it has not gone within 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def _run_converter(script: str, args: list[str], what: str, progress=None, at: tuple[float, str] = (0.0, "")) -> None:
    _run_tool([sys.executable, str(_converter(script)), *args], what,
              f"llama.cpp's {script} could not convert {what}", progress, at)


def _check_quant(quant: str) -> str:
    if quant not in QUANTS:
        raise TuneloopError(f"unknown GGUF quantization '{quant}'; choose one of {', '.join(QUANTS)}")
    return quant


def convert_model(folder: str | os.PathLike, out: str | os.PathLike, *, quant: str = "f16", progress=None) -> Path:
    """A transformers model folder (safetensors + tokenizer + chat template) as one GGUF file at ``out``,
    in f16, q8_0 or q4_k_m; written to a temp file and renamed. ``progress(fraction, text)`` hears each phase."""
    say = progress or (lambda fraction, text: None)
    _check_quant(quant)
    folder, out = Path(folder), Path(out)
    if not (folder / "config.json").is_file():
        raise TuneloopError(f"'{folder}' is not a model folder (no config.json); export the run as 'merged' first")
    with atomic_path(out) as tmp:
        if quant == "q4_k_m":
            f16 = temp_path(out, tag="f16")
            try:
                phase = (0.0, "converting to GGUF (f16) with llama.cpp's converter")
                say(*phase)
                _run_converter("convert_hf_to_gguf.py", [str(folder), "--outfile", str(f16), "--outtype", "f16"],
                               f"the model folder {folder}", say, phase)
                phase = (0.6, f"quantizing to {quant} with llama.cpp")
                say(*phase)
                quantize_gguf(f16, tmp, quant, progress=say, at=phase)
            finally:
                f16.unlink(missing_ok=True)
        else:
            phase = (0.0, f"converting to GGUF ({quant}) with llama.cpp's converter")
            say(*phase)
            _run_converter("convert_hf_to_gguf.py", [str(folder), "--outfile", str(tmp), "--outtype", quant],
                           f"the model folder {folder}", say, phase)
        tmp.chmod(0o644)
    return out


# llama.cpp's quantizer, run in a subprocess (so that Cancel can end it): argv source, out, ftype name, threads.
_QUANTIZE = """
import ctypes, sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, sys.argv[3])
params.nthread = int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params)) != 0)
"""
_FTYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}


def quantize_gguf(source: Path, out: Path, quant: str, *, progress=None, at: tuple[float, str] = (0.0, "")) -> Path:
    """Quantize an f16 GGUF file to ``quant`` (q4_k_m, q8_0) with llama.cpp's quantizer, in a subprocess;
    ``progress(*at)`` is called while it runs (raising from it ends the quantizer)."""
    import importlib.util
    if importlib.util.find_spec("llama_cpp") is None:
        raise TuneloopError(f"{quant} quantization needs llama-cpp-python; run `make setup`")
    _run_tool([sys.executable, "-c", _QUANTIZE, str(source), str(out), _FTYPES[quant], str(os.cpu_count() or 1)],
              str(source), f"llama.cpp could not quantize {source} to {quant}; check the disk has room for {out} "
              f"and that {source} is a complete GGUF file", progress, at)
    return out


def convert_adapter(adapter_dir: str | os.PathLike, base_folder: str | os.PathLike,
                    out: str | os.PathLike, *, progress=None) -> Path:
    """A PEFT LoRA adapter as a GGUF LoRA file (f16) for llama.cpp's ``lora_path`` on the base's GGUF;
    ``progress(fraction, text)`` is called while the converter runs (raising from it ends the converter)."""
    adapter_dir, base_folder, out = Path(adapter_dir), Path(base_folder), Path(out)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise TuneloopError(f"'{adapter_dir}' is not a LoRA adapter folder (no adapter_config.json)")
    if not (base_folder / "config.json").is_file():
        raise TuneloopError(f"'{base_folder}' is not the base model's folder (no config.json)")
    with atomic_path(out) as tmp:
        phase = (0.0, "converting the adapter to a GGUF LoRA with llama.cpp's converter")
        if progress:
            progress(*phase)
        _run_converter("convert_lora_to_gguf.py", [str(adapter_dir), "--base", str(base_folder),
                                                   "--outfile", str(tmp), "--outtype", "f16"],
                       f"the adapter {adapter_dir}", progress, phase)
        tmp.chmod(0o644)
    return out


def run_gguf(ws: Workspace, run: Run, *, quant: str = "f16", progress=None) -> Path:
    """The run's merged model (base + adapter) as a GGUF file, made once and kept in the run's folder
    (``gguf/<adapter fingerprint>-<quant>.gguf``): retraining the adapter makes a new one. ``progress(fraction,
    text)`` hears each phase (merging, converting, quantizing)."""
    from training.export import export_merged, require_adapter
    from training.inference import adapter_fingerprint
    _check_quant(quant)
    target = run.run_dir / "gguf" / f"{adapter_fingerprint(require_adapter(run))[:16]}-{quant}.gguf"
    if target.is_file():
        return target
    merged = temp_path(target, tag="merged")
    try:
        if progress:
            progress(0.05, "merging the adapter into the base model")
        export_merged(ws, run, merged,
                      progress=progress and (lambda fraction, text: progress(
                          0.05 + 0.35 * fraction, text if text.startswith("merging") else f"merging ({text})")))
        convert_model(merged, target, quant=quant,
                      progress=progress and (lambda fraction, text: progress(0.4 + 0.55 * fraction, text)))
    finally:
        shutil.rmtree(merged, ignore_errors=True)
    return target


def _render(template: str, messages: list[dict[str, str]], tokenizer, *, add_generation_prompt: bool = False) -> str:
    if tokenizer is not None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)


def _split(text: str, marker: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise TuneloopError("the chat template does not write each message's text once, so it cannot be turned "
                            "into an Ollama template; write the Modelfile's TEMPLATE by hand")
    return tuple(text.split(marker))


def ollama_template(template: str, tokenizer=None) -> tuple[str, str, list[str]]:
    """A chat template in Ollama's Go-template form, read from how the template wraps each role:
    (TEMPLATE text, the default system prompt the template adds when a conversation has none, stop strings).

    A system, a user and an assistant message are rendered with markers for their text; the text between
    two messages is the first one's closing (what the assistant's turn also ends with) and the next one's
    opening. Templates that wrap each role the same way every time (ChatML, Llama 3, Gemma ...) come out exact.
    """
    s, u, a = (_MARK.format(i) for i in "SUA")
    full = _render(template, [{"role": "system", "content": s}, {"role": "user", "content": u},
                              {"role": "assistant", "content": a}], tokenizer)
    if "{{" in full or "}}" in full:
        raise TuneloopError("the chat template writes '{{' or '}}', which an Ollama template cannot hold as text; "
                            "write the Modelfile's TEMPLATE by hand")
    sys_prefix, rest = _split(full, s)
    between_su, rest = _split(rest, u)
    between_ua, asst_suffix = _split(rest, a)
    sys_suffix = _common_start(between_su, asst_suffix)
    user_prefix = between_su[len(sys_suffix):]
    user_suffix = _common_start(between_ua, asst_suffix)
    asst_prefix = between_ua[len(user_suffix):]
    only_user = _render(template, [{"role": "user", "content": u}], tokenizer)
    head, _ = _split(only_user, u)
    default_system = ""
    if head != user_prefix and head.startswith(sys_prefix) and head.endswith(sys_suffix + user_prefix):
        default_system = head[len(sys_prefix): len(head) - len(sys_suffix + user_prefix)]
    prompted = _render(template, [{"role": "user", "content": u}], tokenizer, add_generation_prompt=True)
    generation = prompted[len(only_user):] if prompted.startswith(only_user) else asst_prefix
    # No '{{-' trimming: the roles' own newlines are part of the format.
    go = ("{{ range .Messages }}"
          f'{{{{ if eq .Role "system" }}}}{sys_prefix}{{{{ .Content }}}}{sys_suffix}'
          f'{{{{ else if eq .Role "user" }}}}{user_prefix}{{{{ .Content }}}}{user_suffix}'
          f'{{{{ else if eq .Role "assistant" }}}}{asst_prefix}{{{{ .Content }}}}{asst_suffix}'
          "{{ end }}{{ end }}" + generation)
    stops = [asst_suffix.strip()] if asst_suffix.strip() else []
    return go, default_system, stops


def _common_start(text: str, other: str) -> str:
    n = 0
    while n < min(len(text), len(other)) and text[n] == other[n]:
        n += 1
    return text[:n]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_modelfile(gguf_path: str | os.PathLike, tokenizer_or_template, out_dir: str | os.PathLike, *,
                    system: str | None = None) -> Path:
    """An Ollama ``Modelfile`` in ``out_dir`` for the GGUF file: FROM (relative when beside it), TEMPLATE in
    Go-template form, a PARAMETER stop per stop token, and SYSTEM (``system``, else the template's own default).
    ``tokenizer_or_template`` is a tokenizer with a chat template, a model folder, or a Jinja chat template."""
    gguf_path, out_dir = Path(gguf_path).resolve(), Path(out_dir).resolve()
    tokenizer = tokenizer_or_template
    if isinstance(tokenizer_or_template, (str, os.PathLike)) and Path(tokenizer_or_template).is_dir():
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_or_template))
    if isinstance(tokenizer, str):
        template, tokenizer, stops = tokenizer, None, []
    else:
        template = tokenizer.chat_template
        if not template:
            raise TuneloopError("the model has no chat template, so Ollama would not know how to wrap a chat; "
                                "use an instruct/chat model")
        stops = [t for t in (tokenizer.eos_token,) if t]
    go, default_system, template_stops = ollama_template(template, tokenizer)
    stops = list(dict.fromkeys(template_stops + stops))
    source = f"./{gguf_path.name}" if gguf_path.parent == out_dir else str(gguf_path)
    lines = [f"FROM {source}", f'TEMPLATE """{go}"""']
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in stops]
    system = system if system is not None else default_system
    if system:
        lines.append(f'SYSTEM """{system}"""')
    path = out_dir / MODELFILE
    atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"))
    path.chmod(0o644)
    return path
