import dataclasses
import json

import numpy as np
import pytest
import torch

from utils.config import get_profile
from utils.dataset_related.splits import DataError, encode_labels, read_split
from utils.model_related import (build_model, load_model, load_splits, load_trained, make_datasets,
                                 model_fingerprint, predict_proba, prepare_tokens, save_model, train_model)
from utils.model_related.models import load_weights


@pytest.fixture(scope="module")
def setup(small_corpus, tmp_path_factory):
    profile = get_profile("tiny")
    run_dir = tmp_path_factory.mktemp("run")
    frames = load_splits(small_corpus)
    tokens = prepare_tokens(profile, small_corpus)
    return profile, small_corpus, frames, tokens, run_dir


def test_three_models_and_fusion_parts(setup):
    profile, corpus, frames, tokens, _ = setup
    data = make_datasets(frames, corpus, profile, "genre", "multimodal", tokens)["val"]
    batch = {k: torch.stack([data[i][k] for i in range(4)]) for k in data[0]}
    torch.manual_seed(0)
    fusion = build_model("multimodal", profile, 9, vocab_size=len(tokens.tokenizer)).eval()
    assert type(fusion.audio_encoder).__name__ == "ASTModel" and type(fusion.lyrics_encoder).__name__ == "RobertaModel"
    with torch.no_grad():
        logits = fusion(batch["input_values"], batch["input_ids"], batch["attention_mask"])
        audio = fusion.encode_audio(batch["input_values"])
        lyrics = fusion.encode_lyrics(batch["input_ids"], batch["attention_mask"])
        assert audio.shape == (4, profile.model.ast_hidden) and lyrics.shape == (4, profile.model.roberta_hidden)
        assert torch.allclose(fusion.classify(audio, lyrics), logits, atol=1e-6)
    assert fusion.head[0].normalized_shape == (profile.model.ast_hidden + profile.model.roberta_hidden,)
    lyrics_model = build_model("lyrics", profile, 9, vocab_size=len(tokens.tokenizer))
    audio_model = build_model("audio", profile, 9)
    assert type(lyrics_model.model).__name__ == "RobertaForSequenceClassification"
    assert type(audio_model.model).__name__ == "ASTForAudioClassification"
    with torch.no_grad():
        assert audio_model(input_values=batch["input_values"]).shape == (4, 9)
        assert lyrics_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).shape == (4, 9)


def test_save_load_roundtrip_and_wrong_shape(setup, tmp_path):
    profile, corpus, frames, tokens, _ = setup
    torch.manual_seed(1)
    model = build_model("audio", profile, 9).eval()
    save_model(model, tmp_path / "m", task="genre")
    loaded, description = load_model(tmp_path / "m")
    x = torch.randn(2, profile.audio.max_length, profile.audio.num_mel_bins)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert description["task"] == "genre"
    other = build_model("audio", profile, 7)
    with pytest.raises(ValueError, match=r"model.safetensors.*wrong shape"):
        load_weights(other, tmp_path / "m" / "model.safetensors")
    assert not list((tmp_path / "m").glob("*.part"))


def test_load_trained_and_fingerprint(setup, tmp_path):
    profile, *_ = setup
    torch.manual_seed(1)
    model = build_model("audio", profile, 9).eval()
    save_model(model, tmp_path / "runs" / "genre" / "audio" / "best")
    loaded = load_trained(tmp_path / "runs", "genre", "audio")
    assert not loaded.training
    assert model_fingerprint(loaded) == model_fingerprint(model)
    assert len(model_fingerprint(model)) == 64
    with torch.no_grad():
        next(loaded.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(loaded) != model_fingerprint(model)
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_trained(tmp_path / "runs", "genre", "lyrics")


def test_training_learns_and_resumes_identically(setup, tmp_path):
    profile, corpus, frames, tokens, _ = setup
    profile = dataclasses.replace(profile, train=dataclasses.replace(
        profile.train, patience=100, batch_size={"lyrics": 4, "audio": 4, "multimodal": 4}))
    data = make_datasets(frames, corpus, profile, "genre", "lyrics", tokens)

    def fresh():
        torch.manual_seed(0)
        return build_model("lyrics", profile, 9, vocab_size=len(tokens.tokenizer))

    straight = train_model(fresh(), data["train"], data["val"], profile, tmp_path / "a", epochs=6, progress=False)
    # "interrupted" after 3 of 6 epochs: a new call (new process, new model) resumes from the checkpoint
    train_model(fresh(), data["train"], data["val"], profile, tmp_path / "b", epochs=6, progress=False, stop_after=3)
    assert json.loads((tmp_path / "b" / "state.json").read_text())["epochs_done"] == 3
    (tmp_path / "b" / "optimizer.pt.part").write_bytes(b"half-written")  # a kill during the next save
    resumed = train_model(fresh(), data["train"], data["val"], profile, tmp_path / "b", epochs=6, progress=False)
    assert resumed["epochs_done"] == 6
    assert not list((tmp_path / "b").rglob("*.part"))  # the next save replaced the torn file
    a, _ = load_model(tmp_path / "a" / "last")
    b, _ = load_model(tmp_path / "b" / "last")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(pa, pb, atol=1e-6), name
    losses = [h["train_loss"] for h in straight["history"]]
    assert losses[-1] < losses[0]  # it moves downhill (accuracy is checked by the full run)
    probabilities, _ = predict_proba(a, data["test"])
    assert probabilities.shape == (len(data["test"]), 9) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def _write_split(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_bad_rows_name_the_id(tmp_path):
    good = {"id": "a1", "lyrics": "la la", "primary_short": "pop", "emotion": "Happy"}
    _write_split(tmp_path / "train.jsonl", [good, {**good, "id": "b2", "lyrics": "  "}])
    with pytest.raises(DataError, match="'b2'.*empty lyrics"):
        read_split(tmp_path, "train")
    frame = read_split(tmp_path, "train", skip_bad=True)
    assert list(frame["id"]) == ["a1"] and frame.attrs["skipped"] == [("b2", "empty lyrics")]
    _write_split(tmp_path / "val.jsonl", [good, {**good, "id": "c3", "primary_short": "polka"}])
    with pytest.raises(DataError, match="'c3'.*polka"):
        read_split(tmp_path, "val")
    _write_split(tmp_path / "test.jsonl", [good, good])
    with pytest.raises(DataError, match="duplicate id"):
        read_split(tmp_path, "test")
    with pytest.raises(DataError, match="'z'.*polka"):
        import pandas as pd
        encode_labels(pd.DataFrame({"id": ["z"], "primary_short": ["polka"]}), "genre")


def test_missing_audio_names_the_id(setup, tmp_path):
    profile, corpus, frames, tokens, _ = setup
    import pandas as pd
    from utils.dataset_related.extract import extract_features
    frame = pd.DataFrame({"id": ["nosuchsong"], "lyrics": ["x"], "primary_short": ["pop"], "emotion": ["Happy"]})
    (tmp_path / "audio").mkdir()
    with pytest.raises(FileNotFoundError, match="nosuchsong"):
        extract_features(tmp_path, frame["id"], profile, pad=False, skip_bad=False, show_progress=False)
