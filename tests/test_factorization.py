"""Audio factorizations (stems x segments, time segments) and lyric features."""
import inspect

import numpy as np
import pytest
import soundfile
from lime.lime_text import IndexedString, LimeTextExplainer

from reference import audio_component_names
from utils.config import STEMS
from utils.musiclime.factorization import SourceSeparationSegments, TimeSegments, segment_bounds
from utils.musiclime.lyric_features import LineFeatures, WordFeatures, text_features
from utils.musiclime.separation import HPSSSeparator, OracleSeparator

SR = 8_000
N = 16_003                          # not a multiple of 10: 3 trailing samples are dropped


def make_stems(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return {s: (0.1 * rng.standard_normal(n)).astype(np.float32) for s in STEMS}


def mix_of(stems):
    return sum(stems[s] for s in STEMS).astype(np.float32)


# ---------------------------------------------------------------- stems x segments
def test_components_follow_the_papers_order_and_spans():
    stems = make_stems()
    fac = SourceSeparationSegments(mix_of(stems), SR, stems=stems)
    assert fac.n_components == 40 and fac.names == audio_component_names(10)
    assert fac.length == 16_000 and fac.segment_length == 1_600
    c = fac.components[3 * 4 + 1]
    assert (c.name, c.stem, c.segment, c.start, c.end) == ("drums3", "drums", 3, 4_800, 6_400)
    assert c.start_seconds == pytest.approx(0.6) and c.end_seconds == pytest.approx(0.8)
    row = fac.components_matrix[13]
    np.testing.assert_array_equal(row[4_800:6_400], stems["drums"][4_800:6_400])
    assert not row[:4_800].any() and not row[6_400:].any()


def test_compose_all_reproduces_truncated_clip_and_none_is_silence():
    stems = make_stems()
    mix = mix_of(stems)
    fac = SourceSeparationSegments(mix, SR, stems=stems)
    out = fac.compose(np.stack([np.ones(40), np.zeros(40)]))
    assert out.shape == (2, 16_000) and out.dtype == np.float32
    assert np.max(np.abs(out[0] - mix[:16_000])) < 1e-5
    assert not out[1].any()
    np.testing.assert_array_equal(fac.waveform, mix[:16_000])
    assert fac.reconstruction_error < 1e-5


def test_compose_is_batched_and_linear():
    stems = make_stems()
    fac = SourceSeparationSegments(mix_of(stems), SR, stems=stems)
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 2, size=(7, 40))
    masks[2] = 0
    masks[2, 6] = 1                                                   # only bass1
    out = fac.compose(masks)
    for r in range(7):                                                # reference: per-row sum of components
        expected = sum(fac.components_matrix[i] for i in np.flatnonzero(masks[r])) + np.zeros(16_000, np.float32)
        assert np.max(np.abs(out[r] - expected)) < 1e-6
    np.testing.assert_array_equal(out[2, 1_600:3_200], stems["bass"][1_600:3_200])
    halves = fac.compose(np.full((1, 40), 0.5))
    assert np.max(np.abs(halves[0] - 0.5 * fac.waveform)) < 1e-6


def test_factorization_is_read_only():
    stems = make_stems()
    fac = SourceSeparationSegments(mix_of(stems), SR, stems=stems)
    with pytest.raises(ValueError):
        fac.components_matrix[0, 0] = 1.0
    with pytest.raises(ValueError):
        fac.stems["vocals"][0] = 1.0
    with pytest.raises(AttributeError):
        fac.components = ()


def test_with_separators(tmp_path):
    stems = make_stems()
    mix = mix_of(stems)
    (tmp_path / "stems" / "a").mkdir(parents=True)
    for s in STEMS:
        soundfile.write(str(tmp_path / "stems" / "a" / f"{s}.wav"), stems[s], SR, subtype="FLOAT")
    oracle = SourceSeparationSegments(mix, SR, OracleSeparator(tmp_path), track_id="a")
    np.testing.assert_array_equal(oracle.components_matrix[2, :1_600], stems["bass"][:1_600])
    assert oracle.separator_name == "oracle"
    hpss = SourceSeparationSegments(mix, SR, HPSSSeparator(), num_segments=4)
    assert hpss.names[:5] == ["vocals0", "drums0", "bass0", "other0", "vocals1"]
    assert np.max(np.abs(hpss.compose(np.ones((1, 16)))[0] - mix[:16_000])) < 1e-5


