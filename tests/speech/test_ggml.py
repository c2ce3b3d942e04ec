"""The CTranslate2 -> whisper.cpp (ggml) converter.

Small models are written by CTranslate2's own writer (its WhisperSpec), so
the reader is checked against the real format; the shipped tiny.en and base
models are converted in full and compared tensor by tensor.
"""

import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from asterisk_agent.speech import ModelError, ggml, models

ROOT = Path(__file__).resolve().parents[2]

TINY_EN = ggml.Hparams(n_vocab=51864, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6,
                       n_audio_layer=4, n_text_ctx=448, n_text_state=384, n_text_head=6,
                       n_text_layer=4, n_mels=80, ftype=1)
BASE = ggml.Hparams(n_vocab=51865, n_audio_ctx=1500, n_audio_state=512, n_audio_head=8,
                    n_audio_layer=6, n_text_ctx=448, n_text_state=512, n_text_head=8,
                    n_text_layer=6, n_mels=80, ftype=1)


# --- a small Whisper-shaped model, written by CTranslate2 itself -----------------------

def _vocabulary(n_vocab: int) -> list[str]:
    """Byte-level tokens, <|endoftext|> where whisper.cpp expects it, then specials."""
    eot = 50256 + (n_vocab >= 51865)
    alphabet = list(ggml._byte_alphabet())
    tokens = alphabet + [f"Ġtok{i}" for i in range(len(alphabet), eot)]
    return tokens + ["<|endoftext|>"] + [f"<|special{i}|>" for i in range(n_vocab - eot - 1)]


def _set(spec, name: str, value) -> None:
    """Set a spec variable by its model.bin name (encoder/layer_0/ffn/linear_0/weight)."""
    obj = spec
    *path, attr = name.split("/")
    for part in path:
        # "layer_0" is either an attribute of that name or item 0 of a list "layer"
        m = re.fullmatch(r"(\w+)_(\d+)", part)
        if hasattr(obj, part) or not m:
            obj = getattr(obj, part)
        else:
            obj = getattr(obj, m.group(1))[int(m.group(2))]
    setattr(obj, attr, value)


def small_whisper(directory: Path, *, d: int = 16, heads: int = 2, enc_layers: int = 1,
                  dec_layers: int = 2, n_mels: int = 80, n_vocab: int = 51864,
                  dtype=np.float16, seed: int = 0) -> dict[str, np.ndarray]:
    """A random Whisper model in CTranslate2 format; returns the variables set."""
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(seed)
    spec = whisper_spec.WhisperSpec(enc_layers, heads, dec_layers, heads)
    values: dict[str, np.ndarray] = {}

    def put(name, shape, zero_rows=None):
        value = rng.standard_normal(shape).astype(dtype)
        if zero_rows is not None:
            value[zero_rows] = 0   # the key bias CTranslate2 fills with zeros
        values[name] = value
        _set(spec, name, value)

    def linear(prefix, out, inp, zero_rows=None):
        put(f"{prefix}/weight", (out, inp))
        put(f"{prefix}/bias", (out,), zero_rows)

    def norm(prefix):
        put(f"{prefix}/gamma", (d,))
        put(f"{prefix}/beta", (d,))

    put("encoder/conv1/weight", (d, n_mels, 3))
    put("encoder/conv1/bias", (d,))
    put("encoder/conv2/weight", (d, d, 3))
    put("encoder/conv2/bias", (d,))
    put("encoder/position_encodings/encodings", (1500, d))
    norm("encoder/layer_norm")
    for i in range(enc_layers):
        p = f"encoder/layer_{i}"
        norm(f"{p}/self_attention/layer_norm")
        linear(f"{p}/self_attention/linear_0", 3 * d, d, zero_rows=slice(d, 2 * d))
        linear(f"{p}/self_attention/linear_1", d, d)
        norm(f"{p}/ffn/layer_norm")
        linear(f"{p}/ffn/linear_0", 4 * d, d)
        linear(f"{p}/ffn/linear_1", d, 4 * d)
    put("decoder/embeddings/weight", (n_vocab, d))
    _set(spec, "decoder/projection/weight", values["decoder/embeddings/weight"])
    put("decoder/position_encodings/encodings", (448, d))
    norm("decoder/layer_norm")
    for i in range(dec_layers):
        p = f"decoder/layer_{i}"
        norm(f"{p}/self_attention/layer_norm")
        linear(f"{p}/self_attention/linear_0", 3 * d, d, zero_rows=slice(d, 2 * d))
        linear(f"{p}/self_attention/linear_1", d, d)
        norm(f"{p}/attention/layer_norm")
        linear(f"{p}/attention/linear_0", d, d)
        linear(f"{p}/attention/linear_1", 2 * d, d, zero_rows=slice(0, d))
        linear(f"{p}/attention/linear_2", d, d)
        norm(f"{p}/ffn/layer_norm")
        linear(f"{p}/ffn/linear_0", 4 * d, d)
        linear(f"{p}/ffn/linear_1", d, 4 * d)
    spec.register_vocabulary(_vocabulary(n_vocab))
    spec.validate()
    spec.optimize()   # what the CTranslate2 converter does: aliases the shared projection
    directory.mkdir(parents=True, exist_ok=True)
    spec.save(str(directory))
    return values


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("small") / "model"
    small_whisper(directory)
    return directory


