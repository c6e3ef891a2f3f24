import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from reference import Hostile
import torch
from safetensors.torch import load_file, save_file

from utils.config import EMOTIONS, GENRES, get_profile
from utils.dataset_related.splits import DataError, encode_labels, read_split
from utils.model_related import (build_model, load_model, load_splits, load_trained, make_datasets,
                                 model_fingerprint, predict_proba, prepare_tokens, save_model, train_model)
from utils.model_related.models import ModelMismatchError, load_weights
from utils.musiclime.predict import load_predictor


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
    save_model(model, tmp_path / "runs" / "genre" / "audio" / "best", task="genre")
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
    assert json.loads((tmp_path / "b" / "last" / "state.json").read_text())["epochs_done"] == 3
    (tmp_path / "b" / "last.new").mkdir()                             # a kill during the next save
    (tmp_path / "b" / "last.new" / "optimizer.pt.part").write_bytes(b"half-written")
    resumed = train_model(fresh(), data["train"], data["val"], profile, tmp_path / "b", epochs=6, progress=False)
    assert resumed["epochs_done"] == 6 and resumed["history"] == straight["history"]
    assert not list((tmp_path / "b").rglob("*.part")) and not (tmp_path / "b" / "last.new").exists()
    a, _ = load_model(tmp_path / "a" / "last")
    b, _ = load_model(tmp_path / "b" / "last")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    losses = [h["train_loss"] for h in straight["history"]]
    assert losses[-1] < losses[0]  # it moves downhill (accuracy is checked by the full run)
    probabilities, _ = predict_proba(a, data["test"])
    assert probabilities.shape == (len(data["test"]), 9) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


# ---------------------------------------------------------------- the wrong model, crashes, other settings
def test_loading_refuses_a_model_of_another_task_kind_profile_or_classes(setup, tmp_path):
    profile, corpus, _, tokens, _ = setup
    run = tmp_path / "runs"
    torch.manual_seed(0)
    emotion = build_model("multimodal", profile, len(EMOTIONS), vocab_size=len(tokens.tokenizer))
    # an emotion model copied where the genre model belongs: both tasks have 9 classes, so the shapes fit
    save_model(emotion, run / "genre" / "multimodal" / "best", task="emotion", class_names=list(EMOTIONS),
               profile="tiny")
    where = str(run / "genre" / "multimodal" / "best" / "model.json")
    with pytest.raises(ModelMismatchError, match=r"model\.json: the saved model says task='emotion', but "
                                                 r"task='genre' was expected") as caught:
        load_trained(run, "genre", "multimodal")
    assert where in str(caught.value) and caught.value.field == "task"
    with pytest.raises(ModelMismatchError, match="task='emotion'"):             # the global run's loader
        load_predictor(run, "genre", "multimodal", profile, corpus, device="cpu")
    _, description = load_model(run / "genre" / "multimodal" / "best", task="emotion", class_names=EMOTIONS)
    assert description["task"] == "emotion"                                       # the right expectation passes
    audio = build_model("audio", profile, len(GENRES))
    save_model(audio, run / "genre" / "lyrics" / "best", task="genre", class_names=list(GENRES), profile="tiny")
    with pytest.raises(ModelMismatchError, match=r"model\.json.*kind='audio'.*kind='lyrics'"):
        load_trained(run, "genre", "lyrics")
    save_model(audio, run / "genre" / "audio" / "best", task="genre", class_names=list(GENRES), profile="tiny")
    assert not load_trained(run, "genre", "audio", profile="tiny").training
    with pytest.raises(ModelMismatchError, match=r"model\.json.*profile='tiny'.*profile='paper'"):
        load_trained(run, "genre", "audio", profile="paper")
    save_model(audio, run / "genre" / "audio" / "best", task="genre", class_names=sorted(GENRES, reverse=True))
    with pytest.raises(ModelMismatchError, match=r"model\.json.*class_names="):
        load_trained(run, "genre", "audio")
    save_model(audio, run / "genre" / "audio" / "best")
    with pytest.raises(ModelMismatchError, match=r"model\.json: the saved model names no task"):
        load_trained(run, "genre", "audio")


