"""Audio helpers: G.711 u-law, RTP linear audio, resampling, WAV files."""

import os
import stat

import numpy as np
import pytest

from asterisk_agent.speech import audio


def test_ulaw_known_values():
    # G.711 reference codes: silence is 0xFF, full scale is 0x80 / 0x00
    pcm = np.array([0, 1, -1, 100, -100, 1000, -1000, 8000, -8000, 32767, -32768], np.int16)
    assert audio.ulaw_encode(pcm) == bytes(
        [0xFF, 0xFF, 0x7E, 0xF2, 0x72, 0xCE, 0x4E, 0xA0, 0x20, 0x80, 0x00])
    assert audio.ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]


def test_ulaw_decode_then_encode_is_identity_for_every_code():
    codes = bytes(range(256))
    back = audio.ulaw_encode(audio.ulaw_decode(codes))
    # 0x7F is "negative zero": it decodes to 0, which encodes as 0xFF
    assert [c for c, b in zip(codes, back) if c != b] == [0x7F]


def test_ulaw_round_trip_error_is_within_the_segment_step():
    pcm = np.arange(-32768, 32768, 7).astype(np.int16)
    back = audio.ulaw_decode(audio.ulaw_encode(pcm)).astype(np.int32)
    err = np.abs(back - pcm.astype(np.int32))
    # the widest u-law step is 1024 at full scale; near silence the step is 8
    assert err.max() <= 1024
    quiet = np.abs(pcm.astype(np.int32)) < 100
    assert err[quiet].max() <= 8


def test_ulaw_decode_gives_one_sample_per_byte():
    assert audio.ulaw_decode(b"\xff" * 160).shape == (160,)
    assert audio.ulaw_decode(b"").dtype == np.int16


def test_slin_is_big_endian():
    assert audio.slin_encode(np.array([1, -2], np.int16)) == b"\x00\x01\xff\xfe"
    assert audio.slin_decode(b"\x00\x01\xff\xfe").tolist() == [1, -2]
    assert audio.slin_decode(b"\x12\x34").dtype == np.int16


def test_slin_odd_length_is_a_clear_error():
    with pytest.raises(ValueError, match="odd length"):
        audio.slin_decode(b"\x00\x01\x02")


def test_encoders_reject_stereo_and_integer_types_they_cannot_take():
    with pytest.raises(ValueError, match="mono"):
        audio.ulaw_encode(np.zeros((10, 2), np.int16))
    with pytest.raises(ValueError, match="int16 or float"):
        audio.slin_encode(np.zeros(10, np.int64))


def test_float_conversion_clips_and_scales():
    assert audio.to_float(np.array([-32768, 0, 16384], np.int16)).tolist() == [-1.0, 0.0, 0.5]
    assert audio.from_float(np.array([2.0, -2.0, 0.5, np.nan])).tolist() == [32767, -32768, 16384, 0]


@pytest.mark.parametrize("src, dst", [(8000, 16000), (24000, 8000), (22050, 8000), (16000, 8000)])
def test_resample_length_and_dtype(src, dst):
    pcm = (np.sin(np.arange(src) * 2 * np.pi * 300 / src) * 10000).astype(np.int16)
    out = audio.resample(pcm, src, dst)
    assert out.dtype == np.int16
    assert abs(len(out) - dst) <= 1


def test_resample_keeps_a_tone_and_accepts_float():
    rate = 8000
    tone = np.sin(np.arange(rate) * 2 * np.pi * 440 / rate).astype(np.float32) * 0.5
    up = audio.resample(tone, rate, 16000)
    assert up.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(up))
    assert abs(np.argmax(spectrum) * 16000 / len(up) - 440) < 2


def test_resample_rejects_bad_rates():
    with pytest.raises(ValueError):
        audio.resample(np.zeros(10, np.int16), 0, 8000)


def test_wav_round_trip(tmp_path):
    pcm = (np.random.default_rng(1).standard_normal(8000) * 3000).astype(np.int16)
    path = tmp_path / "a.wav"
    audio.write_wav(path, pcm, 8000)
    back, rate = audio.read_wav(path)
    assert rate == 8000
    assert np.array_equal(back, pcm)
    # Asterisk runs as another user: the file must be readable by others
    assert os.stat(path).st_mode & stat.S_IROTH
    # nothing is left behind from the atomic write
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


def test_wav_write_replaces_an_existing_file_whole(tmp_path):
    path = tmp_path / "a.wav"
    audio.write_wav(path, np.ones(16000, np.int16), 8000)
    audio.write_wav(path, np.zeros(80, np.int16), 8000)
    assert len(audio.read_wav(path)[0]) == 80


def test_read_wav_garbage_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all")
    with pytest.raises(ValueError, match="bad.wav"):
        audio.read_wav(bad)


def test_parse_wav_bytes_with_streamed_header():
    # a program writing WAV to a pipe does not know the length: 0x7ffff... sizes
    pcm = np.array([1, -1, 300], np.int16)
    header = (b"RIFF" + b"\xff\xff\xff\x7f" + b"WAVE" + b"fmt " + (16).to_bytes(4, "little")
              + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
              + (22050).to_bytes(4, "little") + (44100).to_bytes(4, "little")
              + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
              + b"data" + b"\xff\xff\xff\x7f")
    back, rate = audio.parse_wav_bytes(header + pcm.astype("<i2").tobytes())
    assert rate == 22050 and back.tolist() == [1, -1, 300]
    with pytest.raises(ValueError):
        audio.parse_wav_bytes(b"RIFF....WAVEjunk")


def test_trim_silence_keeps_the_voice_and_a_margin():
    voice = (5000 * np.sin(np.arange(4000) / 3)).astype(np.int16)
    pcm = np.concatenate([np.zeros(2000, np.int16), voice, np.zeros(3000, np.int16)])
    trimmed = audio.trim_silence(pcm, 8000)
    assert len(voice) <= len(trimmed) <= len(voice) + 2 * 80 + 160
    assert audio.trim_silence(np.zeros(800, np.int16), 8000).size == 800  # nothing loud: left alone
    # a longer tail keeps that much silence after the voice
    assert len(audio.trim_silence(pcm, 8000, tail_ms=200)) >= len(voice) + 1600
