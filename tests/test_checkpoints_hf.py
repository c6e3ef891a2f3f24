"""Checkpoints: the authors' files load and predict as their models do; ours follow Hugging Face
conventions (``save_pretrained`` / ``from_pretrained``); folders of the earlier layout still load
and convert.

The authors' modules are re-created here from the structure their files record (tiny configs of
the tiny profile instead of ``roberta-large`` and the AudioSet AST), their state dicts saved in
their exact layout -- including the key names of the ``transformers`` 4.x they ran, which 5.x
renamed in memory for the AST -- loaded through ours and run side by side.
"""
from __future__ import annotations

import json
import re

import pytest
from reference import Hostile
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from utils.config import GENRES, get_profile
from utils.model_related.authors import AUTHORS_KEY_MAP, load_authors_checkpoint
from utils.model_related.convert import main as convert_main
from utils.model_related.models import (_ast_config, _roberta_config, build_model, load_model, load_trained,
                                        load_weights, model_fingerprint, read_model_json, save_model)

PROFILE = get_profile("tiny")
VOCAB = 120
BATCH = 3


# ---------------------------------------------------------------- the authors' modules, re-created
class TheirHead(nn.Module):
    """Their ``classifier``: ``layer_norm`` then ``fc`` on the concatenated features."""

    def __init__(self, width: int, num_labels: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, num_labels)

    def forward(self, features):
        return self.fc(self.layer_norm(features))


class TheirFusion(nn.Module):
    """Their multimodal model: ``audio_model`` (ASTModel), ``text_model`` (RobertaModel), ``classifier``."""

    def __init__(self, audio_config, text_config, num_labels: int):
        from transformers import ASTModel, RobertaModel

        super().__init__()
        self.audio_model = ASTModel(audio_config)
        self.text_model = RobertaModel(text_config)
        self.classifier = TheirHead(audio_config.hidden_size + text_config.hidden_size, num_labels)

    def forward(self, input_values, input_ids, attention_mask):
        pooled_audio = self.audio_model(input_values=input_values)[1]
        first_token = self.text_model(input_ids=input_ids, attention_mask=attention_mask)[0][:, 0]
        return self.classifier(torch.cat((pooled_audio, first_token), dim=1))


def _theirs(kind: str, num_labels: int = 9) -> nn.Module:
    """Their ``kind`` model with distinctive weights (every tensor perturbed, LayerNorms included)."""
    from transformers import ASTForAudioClassification, RobertaForSequenceClassification

    torch.manual_seed(5)
    if kind == "lyrics":
        model = RobertaForSequenceClassification(_roberta_config(PROFILE, VOCAB, num_labels))
    elif kind == "audio":
        model = ASTForAudioClassification(_ast_config(PROFILE, num_labels))
    else:
        model = TheirFusion(_ast_config(PROFILE), _roberta_config(PROFILE, VOCAB), num_labels)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