@pytest.fixture(scope="module")
def small_training(setup, tmp_path_factory):
    """A quick lyrics run (8 songs per split, batch 4): profile, datasets, a model factory, one finished epoch."""
    profile, corpus, frames, tokens, _ = setup
    profile = dataclasses.replace(profile, train=dataclasses.replace(
        profile.train, patience=100, batch_size={"lyrics": 4, "audio": 4, "multimodal": 4}))
    data = make_datasets({split: frame.head(8) for split, frame in frames.items()}, corpus, profile, "genre",
                         "lyrics", tokens)

    def fresh():
        torch.manual_seed(0)
        return build_model("lyrics", profile, 9, vocab_size=len(tokens.tokenizer))

    one_epoch = tmp_path_factory.mktemp("one_epoch") / "run"
    train_model(fresh(), data["train"], data["val"], profile, one_epoch, epochs=2, progress=False, stop_after=1,
                extra={"task": "genre"})
    return profile, data, fresh, one_epoch


def _train(small_training, out_dir, **options):
    profile, data, fresh, _ = small_training
    options = {"epochs": 2, "progress": False, "extra": {"task": "genre"}, **options}
    return train_model(fresh(), data["train"], data["val"], options.pop("profile", profile), out_dir, **options)


def _tensors(path):
    return load_file(str(path))


def test_a_crash_at_any_write_resumes_bit_identically(small_training, tmp_path, monkeypatch):
    straight = _train(small_training, tmp_path / "straight")
    crashed = tmp_path / "crashed"
    shutil.copytree(small_training[3], crashed)
    snapshots, real_replace = [], os.replace

    def snapshot():                       # the folder as a kill at this instant would leave it
        snapshots.append(shutil.copytree(crashed, tmp_path / f"kill{len(snapshots)}"))

    def replace_with_snapshots(source, target):
        snapshot()
        real_replace(source, target)
        snapshot()

    monkeypatch.setattr(os, "replace", replace_with_snapshots)
    _train(small_training, crashed)       # epoch 2, with a snapshot before and after every rename
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(snapshots) >= 8            # weights, model.json, optimizer, state, the folder swap
    expected = {name: _tensors(tmp_path / "straight" / name / "model.safetensors") for name in ("last", "best")}
    differing = []                        # (kill point, folder, largest weight difference or the history)
    for killed in snapshots:
        resumed = _train(small_training, killed)
        if resumed["history"] != straight["history"]:
            differing.append((killed.name, "history"))
        for name, tensors in expected.items():
            got = _tensors(killed / name / "model.safetensors")
            if not all(torch.equal(tensors[key], got[key]) for key in tensors):
                differing.append((killed.name, name, max((tensors[k] - got[k]).abs().max().item() for k in tensors)))
    assert differing == []
    for killed in snapshots:              # no half-written or replaced folder is left behind
        assert sorted(p.name for p in killed.iterdir()) == ["best", "last"], killed.name


@pytest.mark.parametrize("change, named", [
    ({"seed": 1}, "seed: checkpoint 0, now 1"),
    ({"epochs": 3}, "epochs: checkpoint 2, now 3"),
    ({"extra": {"task": "emotion"}}, "extra.task: checkpoint 'genre', now 'emotion'"),
    ("learning_rate", "learning_rate: checkpoint 0.001, now 0.002"),
    ("batch_size", "batch_size: checkpoint 4, now 2"),
])
def test_resuming_with_other_settings_is_refused(small_training, tmp_path, change, named):
    run = shutil.copytree(small_training[3], tmp_path / "run")
    before = (run / "last" / "model.safetensors").read_bytes()
    profile = small_training[0]
    if change == "learning_rate":
        change = {"profile": dataclasses.replace(profile, train=dataclasses.replace(
            profile.train, learning_rate={**profile.train.learning_rate, "lyrics": 2e-3}))}
    elif change == "batch_size":
        change = {"profile": dataclasses.replace(profile, train=dataclasses.replace(
            profile.train, batch_size={**profile.train.batch_size, "lyrics": 2}))}
    with pytest.raises(ValueError, match="other settings") as caught:
        _train(small_training, run, **change)
    assert named in str(caught.value) and str(run / "last" / "state.json") in str(caught.value)
    assert (run / "last" / "model.safetensors").read_bytes() == before       # nothing trained, nothing written


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, file", [
    ("truncate", "last/model.safetensors"), ("garbage", "last/model.json"), ("truncate", "last/optimizer.pt"),
    ("hostile", "last/optimizer.pt"), ("truncate", "last/state.json"), ("garbage", "last/state.json"),
])
def test_a_corrupt_checkpoint_file_is_named(small_training, tmp_path, damage, file):
    run = shutil.copytree(small_training[3], tmp_path / "run")
    path = run / file
    marker = tmp_path / "hostile-code-ran"
    if damage == "truncate":
        _truncate(path)
    elif damage == "garbage":
        path.write_text("[1, 2")
    else:
        torch.save({"optimizer": Hostile(marker), "scheduler": {}}, path)
    with pytest.raises((ValueError, OSError)) as caught:
        _train(small_training, run)
    assert str(path) in str(caught.value), caught.value
    assert not marker.exists()


