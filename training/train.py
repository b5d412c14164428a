"""The training loop: ELBO with beta and KL warm-up, early stopping on the validation split."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from training.model import VAE, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    max_epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta: float = 1.0
    warmup_epochs: int = 20  # KL weight rises linearly from 0 to beta over these epochs
    patience: int = 30  # epochs without a better validation loss before stopping
    seed: int = 0
    # torch's intra-op threads. One by default: these MLPs gain little from a second thread, and
    # beside any other busy process OpenMP's waiting threads slow training by an order of
    # magnitude (penguins, 100 epochs, one other busy core: 8.8 s with 1 thread, 91.7 s with 2).
    threads: int = 1


@dataclass(frozen=True)
class TrainResult:
    model: VAE
    epochs_run: int
    best_epoch: int
    best_val_loss: float


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)


def as_tensors(x: np.ndarray, y: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), None if y is None else torch.from_numpy(y)


def negative_elbo(
    model: VAE, x: torch.Tensor, y: torch.Tensor | None, beta: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mean over rows of reconstruction NLL + beta * KL."""
    recon, kl = model.losses(x, y, generator)
    return (recon + beta * kl).mean()


def fit(
    model_cfg: ModelConfig,
    train: tuple[np.ndarray, np.ndarray | None],
    val: tuple[np.ndarray, np.ndarray | None],
    cfg: TrainConfig,
    desc: str = "train",
) -> TrainResult:
    """Train from scratch; deterministic for a given seed. `train`/`val` are normalised (x, y)."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = VAE(model_cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x_train, y_train = as_tensors(*train)
    x_val, y_val = as_tensors(*val)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    noise = torch.Generator().manual_seed(cfg.seed + 1)

    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    epoch = 0
    progress = tqdm(
        range(1, cfg.max_epochs + 1),
        desc=desc,
        file=sys.stderr,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
        dynamic_ncols=True,
        leave=True,
    )
    for epoch in progress:
        beta = cfg.beta * min(1.0, epoch / max(cfg.warmup_epochs, 1))
        model.train()
        total = 0.0
        order = torch.randperm(len(x_train), generator=shuffle)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = negative_elbo(model, x_train[idx], None if y_train is None else y_train[idx], beta, noise)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)

        model.eval()
        with torch.no_grad():
            # Always the full-beta objective with fixed noise, so epochs compare fairly.
            val_loss = negative_elbo(model, x_val, y_val, cfg.beta, torch.Generator().manual_seed(cfg.seed)).item()
        if val_loss < best_loss and epoch >= min(cfg.warmup_epochs, cfg.max_epochs):
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        progress.set_postfix(train=f"{total / len(x_train):.3f}", val=f"{val_loss:.3f}", best=best_epoch)
        if best_epoch and epoch - best_epoch >= cfg.patience:
            break
    progress.close()
    if best_epoch:
        model.load_state_dict(best_state)
    else:  # never past warm-up: keep the last state
        best_loss, best_epoch = val_loss, epoch
    model.eval()
    return TrainResult(model, epoch, best_epoch, best_loss)