def _tensor(path: Path, info: ggml.GgmlInfo, name: str) -> np.ndarray:
    t = info.tensors[name]
    dtype = "<f4" if t.kind == ggml.GGML_F32 else "<f2"
    count = int(np.prod(t.shape))
    return np.fromfile(path, dtype=dtype, count=count, offset=t.offset).reshape(t.shape)


# --- pure parts -------------------------------------------------------------------------

def test_mel_filters_match_whisper_front_end():
    """faster-whisper carries its own copy of Whisper's (librosa) filterbank."""
    from faster_whisper.feature_extractor import FeatureExtractor

    for n_mels in (80, 128):
        ours = ggml.mel_filters(n_mels)
        theirs = FeatureExtractor.get_mel_filters(16000, 400, n_mels)
        assert ours.shape == (n_mels, 201) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_mel_filters_are_triangles_of_equal_area():
    filters = ggml.mel_filters(80).astype(np.float64)
    assert (filters >= 0).all()
    # every band has energy and peaks in one place
    assert (filters.max(axis=1) > 0).all()
    # Slaney normalization: every triangle has an area (in Hz) of 1, up to
    # sampling it at 40 Hz bins (the lowest bands are narrower than a bin)
    area = filters.sum(axis=1) * (16000 / 2 / 200)
    np.testing.assert_allclose(area[5:], 1.0, rtol=0.1)
    assert abs(np.median(area) - 1.0) < 0.01


def test_byte_alphabet_is_gpt2_byte_level_bpe():
    alphabet = ggml._byte_alphabet()
    assert sorted(alphabet.values()) == list(range(256))
    assert alphabet["Ġ"] == ord(" ") and alphabet["Ċ"] == ord("\n") and alphabet["!"] == ord("!")
    assert alphabet["Ã"] == 0xC3


def test_token_bytes_decodes_and_stops_at_endoftext():
    vocab = _vocabulary(51864)
    vocab[300] = "ĠhÃ©llo"            # " héllo" as UTF-8 bytes
    tokens = ggml.token_bytes(vocab, TINY_EN)
    assert len(tokens) == 50256
    assert tokens[300] == " héllo".encode()
    assert tokens[ord("!") - 33] == b"!"


def test_token_bytes_refuses_a_vocabulary_that_is_not_whisper():
    vocab = _vocabulary(51864)
    with pytest.raises(ModelError, match="vocab.txt: 51863 tokens, but the model has 51864"):
        ggml.token_bytes(vocab[:-1], TINY_EN, "vocab.txt")
    with pytest.raises(ModelError, match="token 50256 is 'x', expected <\\|endoftext\\|>"):
        ggml.token_bytes(vocab[:50256] + ["x"] + vocab[50257:], TINY_EN, "vocab.txt")
    vocab[7] = "tab\there"
    with pytest.raises(ModelError, match="token 7 .* is not byte-level BPE"):
        ggml.token_bytes(vocab, TINY_EN, "vocab.txt")