def test_residual_to_other_closes_the_gap_of_an_inexact_separator():
    stems = make_stems()
    mix = mix_of(stems)
    lossy = {s: 0.9 * w for s, w in stems.items()}                     # e.g. Open-Unmix's stems
    paper = SourceSeparationSegments(mix, SR, stems=lossy)
    assert paper.reconstruction_error > 0.01
    fixed = SourceSeparationSegments(mix, SR, stems=lossy, residual_to_other=True)
    assert fixed.reconstruction_error < 1e-5
    assert np.max(np.abs(fixed.compose(np.ones((1, 40)))[0] - mix[:16_000])) < 1e-5
    np.testing.assert_array_equal(fixed.stems["drums"], lossy["drums"][:16_000])


def test_time_segments():
    mix = mix_of(make_stems())
    fac = TimeSegments(mix, SR, num_segments=5)
    assert fac.names == [f"segment{k}" for k in range(5)]
    assert fac.length == 16_000 and fac.components[2].stem is None
    out = fac.compose(np.array([[1, 1, 1, 1, 1], [0, 0, 1, 0, 0]]))
    assert np.max(np.abs(out[0] - mix[:16_000])) < 1e-5
    np.testing.assert_array_equal(out[1, 6_400:9_600], mix[6_400:9_600])
    assert not out[1, :6_400].any() and not out[1, 9_600:].any()


@pytest.mark.parametrize("waveform, error, match", [
    (np.zeros(N, np.float32), ValueError, "silent"),
    (np.full(N, np.nan, np.float32), ValueError, "NaN or inf"),
    (np.r_[np.ones(10), np.inf].astype(np.float32), ValueError, "NaN or inf"),
    (np.ones((2, N), np.float32), ValueError, "stereo"),
    (np.ones(7, np.float32), ValueError, "fewer than num_segments=10"),
])
def test_bad_audio_is_refused(waveform, error, match):
    with pytest.raises(error, match=match):
        TimeSegments(waveform, SR)
    with pytest.raises(error, match=match):
        SourceSeparationSegments(waveform, SR, HPSSSeparator())


def test_bad_arguments_are_refused():
    stems = make_stems()
    mix = mix_of(stems)
    with pytest.raises(ValueError, match="exactly one of separator= or stems="):
        SourceSeparationSegments(mix, SR)
    with pytest.raises(ValueError, match="exactly one of separator= or stems="):
        SourceSeparationSegments(mix, SR, HPSSSeparator(), stems=stems)
    with pytest.raises(ValueError, match="expected exactly"):
        SourceSeparationSegments(mix, SR, stems={"vocals": mix})
    with pytest.raises(ValueError, match="stem 'bass' has shape"):
        SourceSeparationSegments(mix, SR, stems={**stems, "bass": stems["bass"][:-1]})
    with pytest.raises(ValueError, match="sample_rate"):
        TimeSegments(mix, -1)
    with pytest.raises(ValueError, match="num_segments must be >= 1"):
        segment_bounds(100, 0)
    fac = TimeSegments(mix, SR)
    with pytest.raises(ValueError, match="10 columns|expected 10"):
        fac.compose(np.ones((2, 9)))
    with pytest.raises(ValueError, match="2-D"):
        fac.compose(np.ones(10))


# ---------------------------------------------------------------- lyrics
LYRICS = "The fire burns, the FIRE!\nWe dance all night\n\nwe dance all night, don't stop"


def test_word_features_are_limes_indexed_string():
    assert inspect.signature(LimeTextExplainer).parameters["split_expression"].default == r"\W+"
    words = WordFeatures(LYRICS)
    reference = IndexedString(LYRICS, split_expression=r"\W+", bow=True)
    assert words.names == list(reference.inverse_vocab)
    assert words.names[:4] == ["The", "fire", "burns", "the"] and "don" in words.names and "t" in words.names
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 2, size=(20, words.n_features))
    masks[0] = 1
    texts = words.compose(masks)
    assert texts[0] == LYRICS
    for row, text in zip(masks, texts):
        assert text == reference.inverse_removing(np.flatnonzero(row == 0))