@pytest.mark.parametrize("file", ["model.safetensors", "model.json", "config.json"])
def test_a_corrupt_saved_model_is_named(small_training, tmp_path, file):
    best = shutil.copytree(small_training[3] / "best", tmp_path / "best")
    _truncate(best / file)
    with pytest.raises(ValueError) as caught:
        load_model(best)
    assert str(best / file) in str(caught.value), caught.value


def test_a_run_saved_in_the_earlier_layout_resumes_bit_identically(small_training, tmp_path):
    """``last/`` and ``best/`` as written before config.json (wrapper key names, no config.json)."""
    straight = _train(small_training, tmp_path / "straight")
    run = shutil.copytree(small_training[3], tmp_path / "earlier")
    for name in ("last", "best"):
        tensors = _tensors(run / name / "model.safetensors")
        save_file({f"model.{key}": value for key, value in tensors.items()}, str(run / name / "model.safetensors"))
        (run / name / "config.json").unlink()
    resumed = _train(small_training, run)
    assert resumed["history"] == straight["history"]
    for name in ("last", "best"):               # best/ keeps the earlier layout unless epoch 2 improved on it
        expected = _tensors(tmp_path / "straight" / name / "model.safetensors")
        got = {key.removeprefix("model."): value for key, value in _tensors(run / name / "model.safetensors").items()}
        assert sorted(got) == sorted(expected) and all(torch.equal(expected[k], got[k]) for k in expected), name
    assert (run / "last" / "config.json").is_file()              # saved again, in the new layout


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


def test_a_model_trained_at_another_rate_is_refused(tmp_path):
    """paper (44.1 kHz) and paper16k make spectrograms of the same shape: model.json's sample_rate tells them apart."""
    from utils.model_related.models import check_profile_fits

    path = tmp_path / "model.json"
    description = {"kind": "audio", "config": {"num_mel_bins": 128}, "sample_rate": 16_000}
    check_profile_fits(description, "paper16k", path)
    with pytest.raises(ValueError, match=r"model\.json: .*16000 Hz audio, the 'paper' profile makes them at 44100 Hz"):
        check_profile_fits(description, "paper", path)
    check_profile_fits({**description, "sample_rate": 44_100}, "paper", path)
    check_profile_fits({"kind": "lyrics", "config": {}, "sample_rate": 16_000}, "paper", path)   # no audio input
    check_profile_fits({"kind": "audio", "config": {"num_mel_bins": 128}}, "paper", path)        # not recorded


def test_early_stopping_counts_epochs_without_a_new_best_accuracy_or_loss():
    from utils.model_related.train import epoch_verdict

    state = {"best_accuracy": -1.0, "best_loss": float("inf"), "bad_epochs": 0, "history": []}
    verdicts = []
    # accuracy, loss per epoch: a plateau in accuracy while the loss still falls resets the count
    for accuracy, loss in [(0.2, 2.0), (0.2, 1.9), (0.1, 1.8), (0.1, 1.85), (0.15, 1.9), (0.3, 1.95), (0.3, 1.95)]:
        improved, bad = epoch_verdict(state, accuracy, loss)
        verdicts.append((improved, bad))
        state["history"].append({"val_accuracy": accuracy, "val_loss": loss})
        state["bad_epochs"] = bad
        if improved:
            state.update(best_accuracy=accuracy, best_loss=loss)
    assert verdicts == [(True, 0), (True, 0), (False, 0), (False, 1), (False, 2), (True, 0), (False, 1)]