def test_hparams_pack_in_whisper_cpp_order():
    packed = TINY_EN.pack()
    assert struct.unpack("<11i", packed) == (51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1)
    assert not TINY_EN.multilingual and BASE.multilingual


def test_expected_shapes_count_whisper_cpp_tensors():
    # whisper.cpp: 7 encoder tensors + 15 a layer, 4 decoder tensors + 24 a layer
    assert len(ggml.expected_shapes(TINY_EN)) == 7 + 15 * 4 + 4 + 24 * 4
    assert len(ggml.expected_shapes(BASE)) == 7 + 15 * 6 + 4 + 24 * 6


def test_element_types_follow_whisper_cpp_loader():
    assert ggml.ggml_type("decoder.blocks.0.attn.query.weight", 2, TINY_EN) == ggml.GGML_F16
    assert ggml.ggml_type("encoder.conv1.weight", 3, TINY_EN) == ggml.GGML_F16
    for name, ndim in (("encoder.conv1.bias", 2), ("encoder.positional_embedding", 2),
                       ("decoder.positional_embedding", 2), ("decoder.ln.weight", 1)):
        assert ggml.ggml_type(name, ndim, TINY_EN) == ggml.GGML_F32


# --- a small model written by CTranslate2 ---------------------------------------------------

def test_reads_what_ctranslate2_writes(small_dir):
    model = ggml.read_ctranslate2((small_dir / "model.bin").read_bytes(), "model.bin")
    assert model.spec == "WhisperSpec"
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert model.variables["encoder/conv1/weight"].shape == (16, 80, 3)
    assert model.variables["encoder/conv1/weight"].dtype == np.float16
    assert int(model.variables["encoder/num_heads"]) == 2


def test_hparams_are_derived_from_the_tensors(small_dir):
    model = ggml.read_ctranslate2((small_dir / "model.bin").read_bytes())
    assert ggml.hparams_of(model.variables) == ggml.Hparams(
        n_vocab=51864, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1,
        n_text_ctx=448, n_text_state=16, n_text_head=2, n_text_layer=2, n_mels=80, ftype=1)


def test_fused_attention_is_split_into_openai_tensors(tmp_path):
    values = small_whisper(tmp_path / "m", seed=3)
    model = ggml.read_ctranslate2((tmp_path / "m" / "model.bin").read_bytes())
    tensors = dict(ggml.openai_tensors(model.variables))
    qkv = values["decoder/layer_1/self_attention/linear_0/weight"]
    np.testing.assert_array_equal(tensors["decoder.blocks.1.attn.query.weight"], qkv[:16])
    np.testing.assert_array_equal(tensors["decoder.blocks.1.attn.key.weight"], qkv[16:32])
    np.testing.assert_array_equal(tensors["decoder.blocks.1.attn.value.weight"], qkv[32:])
    bias = values["decoder/layer_1/self_attention/linear_0/bias"]
    np.testing.assert_array_equal(tensors["decoder.blocks.1.attn.value.bias"], bias[32:])
    kv = values["decoder/layer_0/attention/linear_1/weight"]
    np.testing.assert_array_equal(tensors["decoder.blocks.0.cross_attn.key.weight"], kv[:16])
    np.testing.assert_array_equal(tensors["decoder.blocks.0.cross_attn.value.weight"], kv[16:])
    np.testing.assert_array_equal(tensors["decoder.blocks.0.cross_attn.query.weight"],
                                  values["decoder/layer_0/attention/linear_0/weight"])
    np.testing.assert_array_equal(tensors["encoder.blocks.0.mlp.2.weight"],
                                  values["encoder/layer_0/ffn/linear_1/weight"])
    np.testing.assert_array_equal(tensors["encoder.ln_post.bias"],
                                  values["encoder/layer_norm/beta"])
    assert tensors["encoder.conv2.bias"].shape == (16, 1)
    # no key biases: whisper.cpp has none to load
    assert not [n for n in tensors if ".key.bias" in n]
    assert {n: t.shape for n, t in tensors.items()} == ggml.expected_shapes(
        ggml.hparams_of(model.variables))


