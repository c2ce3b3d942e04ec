"""CTranslate2 Whisper model -> whisper.cpp ggml file, in plain numpy.

No ggml Whisper model ships inside a registry package, but CTranslate2 ones
do (models.py).  Both formats carry the same weights, so the ggml file is
made here, offline, from the CTranslate2 one:

* CTranslate2 ``model.bin``: a version, the spec name (``WhisperSpec``), then
  named tensors (float16 in the shipped models) and aliases.  Its names are
  its own (``encoder/layer_0/self_attention/linear_0/weight``) and it fuses
  the self-attention query, key and value into one matrix, and the
  cross-attention key and value into another.
* whisper.cpp's ggml file: a magic, eleven int32 hyper-parameters, the mel
  filterbank, the byte-level BPE vocabulary, then tensors under OpenAI's
  names (``encoder.blocks.0.attn.query.weight``), each with its own header.

Everything a whisper.cpp loader checks (names, shapes, element types) is
derived from the CTranslate2 tensors, so any Whisper size converts.  Errors
are ModelError naming the file, never a numpy or struct exception.

Usage: ``python -m asterisk_agent.speech.ggml SRC OUT.bin`` (tools/ct2-to-ggml).
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import tempfile
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from . import ModelError

# Bumped whenever the converter's output changes, so cached files are made again
CONVERTER_REVISION = 1

# "ggml" as a little-endian uint32: the legacy ggml file magic whisper.cpp reads
GGML_MAGIC = 0x67676D6C
# ggml element types used by the converter (ggml.h: GGML_TYPE_F32, GGML_TYPE_F16)
GGML_F32, GGML_F16 = 0, 1

# Whisper's audio front end, fixed for every model size
SAMPLE_RATE = 16000
N_FFT = 400

# Every Whisper size uses 64-dimensional attention heads; used only when a
# CTranslate2 model does not store its head count.
HEAD_DIM = 64

# English-only Whisper vocabularies hold 50256 byte-level BPE tokens before
# <|endoftext|>, multilingual ones 50257.  whisper.cpp assumes exactly this
# (it tells the two apart by n_vocab) and numbers its special tokens from there.
_EOT = "<|endoftext|>"
_MULTILINGUAL_N_VOCAB = 51865

# CTranslate2 DataType ids (include/ctranslate2/types.h)
_CT2_DTYPES = {
    0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"),
    4: np.dtype("<f2"), 5: np.dtype("<u2"),  # bfloat16: raw bits, widened below
}
_CT2_BFLOAT16 = 5
# Binary versions with type ids and aliases; CTranslate2 could convert Whisper
# only from version 5 on, older files hold other models anyway.
_CT2_VERSIONS = range(4, 7)

# bytes per block and elements per block of the ggml types a whisper.cpp file
# may hold (ggml.c type traits), to walk a file without loading it
_GGML_TYPE_SIZES = {
    0: (4, 1), 1: (2, 1),                       # f32, f16
    2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32),  # q4_0 q4_1 q5_0 q5_1 q8_0
    10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256),  # q2_k..q6_k
}


@dataclass(frozen=True)
class Hparams:
    """whisper.cpp's hyper-parameters, in the order the file stores them."""

    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_mels: int
    ftype: int

    @property
    def multilingual(self) -> bool:
        return self.n_vocab >= _MULTILINGUAL_N_VOCAB

    def pack(self) -> bytes:
        return struct.pack(f"<{len(fields(self))}i", *astuple(self))


