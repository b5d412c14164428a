"""The training loop: ELBO with beta and KL warm-up, early stopping on the validation split."""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field

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
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch (Progress.record)


LOG_EVERY_S = 5.0  # a progress line this often when stderr is not a terminal (a log file)


class Progress:
    """Training's progress: a live bar with the current losses in a terminal; in a log file one
    plain line every LOG_EVERY_S seconds (and the last epoch), never a carriage return. Keeps
    the history of every epoch."""

    def __init__(self, desc: str, epochs: int, stream=None) -> None:
        self.desc, self.epochs = desc, epochs
        self.stream = stream or sys.stderr
        self.history: list[dict[str, float]] = []
        self.started = self.last_line = time.perf_counter()
        self.printed = 0.0  # the last epoch a line was printed for
        interactive = getattr(self.stream, "isatty", lambda: False)()
        self.bar = tqdm(total=epochs, desc=desc, file=self.stream, dynamic_ncols=True) if interactive else None

    def record(self, **figures: float) -> None:
        figures["seconds"] = round(time.perf_counter() - self.started, 3)
        self.history.append(figures)
        shown = {k: f"{v:.3f}" for k, v in figures.items() if k in ("train", "recon", "kl", "val")}
        shown["beta"] = f"{figures['beta']:.2f}"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(shown, refresh=False)
        elif time.perf_counter() - self.last_line >= LOG_EVERY_S or figures["epoch"] == self.epochs:
            self.line(figures, shown)

    def line(self, figures: dict[str, float], shown: dict[str, str]) -> None:
        self.last_line, self.printed = time.perf_counter(), figures["epoch"]
        text = ", ".join(f"{k} {v}" for k, v in shown.items())
        print(
            f"{self.desc}: epoch {figures['epoch']:.0f}/{self.epochs}, {text}, {figures['seconds']:.1f} s",
            file=self.stream,
            flush=True,
        )

    def close(self, note: str) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.history and self.history[-1]["epoch"] != self.printed:
            last = self.history[-1]
            self.line(last, {k: f"{v:.3f}" for k, v in last.items() if k in ("train", "recon", "kl", "val")})
        print(f"{self.desc}: {note}", file=self.stream, flush=True)


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
    progress = Progress(desc, cfg.max_epochs)
    for epoch in range(1, cfg.max_epochs + 1):
        beta = cfg.beta * min(1.0, epoch / max(cfg.warmup_epochs, 1))
        model.train()
        total = recon_sum = kl_sum = 0.0
        order = torch.randperm(len(x_train), generator=shuffle)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            recon, kl = model.losses(x_train[idx], None if y_train is None else y_train[idx], noise)
            loss = (recon + beta * kl).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            recon_sum += recon.sum().item()
            kl_sum += kl.sum().item()

        model.eval()
        with torch.no_grad():
            # Always the full-beta objective with fixed noise, so epochs compare fairly.
            val_loss = negative_elbo(model, x_val, y_val, cfg.beta, torch.Generator().manual_seed(cfg.seed)).item()
        if val_loss < best_loss and epoch >= min(cfg.warmup_epochs, cfg.max_epochs):
            best_loss, best_epoch, best_state = val_loss, epoch, copy.deepcopy(model.state_dict())
        rows = len(x_train)
        progress.record(
            epoch=epoch,
            train=total / rows,
            recon=recon_sum / rows,
            kl=kl_sum / rows,
            val=val_loss,
            beta=beta,
            lr=optimizer.param_groups[0]["lr"],
            best_epoch=best_epoch,
        )
        if best_epoch and epoch - best_epoch >= cfg.patience:
            break
    if best_epoch:
        model.load_state_dict(best_state)
    else:  # never past warm-up: keep the last state
        best_loss, best_epoch = val_loss, epoch
    progress.close(f"best epoch {best_epoch} of {epoch} (validation loss {best_loss:.4f})")
    model.eval()
    return TrainResult(model, epoch, best_epoch, best_loss, progress.history)