def test_a_key_bias_that_is_not_zero_is_refused(tmp_path):
    small_whisper(tmp_path / "m")
    model = ggml.read_ctranslate2(bytearray((tmp_path / "m" / "model.bin").read_bytes()))
    bias = model.variables["encoder/layer_0/self_attention/linear_0/bias"]
    np.copyto(bias, np.ones_like(bias))   # a writable view: bytearray input
    with pytest.raises(ModelError, match="key part of the fused bias is not zero"):
        list(ggml.openai_tensors(model.variables))


def test_small_model_converts_and_loads_in_whisper_cpp(small_dir, tmp_path):
    """Structure only: random weights, but whisper.cpp accepts every tensor."""
    out = tmp_path / "small.bin"
    ggml.convert((small_dir / "model.bin").read_bytes(), ggml.read_vocabulary(small_dir), out)
    info = ggml.inspect(out)
    assert info.hparams.n_text_layer == 2 and info.n_tokens == 50256
    from asterisk_agent.speech.whisper_cpp import WhisperCppTranscriber

    tr = WhisperCppTranscriber(str(out), beam_size=1)
    assert isinstance(tr.transcribe(np.zeros(8000, np.int16), 8000), str)


def test_float32_model_gives_an_f32_file(tmp_path):
    small_whisper(tmp_path / "m", dtype=np.float32)
    out = tmp_path / "f32.bin"
    hp = ggml.convert((tmp_path / "m" / "model.bin").read_bytes(),
                      ggml.read_vocabulary(tmp_path / "m"), out)
    assert hp.ftype == ggml.GGML_F32
    info = ggml.inspect(out)
    assert {t.kind for t in info.tensors.values()} == {ggml.GGML_F32}


# --- the shipped models, converted in full -----------------------------------------------

@pytest.fixture(scope="module")
def tiny_ggml(tmp_path_factory):
    out = tmp_path_factory.mktemp("ggml") / "tiny.en.bin"
    ggml.convert_source("tiny.en", out)
    return out


def test_tiny_en_converts_with_whisper_hparams(tiny_ggml):
    info = ggml.inspect(tiny_ggml)
    assert info.hparams == TINY_EN
    assert (info.n_mel, info.n_fft, info.n_tokens) == (80, 201, 50256)
    assert len(info.tensors) == 167
    # the size of the ggml-tiny.en.bin that whisper.cpp publishes, to within
    # its vocabulary file (theirs has a few bytes more from OpenAI's tiktoken)
    assert abs(tiny_ggml.stat().st_size - 77_704_715) < 100


def test_tiny_en_tensors_hold_the_ctranslate2_weights(tiny_ggml):
    src = models.whisper_model_sources("tiny.en")
    ct2 = ggml.read_ctranslate2(src.read_model_bin()).variables
    info = ggml.inspect(tiny_ggml)
    fused = ct2["encoder/layer_2/self_attention/linear_0/weight"]
    np.testing.assert_array_equal(_tensor(tiny_ggml, info, "encoder.blocks.2.attn.key.weight"),
                                  fused[384:768])
    np.testing.assert_array_equal(_tensor(tiny_ggml, info, "decoder.token_embedding.weight"),
                                  ct2["decoder/embeddings/weight"])
    np.testing.assert_array_equal(_tensor(tiny_ggml, info, "decoder.positional_embedding"),
                                  ct2["decoder/position_encodings/encodings"].astype(np.float32))
    np.testing.assert_allclose(_tensor(tiny_ggml, info, "encoder.conv1.bias")[:, 0],
                               ct2["encoder/conv1/bias"].astype(np.float32))


def test_conversion_is_deterministic(tiny_ggml, tmp_path):
    again = tmp_path / "again.bin"
    ggml.convert_source("tiny.en", again)
    assert again.read_bytes() == tiny_ggml.read_bytes()