@dataclass
class Ct2Model:
    """The variables of a CTranslate2 model.bin, as numpy views into its bytes."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]


class TensorInfo(NamedTuple):
    shape: tuple[int, ...]   # numpy order (outermost first)
    kind: int                # ggml type
    offset: int              # where its data starts in the file


@dataclass(frozen=True)
class GgmlInfo:
    """What a ggml Whisper file holds, read from its headers."""

    hparams: Hparams
    n_mel: int
    n_fft: int
    n_tokens: int
    tensors: dict[str, TensorInfo]


# --- CTranslate2 model.bin ------------------------------------------------------------

class _Reader:
    """Bounds-checked reads from a buffer: a short file is a ModelError, not an IndexError."""

    def __init__(self, data: bytes | memoryview, origin: str, what: str):
        self.data = memoryview(data)
        self.pos = 0
        self.origin = origin
        self.what = what

    def take(self, n: int, item: str) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise ModelError(
                f"{self.origin}: truncated {self.what} ({item} needs {n} bytes at offset "
                f"{self.pos}, the file has {len(self.data)})")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def unpack_all(self, fmt: str, item: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), item))

    def unpack(self, fmt: str, item: str):
        return self.unpack_all(fmt, item)[0]

    def string(self, item: str) -> str:
        # CTranslate2 strings: uint16 length counting a trailing NUL
        size = self.unpack("<H", item)
        raw = bytes(self.take(size, item))
        if not raw or raw[-1] != 0:
            raise ModelError(f"{self.origin}: not a CTranslate2 model ({item} is not a string)")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(
                f"{self.origin}: not a CTranslate2 model ({item} is not text)") from None


def read_ctranslate2(data: bytes | memoryview, origin: str = "model.bin") -> Ct2Model:
    """Parse a CTranslate2 model.bin held in memory (see CTranslate2's
    ModelSpec._serialize).  Arrays are views into ``data``: nothing is copied."""
    r = _Reader(data, origin, "CTranslate2 model")
    version = r.unpack("<I", "binary version")
    if version not in _CT2_VERSIONS:
        raise ModelError(f"{origin}: not a CTranslate2 model file this converter reads "
                         f"(binary version {version}, expected {_CT2_VERSIONS[0]} to "
                         f"{_CT2_VERSIONS[-1]})")
    spec = r.string("spec name")
    revision = r.unpack("<I", "spec revision")
    count = r.unpack("<I", "variable count")
    variables: dict[str, np.ndarray] = {}
    for i in range(count):
        name = r.string(f"name of variable {i + 1} of {count}")
        rank = r.unpack("<B", f"rank of {name}")
        shape = r.unpack_all(f"<{rank}I", f"shape of {name}")
        type_id = r.unpack("<B", f"type of {name}")
        dtype = _CT2_DTYPES.get(type_id)
        if dtype is None:
            raise ModelError(f"{origin}: variable {name} has unknown type id {type_id}")
        size = r.unpack("<I", f"size of {name}")
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if size != expected:
            raise ModelError(f"{origin}: variable {name} holds {size} bytes, "
                             f"its shape {list(shape)} needs {expected}")
        raw = r.take(size, f"data of {name}")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        if type_id == _CT2_BFLOAT16:
            # bfloat16 is the top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array
    aliases: dict[str, str] = {}
    for i in range(r.unpack("<I", "alias count")):
        alias = r.string(f"alias {i + 1}")
        aliases[alias] = r.string(f"target of alias {alias}")
    if r.pos != len(r.data):
        raise ModelError(f"{origin}: {len(r.data) - r.pos} unexpected bytes after the last "
                         "variable (a damaged file, or parts joined in the wrong order)")
    return Ct2Model(spec, revision, variables, aliases)


# --- names and shapes -----------------------------------------------------------------

def _layer_count(variables: Mapping[str, np.ndarray], prefix: str) -> int:
    found = {int(m.group(1)) for name in variables
             if (m := re.match(rf"{prefix}/layer_(\d+)/", name))}
    if not found:
        raise ModelError(f"not a CTranslate2 Whisper model: no {prefix} layers")
    if found != set(range(len(found))):
        raise ModelError(f"{prefix} layers are not numbered 0..{len(found) - 1}: {sorted(found)}")
    return len(found)


def _need(variables: Mapping[str, np.ndarray], name: str, ndim: int) -> np.ndarray:
    if name not in variables:
        raise ModelError(f"not a CTranslate2 Whisper model: variable {name} is missing")
    value = variables[name]
    if value.ndim != ndim:
        raise ModelError(
            f"variable {name} has shape {list(value.shape)}, expected {ndim} dimensions")
    return value


def _heads(variables: Mapping[str, np.ndarray], prefix: str, state: int) -> int:
    stored = variables.get(f"{prefix}/num_heads")
    heads = int(stored) if stored is not None and stored.size == 1 else state // HEAD_DIM
    if heads <= 0 or state % heads:
        raise ModelError(f"{prefix}: {heads} attention heads do not divide the width {state}")
    return heads


def hparams_of(variables: Mapping[str, np.ndarray]) -> Hparams:
    """whisper.cpp's hyper-parameters, read off the CTranslate2 tensors."""
    conv1 = _need(variables, "encoder/conv1/weight", 3)
    audio_pe = _need(variables, "encoder/position_encodings/encodings", 2)
    text_pe = _need(variables, "decoder/position_encodings/encodings", 2)
    embeddings = _need(variables, "decoder/embeddings/weight", 2)
    audio_state, text_state = audio_pe.shape[1], embeddings.shape[1]
    if conv1.shape[0] != audio_state or text_pe.shape[1] != text_state:
        raise ModelError(f"inconsistent widths: conv1 {list(conv1.shape)}, encoder positions "
                         f"{list(audio_pe.shape)}, decoder positions {list(text_pe.shape)}")
    # whisper.cpp keeps one width for both halves
    if audio_state != text_state:
        raise ModelError(f"encoder width {audio_state} differs from decoder width {text_state}")
    for name, value in variables.items():
        if value.dtype.kind not in "f" and value.ndim >= 2:
            raise ModelError(f"variable {name} is {value.dtype} (a quantized model); "
                             "convert from a float16 or float32 CTranslate2 model")
    # f16 output when the source weights are half precision (bfloat16 is widened to
    # float32 on reading and kept there: rounding it to f16 could overflow)
    ftype = GGML_F16 if embeddings.dtype == np.float16 else GGML_F32
    return Hparams(
        n_vocab=embeddings.shape[0],
        n_audio_ctx=audio_pe.shape[0],
        n_audio_state=audio_state,
        n_audio_head=_heads(variables, "encoder", audio_state),
        n_audio_layer=_layer_count(variables, "encoder"),
        n_text_ctx=text_pe.shape[0],
        n_text_state=text_state,
        n_text_head=_heads(variables, "decoder", text_state),
        n_text_layer=_layer_count(variables, "decoder"),
        n_mels=conv1.shape[1],
        ftype=ftype,
    )