AST_4X_RENAMES = ((r"\blayers\.(\d+)\.", r"encoder.layer.\1."), (r"attention\.q_proj", "attention.attention.query"),
                  (r"attention\.k_proj", "attention.attention.key"), (r"attention\.v_proj", "attention.attention.value"),
                  (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
                  (r"mlp\.fc2", "output.dense"))
"""transformers 5 in-memory AST names -> the 4.x names (``ASTSelfAttention.query`` ...) their files hold."""
AST_4X_LAYER_KEYS = sorted(f"encoder.layer.0.{name}.{p}" for p in ("weight", "bias") for name in (
    "attention.attention.query", "attention.attention.key", "attention.attention.value", "attention.output.dense",
    "intermediate.dense", "output.dense", "layernorm_before", "layernorm_after"))
"""Layer 0 of a 4.x ``ASTModel`` state dict, written out."""


def _their_state(model: nn.Module) -> dict:
    """``model.state_dict()`` as transformers 4.x names it (identity under 4.x itself)."""
    state = {}
    for key, value in model.state_dict().items():
        for pattern, replacement in AST_4X_RENAMES:
            if key.startswith(("audio_model.", "audio_spectrogram_transformer.")):
                key = re.sub(pattern, replacement, key)
        state[key] = value
    return state


def _batch() -> dict:
    generator = torch.Generator().manual_seed(11)
    ids = torch.randint(3, VOCAB, (BATCH, 24), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 15:], mask[2, 7:] = 0, 0
    ids[mask == 0] = 1                                            # RoBERTa's pad token
    return {"input_values": torch.randn(BATCH, PROFILE.audio.max_length, PROFILE.audio.num_mel_bins,
                                        generator=generator), "input_ids": ids, "attention_mask": mask}


def _their_logits(kind: str, model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        if kind == "lyrics":
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        if kind == "audio":
            return model(batch["input_values"]).logits
        return model(batch["input_values"], batch["input_ids"], batch["attention_mask"])


def _our_logits(kind: str, model: nn.Module, batch: dict) -> torch.Tensor:
    keys = {"lyrics": ("input_ids", "attention_mask"), "audio": ("input_values",)}.get(kind, tuple(batch))
    with torch.no_grad():
        return model(**{key: batch[key] for key in keys})


def _save_theirs(kind: str, model: nn.Module, path, *, extra_keys: dict | None = None):
    """``torch.save`` as their code does: the state dict, or for multimodal a dict around it."""
    state = {**_their_state(model), **(extra_keys or {})}
    torch.save({"epoch": 3, "model_state_dict": state} if kind == "multimodal" else state, path)
    return path


# ---------------------------------------------------------------- the authors' checkpoints
@pytest.mark.parametrize("kind", ["lyrics", "audio", "multimodal"])
def test_the_authors_checkpoints_predict_as_their_models(kind, tmp_path):
    theirs = _theirs(kind)
    # transformers before 4.31 saved RoBERTa's position ids; such a file loads too
    legacy = {"roberta.embeddings.position_ids": torch.arange(PROFILE.model.max_tokens + 2)[None]}
    path = _save_theirs(kind, theirs, tmp_path / f"genre_{kind}", extra_keys=legacy if kind == "lyrics" else None)
    rng_before = torch.random.get_rng_state()
    ours = load_authors_checkpoint(path, kind, PROFILE)
    assert torch.equal(torch.random.get_rng_state(), rng_before)      # loading draws no random numbers
    batch = _batch()
    expected, got = _their_logits(kind, theirs, batch), _our_logits(kind, ours, batch)
    difference = (expected - got).abs().max().item()
    print(f"\n[authors' {kind} checkpoint] max |their logits - ours| = {difference:.3g}")      # shown with -s
    assert got.shape == (BATCH, 9) and difference < 1e-6
    if kind == "multimodal":                     # the parts MusicLIME calls separately agree too
        with torch.no_grad():
            parts = ours.classify(ours.encode_audio(batch["input_values"]),
                                  ours.encode_lyrics(batch["input_ids"], batch["attention_mask"]))
        assert torch.equal(parts, got)
    # imported with the command line, the model is one of ours: load_trained finds it, same numbers
    run = tmp_path / "runs"
    assert convert_main(["authors", str(path), "--kind", kind, "--task", "genre", "--profile", "tiny",
                         "--out", str(run / "genre" / kind / "best")]) == 0
    loaded = load_trained(run, "genre", kind, profile="tiny")
    assert torch.equal(_our_logits(kind, loaded, batch), got)
    assert read_model_json(run / "genre" / kind / "best")["class_names"] == list(GENRES)


def test_the_key_map_covers_every_key_of_their_modules():
    for kind in AUTHORS_KEY_MAP:
        keys = _their_state(_theirs(kind))
        prefixes = [theirs for theirs, _ in AUTHORS_KEY_MAP[kind]]
        assert all(any(key.startswith(prefix) for prefix in prefixes) for key in keys), kind
        if kind != "lyrics":                          # the AST part is in the 4.x names, as in their files
            prefix = "audio_model." if kind == "multimodal" else "audio_spectrogram_transformer."
            layer = sorted(k[len(prefix):] for k in keys if k.startswith(prefix + "encoder.layer.0."))
            assert layer == AST_4X_LAYER_KEYS, kind


def test_a_checkpoint_with_missing_or_unexpected_keys_is_refused_with_the_keys(tmp_path):
    theirs = _theirs("multimodal")
    state = _their_state(theirs)
    del state["classifier.layer_norm.bias"]
    state["text_model.pooler.dense.weight2"] = state["text_model.pooler.dense.weight"]
    state["extra_head.weight"] = torch.zeros(2)
    torch.save({"model_state_dict": state}, tmp_path / "renamed")
    with pytest.raises(ValueError) as caught:
        load_authors_checkpoint(tmp_path / "renamed", "multimodal", PROFILE)
    message = str(caught.value)
    assert str(tmp_path / "renamed") in message
    assert "missing (1): ['head.0.bias']" in message
    assert "unexpected (1): ['lyrics_encoder.pooler.dense.weight2']" in message
    assert "under none of the mapped prefixes (1): ['extra_head.weight']" in message


def test_a_file_that_is_not_a_state_dict_is_named(tmp_path):
    marker = tmp_path / "hostile-code-ran"
    cases = {"list": ([1, 2, 3], "lyrics", "not a state dict"),
             "plain-state-dict": (_their_state(_theirs("lyrics")), "multimodal", "'model_state_dict'"),
             "no-tensors": ({"model_state_dict": {"a": 1}}, "multimodal", "not a state dict"),
             "hostile": ({"model_state_dict": Hostile(marker)}, "multimodal", "weights_only")}
    for name, (content, kind, expected) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(ValueError, match=expected) as caught:
            load_authors_checkpoint(tmp_path / name, kind, PROFILE)
        assert str(tmp_path / name) in str(caught.value), name
    (tmp_path / "garbage").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint") as caught:
        load_authors_checkpoint(tmp_path / "garbage", "audio", PROFILE)
    assert str(tmp_path / "garbage") in str(caught.value)
    assert not marker.exists()
    assert convert_main(["authors", str(tmp_path / "garbage"), "--kind", "audio", "--task", "genre",
                         "--profile", "tiny", "--out", str(tmp_path / "out")]) == 1


# ---------------------------------------------------------------- our checkpoints: Hugging Face layout
def test_the_fusion_model_is_built_as_before():
    """Same weights and same random draws as the head built by hand after the two encoders."""
    from transformers import ASTModel, RobertaModel

    torch.manual_seed(0)
    built = build_model("multimodal", PROFILE, 9, vocab_size=VOCAB)
    after_built = torch.rand(3)
    torch.manual_seed(0)
    audio, lyrics = ASTModel(_ast_config(PROFILE)), RobertaModel(_roberta_config(PROFILE, VOCAB))
    width = audio.config.hidden_size + lyrics.config.hidden_size
    head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 9))
    after_by_hand = torch.rand(3)
    by_hand = {**{f"audio_encoder.{k}": v for k, v in audio.state_dict().items()},
               **{f"lyrics_encoder.{k}": v for k, v in lyrics.state_dict().items()},
               **{f"head.{k}": v for k, v in head.state_dict().items()}}
    state = built.state_dict()
    assert sorted(state) == sorted(by_hand) and all(torch.equal(state[k], by_hand[k]) for k in state)
    assert torch.equal(after_built, after_by_hand)
    assert built.audio_encoder.config._attn_implementation == audio.config._attn_implementation