def test_removing_a_word_removes_every_occurrence():
    words = WordFeatures(LYRICS)
    mask = np.ones((1, words.n_features))
    mask[0, words.names.index("dance")] = 0
    (text,) = words.compose(mask)
    assert "dance" not in text and text.count("night") == 2
    assert text == "The fire burns, the FIRE!\nWe  all night\n\nwe  all night, don't stop"
    assert "".join(piece for piece, _ in words.spans()) == LYRICS
    assert {piece for piece, f in words.spans() if f == words.names.index("night")} == {"night"}


def test_line_features():
    lines = LineFeatures("chorus line\nverse one\n\nchorus line  \nverse two")
    assert lines.names == ["chorus line", "verse one", "verse two"]
    assert lines.compose(np.array([[0, 1, 1], [1, 1, 1]])) == ["verse one\n\nverse two",
                                                               "chorus line\nverse one\n\nchorus line  \nverse two"]
    assert "".join(p for p, _ in lines.spans()) == lines.lyrics
    assert isinstance(text_features("a b", "lines"), LineFeatures)
    with pytest.raises(ValueError, match="unit"):
        text_features("a b", "letters")


def test_text_masks_must_be_binary_and_lyrics_a_string():
    words = WordFeatures("one two three")
    with pytest.raises(ValueError, match="only 0 and 1"):
        words.compose(np.full((1, 3), 0.5))
    with pytest.raises(ValueError, match="expected 3"):
        words.compose(np.ones((1, 4)))
    with pytest.raises(TypeError, match="lyrics must be a str"):
        WordFeatures(None)
    assert WordFeatures("").n_features == 0


def test_the_paper_profile_explains_its_clip_at_44k(tmp_path):
    """paper: the song is read at 44.1 kHz, cut to 452250 samples, split into 10 segments of 45225
    samples (nothing dropped), and the linear-domain features of its perturbations fill all 1024
    frames and equal ast_features at 44.1 kHz."""
    from utils.config import get_profile
    from utils.dataset_related.features import ast_features
    from utils.musiclime.song import song_factorization
    from utils.musiclime.spectral import SpectralComposer

    profile, rate = get_profile("paper"), 44_100
    t = np.arange(int(11.0 * rate)) / rate
    rng = np.random.default_rng(0)
    stems = {"vocals": 0.2 * np.sin(2 * np.pi * 660 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0),
             "drums": 0.3 * rng.standard_normal(t.size) * np.exp(-(t % 0.5) / 0.03),
             "bass": 0.3 * np.sin(2 * np.pi * 55 * t), "other": 0.1 * np.sin(2 * np.pi * 12_000 * t)}
    (tmp_path / "stems" / "x").mkdir(parents=True)
    (tmp_path / "audio").mkdir()
    for stem, wave in stems.items():
        soundfile.write(str(tmp_path / "stems" / "x" / f"{stem}.wav"), wave.astype(np.float32), rate, subtype="FLOAT")
    soundfile.write(str(tmp_path / "audio" / "x.wav"), mix_of(stems), rate, subtype="FLOAT")
    fac = song_factorization(tmp_path, "x", profile, OracleSeparator(tmp_path))
    assert fac.sample_rate == rate and fac.length == profile.clip_length == 452_250
    assert fac.segment_length == 45_225 and fac.components[-1].end == fac.length
    assert fac.components[9 * 4 + 3].start_seconds == pytest.approx(9 * 45_225 / rate)
    np.testing.assert_array_equal(fac.stems["other"], stems["other"][: fac.length].astype(np.float32))
    masks = np.array([np.ones(40), np.arange(40) % 3 == 0, np.arange(40) // 4 == 9], dtype=np.float32)
    composer = SpectralComposer(fac.components_matrix, profile.audio, method="gram")
    assert composer.num_frames == profile.audio.max_length == 1024
    ours = composer(masks).numpy()
    assert np.abs(ours - ast_features(fac.compose(masks), profile.audio).numpy()).max() < 1e-3
