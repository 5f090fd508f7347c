"""The published numbers the report sets beside ours (`research/attribution.md`, issue 15).

They come from classification and language-modelling benchmarks on 5-13M-parameter models; none
has a regression or planning loss, so they show the scale a score reaches elsewhere, not a bar
ours has to clear.
"""

from __future__ import annotations

from experiments import stats

TEXT = (
    "The tasks differ: these numbers are from image classification (CIFAR-2/-10, ResNet-9), "
    "language modelling (nanoGPT, GPT-2), music generation (MusicTransformer) and GLUE/SWAG, "
    "with 5-13M-parameter models and cross-entropy losses; ours is a small GameFormer with an "
    "imitation and planning regression loss on procedural driving scenarios. They show the scale "
    "each method reaches elsewhere, not a ranking against ours.\n"
)

# (method, what, published value, task and source)
ROWS = (
    ("TracIn / gradient dot", "LDS", "0.07-0.13",
     "CIFAR-2 ResNet-9, nanoGPT, MusicTransformer (TRAK paper, dattri)"),
    ("gradient cosine", "LDS", "0.075", "CIFAR-2 ResNet-9 (dattri)"),
    ("TRAK, 1 / 10 / 50 models", "LDS", "0.10 / 0.26 / 0.37", "CIFAR-2 ResNet-9 (TRAK paper)"),
    ("TRAK, 50 models", "LDS", "0.23-0.37", "CIFAR-2, nanoGPT, MusicTransformer"),
    ("EK-FAC influence", "LDS", "0.32-0.44", "GPT-2, GLUE, SWAG (kronfluence)"),
    ("identity (gradient dot) there", "LDS", "0.10-0.12", "GPT-2, GLUE, SWAG (kronfluence)"),
    ("TracIn", "noisy-label AUROC", "~0.51", "CIFAR-10 ResNet-9 (dattri)"),
    ("TRAK", "noisy-label AUROC", "~0.66", "CIFAR-10 ResNet-9 (dattri)"),
)  # fmt: skip


def table() -> str:
    """The anchors as a markdown table."""
    cols = ("method", "measure", "published", "task (source)")
    return stats.markdown_table([dict(zip(cols, row, strict=True)) for row in ROWS], list(cols))