def test_saved_models_load_with_one_from_pretrained_call(tmp_path):
    from transformers import ASTForAudioClassification, RobertaForSequenceClassification

    from utils.model_related.fusion import FusionClassifier

    batch = _batch()
    classes = {"lyrics": RobertaForSequenceClassification, "audio": ASTForAudioClassification,
               "multimodal": FusionClassifier}
    for kind, hf_class in classes.items():
        torch.manual_seed(1)
        model = build_model(kind, PROFILE, 9, vocab_size=VOCAB).eval()
        folder = save_model(model, tmp_path / kind, task="genre", class_names=list(GENRES), profile="tiny")
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.json", "model.safetensors"]
        loaded = hf_class.from_pretrained(folder)
        assert [loaded.config.id2label[i] for i in range(9)] == list(GENRES)
        expected = _our_logits(kind, model, batch)
        with torch.no_grad():
            got = _our_logits(kind, loaded, batch) if kind == "multimodal" else \
                _their_logits(kind, loaded.eval(), batch)
        assert torch.equal(got, expected), kind
        ours, description = load_model(folder, task="genre", kind=kind, profile="tiny")
        assert model_fingerprint(ours) == model_fingerprint(model)
        assert description["class_names"] == list(GENRES)
        if kind != "multimodal":                      # our wrappers save and load as the model they wrap
            wrapper = type(model)
            model.save_pretrained(tmp_path / f"{kind}-plain")
            again = wrapper.from_pretrained(tmp_path / f"{kind}-plain").eval()
            assert type(again) is wrapper and torch.equal(_our_logits(kind, again, batch), expected)
        torch.manual_seed(3)                          # resuming training loads into a live model
        live = build_model(kind, PROFILE, 9, vocab_size=VOCAB)
        assert model_fingerprint(load_weights(live, folder / "model.safetensors")) == model_fingerprint(model)
    # a config.json of another model type is refused, naming it
    (tmp_path / "lyrics" / "config.json").write_bytes((tmp_path / "audio" / "config.json").read_bytes())
    with pytest.raises(ValueError, match=r"lyrics/config\.json: the config of a 'audio-spectrogram-transformer'"):
        load_model(tmp_path / "lyrics")