def test_base_model_split_across_two_packages_converts(tmp_path):
    out = tmp_path / "base.bin"
    hp = ggml.convert_source("base", out)
    assert hp == BASE
    info = ggml.inspect(out)
    assert info.n_tokens == 50257 and len(info.tensors) == 245
    # the size of whisper.cpp's published ggml-base.bin
    assert out.stat().st_size == 147_951_465


# --- bad input: a clear error naming the file, and nothing left behind ----------------------

def _copy_tiny(tmp_path) -> Path:
    src = models.whisper_model_sources("tiny.en").directory
    dst = tmp_path / "tiny"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("keep", [3, 40, 5_000_000, 75_537_000])
def test_truncated_ctranslate2_model_is_named(tmp_path, keep):
    model_dir = _copy_tiny(tmp_path)
    model_bin = model_dir / "model.bin"
    with model_bin.open("r+b") as f:
        f.truncate(keep)
    out = tmp_path / "out.bin"
    with pytest.raises(ModelError, match=re.escape(str(model_bin)) + ".*truncated"):
        ggml.convert_source(str(model_dir), out)
    assert list(tmp_path.glob("*.bin")) == [] and not list(tmp_path.glob(".out.bin.*"))


def test_garbage_is_not_a_ctranslate2_model(tmp_path):
    model_dir = _copy_tiny(tmp_path)
    (model_dir / "model.bin").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(ModelError, match=re.escape(str(model_dir / "model.bin"))):
        ggml.convert_source(str(model_dir), tmp_path / "out.bin")


def test_split_parts_in_the_wrong_order_are_refused():
    src = models.whisper_model_sources("base")
    swapped = b"".join(p.read_bytes() for p in reversed(src.model_parts))
    with pytest.raises(ModelError, match="not a CTranslate2 model"):
        ggml.read_ctranslate2(swapped, "base")


def test_another_ctranslate2_model_is_not_whisper(tmp_path):
    # a well-formed CTranslate2 file (no variables, no aliases) of another spec
    model_dir = tmp_path / "lm"
    model_dir.mkdir()
    name = b"TransformerSpec\x00"
    (model_dir / "model.bin").write_bytes(
        struct.pack("<IH", 6, len(name)) + name + struct.pack("<III", 1, 0, 0))
    (model_dir / "vocabulary.txt").write_text("a\nb\n")
    with pytest.raises(ModelError, match="TransformerSpec model, not Whisper"):
        ggml.convert_source(str(model_dir), tmp_path / "out.bin")


def test_missing_vocabulary_is_named(tmp_path):
    model_dir = _copy_tiny(tmp_path)
    (model_dir / "vocabulary.txt").unlink()
    with pytest.raises(ModelError, match=re.escape(str(model_dir / "vocabulary.txt"))):
        ggml.convert_source(str(model_dir), tmp_path / "out.bin")


@pytest.mark.parametrize("keep", [2, 30, 1000, 300_000, 77_000_000])
def test_truncated_ggml_file_is_named(tiny_ggml, tmp_path, keep):
    short = tmp_path / "short.bin"
    short.write_bytes(tiny_ggml.read_bytes()[:keep])
    with pytest.raises(ModelError, match=re.escape(str(short)) + ".*(truncated|incomplete)"):
        ggml.inspect(short)


def test_a_ggml_file_for_another_program_is_refused(tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"GGUF" + bytes(200))
    with pytest.raises(ModelError, match="not a whisper.cpp ggml model"):
        ggml.inspect(other)


# --- the command line -----------------------------------------------------------------------

def test_command_line_converts_a_named_model(tmp_path):
    out = tmp_path / "tiny.bin"
    run = subprocess.run([str(ROOT / "tools" / "ct2-to-ggml"), "tiny.en", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "English-only" in run.stdout
    assert ggml.inspect(out).hparams == TINY_EN


def test_command_line_reports_bad_input_and_fails(tmp_path):
    run = subprocess.run([str(ROOT / "tools" / "ct2-to-ggml"), str(tmp_path / "nothing"),
                          str(tmp_path / "out.bin")], capture_output=True, text=True)
    assert run.returncode == 1
    assert "no such Whisper model" in run.stderr and "Traceback" not in run.stderr
