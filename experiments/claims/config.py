"""`TheoryConfig`: everything a measurement of the three claims depends on (saved in theory.json).

`from_args` resolves the command line of `experiments/theory.py`: the reference run (the one
`Layout.reference` names for `--data`, or `--reference`), the checkpoints measured, the output
folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from experiments.layout import CONFIG, Layout


@dataclasses.dataclass(frozen=True)
class TheoryConfig:
    """One measurement of the three claims.

    Attributes:
      workdir: the workdir holding the reference run, its data and its score files.
      out: where theory.json, THEORY.md and the figures go.
      reference: the reference run folder whose checkpoints (a) measures.
      epochs: 0-based reference checkpoints measured in (a).
      data: the sweep's `--data` (None: the preset's own world); selects scores and splits.
      n_batches: mini-batches drawn per sampling in (a).
      batch_size: examples per mini-batch in (a).
      seed: seeds the batch draws, the training subset and the simulations.
      select: the hard selection's fraction (top of TracIn) in (a) and (c).
      chunk_size: examples per per-example-gradient call in (a).
      max_examples: measure (a) on a random training subset of this size; None: all.
      max_gram_gb: refuse (a) when the per-example gradients would need more memory (GiB);
        None: half of the memory available (`default_gram_gb`), resolved on construction.
      sim_sizes: the N of the (b) simulation.
      sim_trials: simulated repeats (independent draws) per N in (b).
      sim_noise: noise levels of the informative score in the (b) simulation.
    """

    workdir: str
    out: str
    reference: str
    epochs: tuple[int, ...]
    data: str | None = None
    n_batches: int = 64
    batch_size: int = 16
    seed: int = 0
    select: float = 0.2
    chunk_size: int = 32
    max_examples: int | None = None
    max_gram_gb: float | None = None
    sim_sizes: tuple[int, ...] = (50, 200, 1000, 5000)
    sim_trials: int = 200
    sim_noise: tuple[float, ...] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.max_gram_gb is None:  # resolved here, so that theory.json records the cap used
            object.__setattr__(self, "max_gram_gb", default_gram_gb())


def available_memory_gb(meminfo: str | Path = "/proc/meminfo") -> float | None:
    """The memory the system could give a new process now (Linux `MemAvailable`, in GiB as the
    gradients' size is counted); None when the file is missing or does not say."""
    try:
        text = Path(meminfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / 2**30  # the file counts KiB
    return None


def default_gram_gb(meminfo: str | Path = "/proc/meminfo") -> float:
    """(a)'s memory cap when none is given: half of the available memory (the rest is the model,
    the data and the batches), 4 GiB where the system does not say."""
    available = available_memory_gb(meminfo)
    return 4.0 if available is None else max(0.1, round(available / 2, 1))


def auto_epochs(available: Sequence[int], count: int = 4) -> tuple[int, ...]:
    """About `count` evenly spaced checkpoints plus the final one."""
    avail = sorted(available)
    step = max(1, math.ceil(len(avail) / count))
    return tuple(sorted(set(avail[::step]) | {avail[-1]}))


def parse_ints(text: str) -> tuple[int, ...]:
    """`"0,5,11"` -> (0, 5, 11)."""
    return tuple(int(x) for x in text.split(",") if x.strip())


def find_reference(layout: Layout, data: str | None, override: str | None) -> Path:
    """`override` if given, else the reference run `Layout.reference(data)`; raises
    FileNotFoundError when that run was never trained."""
    reference = Path(override) if override else layout.reference(data)
    if not (reference / CONFIG).exists():
        raise FileNotFoundError(
            f"{reference}: no reference run there (train one with experiments/run.py, "
            "or pass --reference)"
        )
    return reference


def measured_epochs(reference: Path, spec: str) -> tuple[int, ...]:
    """The checkpoints `--epochs` names: `auto`, `all` or a list such as `0,5,11`."""
    from valuation import gameformer

    available = gameformer.checkpoint_store(reference).epochs()
    if spec == "auto":
        return auto_epochs(available)
    if spec == "all":
        return tuple(available)
    epochs = parse_ints(spec)
    missing = sorted(set(epochs) - set(available))
    if missing:
        raise ValueError(f"{reference}: no checkpoints for epochs {missing} (have {available})")
    return epochs


def from_args(args: argparse.Namespace) -> TheoryConfig:
    """The TheoryConfig of `experiments/theory.py`'s parsed arguments."""
    layout = Layout(Path(args.workdir))
    reference = find_reference(layout, args.data, args.reference)
    return TheoryConfig(
        workdir=str(layout.root),
        out=str(Path(args.out) if args.out else layout.theory),
        reference=str(reference),
        epochs=measured_epochs(reference, args.epochs),
        data=args.data,
        n_batches=args.n_batches,
        batch_size=args.batch_size,
        seed=args.seed,
        select=args.select,
        chunk_size=args.chunk,
        max_examples=args.max_examples,
        max_gram_gb=args.max_gram_gb,
        sim_sizes=parse_ints(args.sim_sizes),
        sim_trials=args.sim_trials,
    )
