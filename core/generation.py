"""Many rows with constant memory: `POST /generate/stream` and `python -m training sample`.

Rows are made in blocks of `BLOCK_ROWS`. Block k of a seeded request draws everything (its
latent codes, then its values) from a generator of its own: the seed's own for block 0, so
that up to `BLOCK_ROWS` rows are exactly what /generate answers for that seed, and
`SeedSequence(seed, spawn_key=(k,))`, an independent stream, for each block after it. So the
`n` rows of a seed are the same whether streamed or not, served or written by the CLI, and a
whole block is the same in any request that reaches past it (a partial last block draws its
rows' codes and values in another order than a whole one would).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from core.heads import head_values
from core.manifest import Manifest
from core.table import Table

BLOCK_ROWS = 1024


def block_rng(seed: int | None, k: int, shared: np.random.Generator) -> np.random.Generator:
    """The generator block k draws from: `shared` for an unseeded request."""
    if seed is None:
        return shared
    if k == 0:
        return np.random.default_rng(seed)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(k,))))


def block_sizes(n: int) -> Iterator[int]:
    return (min(BLOCK_ROWS, n - start) for start in range(0, n, BLOCK_ROWS))


@dataclass
class Block:
    """Rows as arrays: the numeric block in original units ([rows, numeric columns] for a table,
    [rows, features] otherwise), a table's category indices and missing-value flags, and the rows'
    labels."""

    numeric: np.ndarray
    codes: np.ndarray | None = None
    missing: np.ndarray | None = None
    labels: np.ndarray | None = None  # a conditional model's label index per row

    def __len__(self) -> int:
        return len(self.numeric)

    def take(self, rows: np.ndarray) -> Block:
        """The block's rows at `rows` (indices or a mask)."""

        def of(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return Block(self.numeric[rows], of(self.codes), of(self.missing), of(self.labels))

    @staticmethod
    def join(blocks: Sequence[Block]) -> Block:
        if len(blocks) == 1:
            return blocks[0]
        codes = None if blocks[0].codes is None else np.concatenate([b.codes for b in blocks])  # type: ignore[misc]
        missing = None if blocks[0].missing is None else np.concatenate([b.missing for b in blocks])  # type: ignore[misc]
        labels = None if blocks[0].labels is None else np.concatenate([b.labels for b in blocks])  # type: ignore[misc]
        return Block(np.concatenate([b.numeric for b in blocks]), codes, missing, labels)


def rows_block(
    manifest: Manifest,
    table: Table | None,
    outputs: list[np.ndarray],
    rng: np.random.Generator | None,
    shift: np.ndarray,
    scale: np.ndarray | None,
    generated: bool = True,
) -> tuple[np.ndarray, Block]:
    """The decoder's outputs -> (the numeric block on the model's scale, the rows): drawn from
    p(x | z[, y]) with `rng` (the head's draw, then each category and gap), else central values.
    Generated rows keep only the gap patterns enough training rows share (`Table.common_gaps`);
    a reconstruction (`generated` False) keeps what the decoder says of the row it was given.
    The one way /generate, /generate/stream, /reconstruct and the in-process Sampler make rows.
    Not checked for finite values here: the callers check what they answer."""
    m = manifest
    numeric = head_values(m.head, outputs, m.quantile_levels, bool(m.discrete_dim), rng)
    if table is None:
        if scale is None:  # a unit scale (images): x * 1 is x, so adding the shift gives the same values, sooner
            return numeric, Block(numeric + shift)
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused by the caller's check
            return numeric, Block(numeric * scale + shift)
    codes, missing = table.choose(outputs[-1] if m.discrete_dim else None, len(numeric), rng)
    if generated:
        missing = table.common_gaps(missing)
    return numeric, Block(table.from_scale(numeric), codes, missing)
