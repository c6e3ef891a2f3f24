"""One training loop for the three models.

AdamW with a linear warm-up/decay schedule, gradient accumulation, mixed precision on CUDA
(bf16 where supported, else fp16 with a gradient scaler), early stopping on validation
accuracy (ties: lower validation loss), tqdm progress, and a checkpoint after every epoch:
the ``best/`` model directory (safetensors) and the ``last/`` checkpoint (weights, optimizer,
scheduler and scaler state, and ``state.json``), written as one unit
(:mod:`utils.model_related.checkpoint`). Calling :func:`train_model` again with the same
``out_dir`` and settings resumes after the last finished epoch (other settings are refused);
each epoch's shuffling and dropout are seeded from ``(seed, epoch)``, so a run interrupted at
any moment and resumed gives bit-identical weights to an uninterrupted one.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from utils.config import Profile, resolve_device
from utils.model_related.checkpoint import load_checkpoint, run_settings, save_checkpoint
from utils.model_related.models import model_inputs, save_model


def _loader(dataset, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0):
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _autocast(device: str):
    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict_proba(model: nn.Module, dataset, *, batch_size: int = 64, device: str = "cpu") -> tuple[np.ndarray, float]:
    """Class probabilities (songs, classes) and the mean cross-entropy over ``dataset``."""
    model.eval().to(device)
    probabilities, losses = [], []
    for batch in _loader(dataset, batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        with _autocast(device):
            logits = model(**model_inputs(model.kind, batch)).float()
        losses.append(nn.functional.cross_entropy(logits, batch["labels"], reduction="sum").item())
        probabilities.append(torch.softmax(logits, dim=-1).cpu().numpy())
    total = max(1, len(dataset))
    return (np.concatenate(probabilities) if probabilities else np.zeros((0, 0))), sum(losses) / total


def _optimizer(model: nn.Module, cfg, kind: str, total_steps: int):
    """AdamW (no weight decay on biases, norms and the fusion head's norm) and the linear warm-up/decay schedule."""
    from transformers import get_linear_schedule_with_warmup

    no_decay = ("bias", "LayerNorm.weight", "layernorm.weight", "head.0.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate[kind])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def _train_epoch(model: nn.Module, batches, bar, optimizer, scheduler, scaler, *, amp, grad_accumulation: int,
                 device: str) -> float:
    """One pass over ``batches`` (iterated through their progress ``bar``), stepping the optimizer every
    ``grad_accumulation`` batches and after the last one; returns the mean training loss per song."""
    kind = model.kind
    running, seen = 0.0, 0
    for step, batch in enumerate(bar):
        batch = {k: v.to(device) for k, v in batch.items()}
        with amp:
            logits = model(**model_inputs(kind, batch))
            loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
        scaler.scale(loss / grad_accumulation).backward()
        if (step + 1) % grad_accumulation == 0 or step + 1 == len(batches):
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        running += loss.item() * len(batch["labels"])
        seen += len(batch["labels"])
        bar.set_postfix(loss=f"{running / seen:.3f}")
    return running / max(1, seen)


def epoch_verdict(state: dict, val_accuracy: float, val_loss: float) -> tuple[bool, int]:
    """Whether this epoch is the new best, and the early-stopping count after it.

    The best epoch has the highest validation accuracy (ties: the lower loss); its weights are kept.
    Patience counts epochs in which neither the accuracy nor the loss reached a new best (against
    ``state["history"]``, the epochs before this one), so a model that leaves a plateau slowly, its
    validation loss falling while its accuracy is flat, keeps training.
    """
    improved = (val_accuracy > state["best_accuracy"]
                or (val_accuracy == state["best_accuracy"] and val_loss < state["best_loss"]))
    lowest_loss = min((h["val_loss"] for h in state["history"]), default=float("inf"))
    return improved, 0 if improved or val_loss < lowest_loss else state["bad_epochs"] + 1


def train_model(model: nn.Module, train_set, val_set, profile: Profile, out_dir: str | Path, *, seed: int = 0,
                device: str | None = None, epochs: int | None = None, progress: bool = True,
                extra: dict | None = None, stop_after: int | None = None) -> dict:
    """Train ``model`` (kind taken from ``model.kind``) and keep the best epoch.

    Parameters
    ----------
    model : a :mod:`utils.model_related.models` classifier.
    train_set, val_set : datasets yielding dicts with the model's inputs and ``labels``.
    profile : batch size, learning rate, epochs, warm-up, patience, accumulation.
    out_dir : checkpoint directory; an existing one is resumed (made with the same settings, else
        ``ValueError`` naming the differing ones; see :func:`utils.model_related.checkpoint.run_settings`).
    seed : seeds shuffling and dropout per epoch.
    epochs : overrides ``profile.train.epochs[kind]``.
    extra : stored in the saved ``model.json`` (task, class names...).
    stop_after : run at most this many epochs in this call, then return (for time-boxed
        sessions such as free Kaggle/Colab GPUs); calling again continues the same schedule.

    Returns
    -------
    The training state: epochs done, best epoch, best validation accuracy, per-epoch history.
    The best weights are in ``out_dir/best``.
    """
    from tqdm.auto import tqdm

    cfg = profile.train
    kind = model.kind
    extra = extra or {}
    device = resolve_device(device or profile.device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = epochs or cfg.epochs[kind]
    batch_size = cfg.batch_size[kind]
    steps_per_epoch = math.ceil(math.ceil(len(train_set) / batch_size) / cfg.grad_accumulation)
    optimizer, scheduler = _optimizer(model.to(device), cfg, kind, max(1, steps_per_epoch * epochs))
    use_scaler = device.startswith("cuda") and cfg.mixed_precision and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    amp = _autocast(device) if cfg.mixed_precision else torch.autocast("cpu", enabled=False)
    settings = run_settings(kind, profile, seed=seed, epochs=epochs, train_set=train_set, val_set=val_set,
                            extra=extra)
    state = load_checkpoint(out_dir, model, optimizer, scheduler, scaler, device=device, settings=settings) or {
        "epochs_done": 0, "best_epoch": None, "best_accuracy": -1.0, "best_loss": float("inf"),
        "bad_epochs": 0, "finished": False, "history": [], "kind": kind, "seed": seed, "settings": settings}
    first_epoch = state["epochs_done"]
    for epoch in range(first_epoch, epochs):
        if state["finished"] or (stop_after is not None and epoch - first_epoch >= stop_after):
            break
        torch.manual_seed(seed * 100_003 + epoch)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        batches = _loader(train_set, batch_size, shuffle=True, seed=seed, epoch=epoch)
        bar = tqdm(batches, desc=f"{kind} epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        train_loss = _train_epoch(model, batches, bar, optimizer, scheduler, scaler, amp=amp,
                                  grad_accumulation=cfg.grad_accumulation, device=device)
        probabilities, val_loss = predict_proba(model, val_set, device=device)
        val_accuracy = float((probabilities.argmax(1) == val_set.labels.numpy()).mean()) if len(val_set) else 0.0
        improved, bad_epochs = epoch_verdict(state, val_accuracy, val_loss)
        state["history"].append({"epoch": epoch + 1, "train_loss": train_loss,
                                 "val_loss": val_loss, "val_accuracy": val_accuracy})
        state["bad_epochs"] = bad_epochs
        if improved:
            state.update(best_epoch=epoch + 1, best_accuracy=val_accuracy, best_loss=val_loss)
            save_model(model, out_dir / "best", **extra)
        state["epochs_done"] = epoch + 1
        state["finished"] = state["bad_epochs"] >= cfg.patience or epoch + 1 == epochs
        save_checkpoint(out_dir, model, state, optimizer, scheduler, scaler, extra)
        if progress:
            print(f"{kind} epoch {epoch + 1}: train loss {train_loss:.3f}, "
                  f"val loss {val_loss:.3f}, val acc {val_accuracy:.3f}")
    return state
