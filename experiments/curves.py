"""Learning-curve settings, their training runs, and the collected curves (JSON).

A setting is the `cpu` model trained uniformly (seed 1) on `n_train` scenarios for a budget of
optimizer steps; validation is the same 256 scenarios for every setting, so the curves compare.
The epoch count is the step budget over the steps per epoch; the learning rate is halved at the
original's milestones scaled to that epoch count.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from experiments.layout import Layout
from gf_jax import atomic, train
from gf_jax.config import PRESETS, Preset, scaled_milestones
from gf_jax.data import store

CURVE_SEED = 1
N_VAL = 256
N_TEST = 256


@dataclasses.dataclass(frozen=True)
class Setting:
    """One learning curve.

    Attributes:
      n_train: training scenarios (the world's seed-0 training split of that size).
      learning_rate: AdamW peak learning rate.
      steps: optimizer-step budget (rounded up to whole epochs).
      batch_size: examples per step.
      warmup_steps: linear warm-up from 0 over these first steps (0: none).
    """

    n_train: int
    learning_rate: float = 3e-4
    steps: int = 2560
    batch_size: int = 16
    warmup_steps: int = 0

    @property
    def name(self) -> str:
        name = f"n{self.n_train}-lr{self.learning_rate:g}-b{self.batch_size}-s{self.steps}"
        return name + (f"-w{self.warmup_steps}" if self.warmup_steps else "")

    @property
    def epochs(self) -> int:
        return max(1, math.ceil(self.steps * self.batch_size / self.n_train))

    def preset(self) -> Preset:
        base = PRESETS["cpu"]
        data = dataclasses.replace(base.data, n_train=self.n_train, n_val=N_VAL, n_test=N_TEST)
        fields = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "lr_milestones": scaled_milestones(self.epochs),
            "seed": CURVE_SEED,
        }
        if self.warmup_steps:
            fields["warmup_steps"] = self.warmup_steps
        tcfg = dataclasses.replace(base.train, **fields)
        return dataclasses.replace(
            base, name=f"curve-{self.name}", data=data, train=tcfg
        ).validate()


# Ordered by what the preset decision needs first: the probe's setting and more data, then
# larger learning rates, warm-up and batch size at 4,096 scenarios, then less data.
SETTINGS: list[Setting] = [
    Setting(2048),
    Setting(4096),
    Setting(4096, learning_rate=6e-4),
    Setting(8192),
    Setting(4096, learning_rate=1e-3, warmup_steps=256),
    Setting(4096, learning_rate=6e-4, batch_size=32, steps=1280),
    Setting(1024),
    Setting(512),
    Setting(2048, learning_rate=6e-4),
]


def setting_dir(workdir: str | Path, s: Setting) -> Path:
    return Layout(workdir).learning_curves / s.name


def train_setting(s: Setting, workdir: str | Path, *, progress: bool = True) -> dict:
    """Trains (or resumes, or reuses) one setting's run; returns its result dict."""
    preset = s.preset()
    root = Path(workdir)
    splits = store.load_splits(preset.data, root=Layout(root).data, verbose=True)
    out = setting_dir(root, s)
    print(f"learning curve {s.name}: {preset.train.epochs} epochs -> {out}")
    fit = train.fit(
        preset,
        splits["train"],
        splits["val"],
        splits["test"],
        workdir=out,
        resume=True,
        progress=progress,
        extra_config={"setting": dataclasses.asdict(s)},
    )
    return fit.result


def read_curve(s: Setting, workdir: str | Path) -> dict | None:
    """The per-epoch points of a setting's run so far (None if it has not started)."""
    path = setting_dir(workdir, s) / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        "setting": {**dataclasses.asdict(s), "name": s.name, "epochs": s.epochs},
        "finished": (setting_dir(workdir, s) / "result.json").exists(),
        "points": [
            {
                "step": r["step"],
                "epoch": r["epoch"],
                "train_loss": r["train_loss"],
                "train_seconds": r["train_seconds"],
                "val_plan_ade": r["val_plan_ade"],
                "val_pred_ade": r["val_pred_ade"],
            }
            for r in rows
        ],
    }


def summary_rows(curves: list[dict], baselines: dict[str, dict[str, float]]) -> list[dict]:
    """Per setting: its best validation point, the ratio to route following, and time per step."""
    route = baselines["route_following"]["plan_ade"]
    cv_pred = baselines["constant_velocity"]["pred_ade"]
    rows = []
    for c in curves:
        best = min(c["points"], key=lambda p: p["val_plan_ade"])
        seconds = sum(p["train_seconds"] for p in c["points"])
        rows.append(
            {
                "setting": c["setting"]["name"],
                "steps": c["points"][-1]["step"],
                "finished": c["finished"],
                "best step": best["step"],
                "val plan ADE": best["val_plan_ade"],
                "x route following": best["val_plan_ade"] / route,
                "val pred ADE": best["val_pred_ade"],
                "x CV neighbours": best["val_pred_ade"] / cv_pred,
                "train s / step": seconds / c["points"][-1]["step"],
            }
        )
    return rows


def collect(settings: list[Setting], workdir: str | Path, out: str | Path | None = None) -> Path:
    """Writes `curves.json` (every started setting's points and the baselines on the same
    validation split), `curves.md` (a summary table) and `learning_curves.png`; returns the
    JSON's path."""
    from experiments import stats
    from experiments.figures.learning import learning_curves
    from gf_jax import baselines

    out_dir = Path(out) if out else Layout(workdir).learning_curves
    curves = [c for s in settings if (c := read_curve(s, workdir)) is not None]
    preset = settings[0].preset()
    val = store.load_split(preset.data, "val", root=Layout(workdir).data, progress=False)
    base = baselines.evaluate(val, preset.model.neighbors)
    path = atomic.write_json(
        out_dir / "curves.json",
        {"n_val": N_VAL, "seed": CURVE_SEED, "baselines": base, "curves": curves},
    )
    rows = summary_rows(curves, base)
    cols = list(rows[0]) if rows else ["setting"]
    atomic.write_text(out_dir / "curves.md", stats.markdown_table(rows, cols))
    learning_curves(curves, base, out_dir / "learning_curves.png",
                    title=f"cpu model, uniform sampling, seed {CURVE_SEED}, {N_VAL} val scenarios")  # fmt: skip
    return path