# ---------------------------------------------------------------- the earlier layout
def _write_earlier_layout(model: nn.Module, folder, **extra):
    """What ``save_model`` wrote before this change: wrapper-keyed safetensors and ``model.json``."""
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    if model.kind == "multimodal":
        architecture = {"audio_config": model.audio_encoder.config.to_dict(),
                        "lyrics_config": model.lyrics_encoder.config.to_dict()}
    else:
        architecture = {"config": model.model.config.to_dict()}
    description = {"kind": model.kind, "num_labels": 9, **architecture, **extra}
    (folder / "model.json").write_text(json.dumps(description, indent=1, default=str))


def test_earlier_layout_folders_load_and_convert(tmp_path):
    batch, run, models = _batch(), tmp_path / "runs", {}
    for kind in ("lyrics", "audio", "multimodal"):
        torch.manual_seed(2)
        models[kind] = build_model(kind, PROFILE, 9, vocab_size=VOCAB).eval()
        _write_earlier_layout(models[kind], run / "genre" / kind / "best", task="genre",
                              class_names=list(GENRES), profile="tiny", note="kept")
        assert list(load_file(str(run / "genre" / kind / "best" / "model.safetensors")))[0].startswith(
            "model." if kind != "multimodal" else "")
        loaded = load_trained(run, "genre", kind, profile="tiny")
        assert torch.equal(_our_logits(kind, loaded, batch), _our_logits(kind, models[kind], batch))
    assert convert_main(["legacy", str(run)]) == 0
    for kind, model in models.items():
        folder = run / "genre" / kind / "best"
        assert (folder / "config.json").is_file() and not (folder / ".save.part").exists()
        assert not any(key.startswith("model.") for key in load_file(str(folder / "model.safetensors")))
        loaded = load_trained(run, "genre", kind, profile="tiny")
        assert model_fingerprint(loaded) == model_fingerprint(model)
        assert read_model_json(folder)["note"] == "kept"
    assert convert_main(["legacy", str(run)]) == 0                # nothing left to convert
    # a conversion killed after the weights were renamed, before config.json: the folder still loads
    folder = run / "genre" / "audio" / "best"
    (folder / "config.json").unlink()
    assert model_fingerprint(load_model(folder)[0]) == model_fingerprint(models["audio"])


def test_import_never_writes_over_the_authors_file(tmp_path):
    from utils.model_related.convert import import_authors

    theirs = tmp_path / "model.safetensors"
    theirs.write_bytes(b"their weights")
    with pytest.raises(ValueError, match="same file as FILE"):
        import_authors(theirs, "lyrics", "genre", "tiny", tmp_path)
    assert theirs.read_bytes() == b"their weights"