def _split(value: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if value.shape[0] % parts:
        raise ModelError(f"variable {name} with shape {list(value.shape)} "
                         f"cannot be split in {parts}")
    return np.split(value, parts, axis=0)


def _no_bias(bias: np.ndarray, name: str) -> None:
    # Whisper's attention keys have no bias; CTranslate2 stores zeros in its
    # place when it fuses them.  Anything else means the split is wrong.
    if np.any(bias != 0):
        raise ModelError(f"variable {name}: the key part of the fused bias is not zero")


def _linear(v: Mapping[str, np.ndarray], src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", _need(v, f"{src}/weight", 2)
    yield f"{dst}.bias", _need(v, f"{src}/bias", 1)


def _norm(v: Mapping[str, np.ndarray], src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", _need(v, f"{src}/gamma", 1)
    yield f"{dst}.bias", _need(v, f"{src}/beta", 1)


def _self_attention(v, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    """Self-attention: CTranslate2's fused linear_0 is query, key, value stacked."""
    w = f"{src}/linear_0/weight"
    b = f"{src}/linear_0/bias"
    q_w, k_w, v_w = _split(_need(v, w, 2), 3, w)
    q_b, k_b, v_b = _split(_need(v, b, 1), 3, b)
    _no_bias(k_b, b)
    yield from _norm(v, f"{src}/layer_norm", f"{dst}_ln")
    yield f"{dst}.query.weight", q_w
    yield f"{dst}.query.bias", q_b
    yield f"{dst}.key.weight", k_w
    yield f"{dst}.value.weight", v_w
    yield f"{dst}.value.bias", v_b
    yield from _linear(v, f"{src}/linear_1", f"{dst}.out")


def _cross_attention(v, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    """Cross-attention: linear_0 is the query, linear_1 key and value stacked, linear_2 out."""
    w = f"{src}/linear_1/weight"
    b = f"{src}/linear_1/bias"
    k_w, v_w = _split(_need(v, w, 2), 2, w)
    k_b, v_b = _split(_need(v, b, 1), 2, b)
    _no_bias(k_b, b)
    yield from _norm(v, f"{src}/layer_norm", f"{dst}_ln")
    yield from _linear(v, f"{src}/linear_0", f"{dst}.query")
    yield f"{dst}.key.weight", k_w
    yield f"{dst}.value.weight", v_w
    yield f"{dst}.value.bias", v_b
    yield from _linear(v, f"{src}/linear_2", f"{dst}.out")


def _mlp(v, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield from _norm(v, f"{src}/layer_norm", f"{dst}.mlp_ln")
    yield from _linear(v, f"{src}/linear_0", f"{dst}.mlp.0")
    yield from _linear(v, f"{src}/linear_1", f"{dst}.mlp.2")


def openai_tensors(variables: Mapping[str, np.ndarray],
                   hp: Hparams | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """The CTranslate2 variables under OpenAI's Whisper names and shapes, which
    whisper.cpp expects (its loader names every tensor it wants)."""
    v = variables
    hp = hp or hparams_of(v)
    for n in (1, 2):
        yield f"encoder.conv{n}.weight", _need(v, f"encoder/conv{n}/weight", 3)
        # whisper.cpp adds the conv bias as an [n_state, 1] column
        yield f"encoder.conv{n}.bias", _need(v, f"encoder/conv{n}/bias", 1)[:, None]
    yield "encoder.positional_embedding", _need(v, "encoder/position_encodings/encodings", 2)
    for i in range(hp.n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        yield from _self_attention(v, f"{src}/self_attention", f"{dst}.attn")
        yield from _mlp(v, f"{src}/ffn", dst)
    yield from _norm(v, "encoder/layer_norm", "encoder.ln_post")

    yield "decoder.token_embedding.weight", _need(v, "decoder/embeddings/weight", 2)
    yield "decoder.positional_embedding", _need(v, "decoder/position_encodings/encodings", 2)
    for i in range(hp.n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from _self_attention(v, f"{src}/self_attention", f"{dst}.attn")
        yield from _cross_attention(v, f"{src}/attention", f"{dst}.cross_attn")
        yield from _mlp(v, f"{src}/ffn", dst)
    yield from _norm(v, "decoder/layer_norm", "decoder.ln")


def expected_shapes(hp: Hparams) -> dict[str, tuple[int, ...]]:
    """Every tensor whisper.cpp's loader creates, with its shape (numpy order).

    Written from the model's hyper-parameters alone, independently of the
    name mapping, so the two check each other.
    """
    d_a, d_t, shapes = hp.n_audio_state, hp.n_text_state, {}
    shapes["encoder.conv1.weight"] = (d_a, hp.n_mels, 3)
    shapes["encoder.conv2.weight"] = (d_a, d_a, 3)
    shapes["encoder.conv1.bias"] = shapes["encoder.conv2.bias"] = (d_a, 1)
    shapes["encoder.positional_embedding"] = (hp.n_audio_ctx, d_a)
    shapes["encoder.ln_post.weight"] = shapes["encoder.ln_post.bias"] = (d_a,)
    shapes["decoder.token_embedding.weight"] = (hp.n_vocab, d_t)
    shapes["decoder.positional_embedding"] = (hp.n_text_ctx, d_t)
    shapes["decoder.ln.weight"] = shapes["decoder.ln.bias"] = (d_t,)

    def block(prefix: str, d: int, cross: bool) -> None:
        attns = ("attn", "cross_attn") if cross else ("attn",)
        for a in attns:
            shapes[f"{prefix}.{a}_ln.weight"] = shapes[f"{prefix}.{a}_ln.bias"] = (d,)
            for part in ("query", "key", "value", "out"):
                shapes[f"{prefix}.{a}.{part}.weight"] = (d, d)
                if part != "key":
                    shapes[f"{prefix}.{a}.{part}.bias"] = (d,)
        shapes[f"{prefix}.mlp_ln.weight"] = shapes[f"{prefix}.mlp_ln.bias"] = (d,)
        shapes[f"{prefix}.mlp.0.weight"], shapes[f"{prefix}.mlp.0.bias"] = (4 * d, d), (4 * d,)
        shapes[f"{prefix}.mlp.2.weight"], shapes[f"{prefix}.mlp.2.bias"] = (d, 4 * d), (d,)

    for i in range(hp.n_audio_layer):
        block(f"encoder.blocks.{i}", d_a, cross=False)
    for i in range(hp.n_text_layer):
        block(f"decoder.blocks.{i}", d_t, cross=True)
    return shapes


def ggml_type(name: str, ndim: int, hp: Hparams) -> int:
    """The element type whisper.cpp's loader gives a tensor (it checks it).

    Matrices and convolution kernels take the model's type; vectors, the conv
    biases and the positional embeddings are always f32.
    """
    if ndim < 2 or name.endswith(("conv1.bias", "conv2.bias", "positional_embedding")):
        return GGML_F32
    return hp.ftype


# --- mel filters and vocabulary --------------------------------------------------------

def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, which Whisper used): linear to
    1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear_step = 200.0 / 3
    mel = hz / linear_step
    knee_hz, knee_mel, log_step = 1000.0, 1000.0 / linear_step, np.log(6.4) / 27.0
    above = hz >= knee_hz
    mel[above] = knee_mel + np.log(hz[above] / knee_hz) / log_step
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear_step = 200.0 / 3
    hz = mel * linear_step
    knee_hz, knee_mel, log_step = 1000.0, 1000.0 / linear_step, np.log(6.4) / 27.0
    above = mel >= knee_mel
    hz[above] = knee_hz * np.exp(log_step * (mel[above] - knee_mel))
    return hz


def mel_filters(n_mels: int, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Whisper's mel filterbank, [n_mels, n_fft // 2 + 1] float32.

    Triangles between n_mels + 2 points evenly spaced on the Slaney mel scale
    from 0 Hz to Nyquist, each scaled to unit area ("slaney" normalization).
    Computed rather than shipped: librosa (which Whisper's assets came from)
    is a large dependency for forty lines of arithmetic.
    """
    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array([rate / 2]))[0], n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (upper - lower)
    return weights.astype(np.float32)


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: each byte is written as one printable
    character (printable Latin-1 bytes as themselves, the rest shifted past
    U+0100).  Returns character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + shifted)
            shifted += 1
    return {c: b for b, c in chars.items()}


def token_bytes(vocabulary: Sequence[str], hp: Hparams, origin: str = "vocabulary") -> list[bytes]:
    """The ordinary (non-special) tokens as raw bytes, as whisper.cpp stores them;
    it names the special tokens itself."""
    if len(vocabulary) != hp.n_vocab:
        raise ModelError(f"{origin}: {len(vocabulary)} tokens, but the model has "
                         f"{hp.n_vocab} embeddings")
    expected_eot = 50256 + hp.multilingual
    found = vocabulary[expected_eot] if len(vocabulary) > expected_eot else None
    if found != _EOT:
        raise ModelError(f"{origin}: token {expected_eot} is {found!r}, "
                         f"expected {_EOT} (not a Whisper vocabulary)")
    alphabet = _byte_alphabet()
    out = []
    for i, token in enumerate(vocabulary[:expected_eot]):
        try:
            out.append(bytes(alphabet[c] for c in token))
        except KeyError:
            raise ModelError(f"{origin}: token {i} {token!r} is not byte-level BPE") from None
    return out


# CTranslate2 writes vocabulary.json (a list, current releases) or
# vocabulary.txt (one token a line, older ones)
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")


def read_vocabulary(directory: Path) -> list[str]:
    """A CTranslate2 model directory's vocabulary, from either file."""
    as_json, as_text = (directory / name for name in VOCABULARY_FILES)
    try:
        if as_json.is_file():
            tokens = json.loads(as_json.read_text(encoding="utf-8"))
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise ModelError(f"{as_json}: not a list of tokens")
            return tokens
        if as_text.is_file():
            text = as_text.read_text(encoding="utf-8")
            # one token a line; a line may be empty (an empty token), so only
            # the final newline is dropped
            return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{directory}: cannot read the vocabulary ({exc})") from None
    raise ModelError(f"{as_text}: model file missing (a CTranslate2 Whisper model directory "
                     "holds vocabulary.txt or vocabulary.json)")


# --- the ggml file ----------------------------------------------------------------------

def write_ggml(out: BinaryIO, hp: Hparams, filters: np.ndarray, tokens: Sequence[bytes],
               tensors: Iterator[tuple[str, np.ndarray]]) -> int:
    """Write a whisper.cpp model; returns the number of tensors written."""
    out.write(struct.pack("<I", GGML_MAGIC))
    out.write(hp.pack())
    out.write(struct.pack("<ii", *filters.shape))
    out.write(np.ascontiguousarray(filters, dtype="<f4").tobytes())
    out.write(struct.pack("<i", len(tokens)))
    for token in tokens:
        out.write(struct.pack("<i", len(token)))
        out.write(token)
    count = 0
    for name, value in tensors:
        kind = ggml_type(name, value.ndim, hp)
        data = np.ascontiguousarray(value, dtype="<f4" if kind == GGML_F32 else "<f2")
        encoded = name.encode("utf-8")
        # ggml lists dimensions innermost first: numpy's shape reversed
        out.write(struct.pack(f"<iii{data.ndim}i", data.ndim, len(encoded), kind,
                              *reversed(data.shape)))
        out.write(encoded)
        out.write(data.tobytes())
        count += 1
    return count


def convert(model_bin: bytes | memoryview, vocabulary: Sequence[str], out_path: Path,
            origin: str = "model.bin", vocabulary_origin: str = "vocabulary") -> Hparams:
    """CTranslate2 Whisper model (model.bin bytes + vocabulary) -> ggml file.

    The file is written under a temporary name and renamed into place, so a
    reader never sees half a model.
    """
    model = read_ctranslate2(model_bin, origin)
    if model.spec != "WhisperSpec":
        raise ModelError(f"{origin}: a CTranslate2 {model.spec or 'unnamed'} model, "
                         "not Whisper (WhisperSpec)")
    try:
        hp = hparams_of(model.variables)
    except ModelError as exc:
        raise ModelError(f"{origin}: {exc}") from None
    tokens = token_bytes(vocabulary, hp, vocabulary_origin)
    filters = mel_filters(hp.n_mels)
    # check every tensor before writing a byte: a bad model never leaves a file behind
    try:
        tensors = list(openai_tensors(model.variables, hp))
    except ModelError as exc:
        raise ModelError(f"{origin}: {exc}") from None
    want = expected_shapes(hp)
    got = {name: value.shape for name, value in tensors}
    if got != want:
        wrong = sorted(set(got.items()) ^ set(want.items()))[:3]
        raise ModelError(f"{origin}: tensors do not match a Whisper model of this size: {wrong}")

    out_path = Path(out_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write_ggml(f, hp, filters, tokens, iter(tensors))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hp


def inspect(path: Path) -> GgmlInfo:
    """Read a ggml Whisper file's headers and check that every tensor is whole.

    whisper.cpp stops quietly at the end of a short file, so a truncated model
    would load with garbage weights; this walks the file first.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        f = path.open("rb")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the whisper.cpp model ({exc.strerror})") from None
    with f:
        def read(n: int, item: str) -> bytes:
            chunk = f.read(n)
            if len(chunk) != n:
                raise ModelError(f"{path}: truncated whisper.cpp model ({item} at offset "
                                 f"{f.tell()}; the file has {size} bytes)")
            return chunk

        magic = struct.unpack("<I", read(4, "magic"))[0]
        if magic != GGML_MAGIC:
            raise ModelError(f"{path}: not a whisper.cpp ggml model (magic {magic:#010x})")
        hp = Hparams(*struct.unpack("<11i", read(44, "hyper-parameters")))
        if not (0 < hp.n_mels <= 512 and 0 < hp.n_vocab < 1 << 20 and hp.n_audio_layer > 0):
            raise ModelError(f"{path}: implausible hyper-parameters {hp}")
        n_mel, n_fft = struct.unpack("<ii", read(8, "mel filter size"))
        if n_mel != hp.n_mels or not 0 < n_fft <= 4096:
            raise ModelError(f"{path}: mel filters {n_mel}x{n_fft} do not fit {hp.n_mels} mels")
        f.seek(4 * n_mel * n_fft, os.SEEK_CUR)
        n_tokens = struct.unpack("<i", read(4, "vocabulary size"))[0]
        if not 0 <= n_tokens <= hp.n_vocab:
            raise ModelError(f"{path}: {n_tokens} tokens for a vocabulary of {hp.n_vocab}")
        for i in range(n_tokens):
            length = struct.unpack("<i", read(4, f"token {i}"))[0]
            if not 0 <= length < 1024:
                raise ModelError(f"{path}: token {i} has length {length}")
            f.seek(length, os.SEEK_CUR)
        tensors: dict[str, TensorInfo] = {}
        while True:
            head = f.read(12)
            if not head:
                break
            if len(head) != 12:
                raise ModelError(f"{path}: truncated whisper.cpp model (a tensor header "
                                 f"at offset {f.tell() - len(head)})")
            n_dims, name_len, kind = struct.unpack("<iii", head)
            if not 1 <= n_dims <= 4 or not 0 < name_len < 256 or kind not in _GGML_TYPE_SIZES:
                raise ModelError(f"{path}: damaged tensor header at offset {f.tell() - 12}")
            dims = struct.unpack(f"<{n_dims}i", read(4 * n_dims, "tensor shape"))
            if min(dims) <= 0:
                raise ModelError(f"{path}: damaged tensor header at offset {f.tell() - 12}")
            name = read(name_len, "tensor name").decode("utf-8", "replace")
            block_bytes, block = _GGML_TYPE_SIZES[kind]
            elements = int(np.prod(dims, dtype=np.int64))
            nbytes = elements // block * block_bytes
            offset = f.tell()
            if f.seek(nbytes, os.SEEK_CUR) > size:
                raise ModelError(f"{path}: truncated whisper.cpp model (tensor {name} needs "
                                 f"{nbytes} bytes at offset {offset}; the file has {size})")
            tensors[name] = TensorInfo(tuple(reversed(dims)), kind, offset)
    want = expected_shapes(hp)
    missing = sorted(set(want) - set(tensors))
    if missing:
        raise ModelError(f"{path}: incomplete whisper.cpp model, {len(missing)} tensors "
                         f"missing (e.g. {missing[0]})")
    unknown = sorted(set(tensors) - set(want))
    if unknown:
        raise ModelError(f"{path}: unknown tensor {unknown[0]} (whisper.cpp would refuse it)")
    wrong = sorted(n for n, t in tensors.items() if want[n] != t.shape)
    if wrong:
        raise ModelError(f"{path}: tensor {wrong[0]} has shape {list(tensors[wrong[0]].shape)}, "
                         f"whisper.cpp expects {list(want[wrong[0]])}")
    return GgmlInfo(hp, n_mel, n_fft, n_tokens, tensors)


# --- command line ------------------------------------------------------------------------

def convert_source(source: str, out_path: Path) -> Hparams:
    """Convert a model named in models.WHISPER_MODELS or a CTranslate2 directory."""
    from .models import whisper_model_sources

    return whisper_model_sources(source).convert(out_path)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import time

    parser = argparse.ArgumentParser(
        prog="ct2-to-ggml",
        description="Convert a CTranslate2 Whisper model into a whisper.cpp (ggml) model file.")
    parser.add_argument("source", help="a model name from an installed model package "
                        "(tiny.en, base) or a CTranslate2 Whisper model directory")
    parser.add_argument("output", type=Path, help="the ggml file to write (e.g. ggml-tiny.en.bin)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        hp = convert_source(args.source, args.output)
    except ModelError as exc:
        print(f"ct2-to-ggml: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ct2-to-ggml: {exc.filename or args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{args.output}: Whisper {hp.n_audio_layer}-layer "
          f"{'multilingual' if hp.multilingual else 'English-only'}, "
          f"{args.output.stat().st_size / 1e6:.1f} MB, {time.monotonic() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
