"""Reading a workdir for the report: finished runs, the reference run's preset, the score files.

Score files are found through the runs' saved configs (`config["scores"]`, `config["run"]`), not
by recomputing file names, so a report shows exactly the scores its runs trained with. A
workdir with only a reference run and its scores still finds the default score file.

Problems with one run (a truncated `result.json`), the reference run's config or a score file are
warnings naming the file: printed to stderr and appended to the caller's `notes`, never a crash.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments import scoring
from experiments.layout import CONFIG, Layout
from experiments.runconfig import RunConfig
from gf_jax import cli
from gf_jax.config import Preset, preset_from_dict

Runs = dict[str, dict[int, dict]]  # {run name: {seed: result}}
# The keys every table and figure reads; a result without them is skipped.
REQUIRED = ("plan_ade", "plan_fde", "plan_ahe", "best_epoch", "history")
# The score-file variants the report shows, in the order it lists their scores.
VARIANTS = ("base", "lissa", "tracin_best", "tracin_dropout")
DEFAULT_OPTIONS = scoring.tracin_options(RunConfig(method="tracin"))
VARIANT_OPTIONS = {
    "base": DEFAULT_OPTIONS,
    "tracin_best": {**DEFAULT_OPTIONS, "checkpoints": "best"},
    "tracin_dropout": {**DEFAULT_OPTIONS, "scoring_dropout": True},
}


def warn(message: str, notes: list[str] | None) -> None:
    """One line on stderr, and the same line in the report's notes."""
    cli.warn(message)
    if notes is not None:
        notes.append(cli.one_line(message))


# ----------------------------------------------------------------------------- runs


def read_result(path: Path) -> dict:
    """A result.json; ValueError when it is not a complete result (what the tables and figures
    read is checked here, so a broken run is skipped instead of failing the report later)."""
    result = json.loads(path.read_text())
    if not isinstance(result, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED if k not in result]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for key in ("plan_ade", "plan_fde", "plan_ahe", "best_epoch"):
        if not _is_number(result[key]):
            raise ValueError(f"{key} is {result[key]!r}, not a number")
    history = result["history"]
    if not isinstance(history, list) or not all(
        isinstance(h, dict) and _is_number(h.get("val_plan_ade")) for h in history
    ):
        raise ValueError("history is not a list of epochs with val_plan_ade")
    if not isinstance(result.get("test", {}), dict):
        raise ValueError("test is not a JSON object")
    return result


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def load_runs(layout: Layout, notes: list[str] | None = None) -> Runs:
    """{run name: {seed: result}} of every finished curriculum run; unreadable results are
    skipped with a warning."""
    runs: Runs = {}
    for name, seed, path in layout.finished():
        try:
            result = read_result(path)
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError included
            warn(f"skipped {path}: unreadable result ({type(e).__name__}: {e})", notes)
            continue
        runs.setdefault(name, {})[seed] = result
    return runs


def run_config(result: dict) -> RunConfig | None:
    """The RunConfig a result was trained with; None for results of an older layout."""
    try:
        return RunConfig.from_dict(result["config"]["run"])
    except (KeyError, TypeError, ValueError):  # ConfigError is a ValueError
        return None


# ----------------------------------------------------------------------------- presets


def run_preset(run_dir: Path) -> Preset:
    """The resolved preset a run (or the reference run) saved in its config.json."""
    return preset_from_dict(json.loads((Path(run_dir) / CONFIG).read_text())["preset"])


def reference_preset(
    layout: Layout, data: str | None = None, notes: list[str] | None = None
) -> Preset | None:
    """The preset of the reference run trained on `data` (`Layout.reference`), None if there
    is none or its config.json is unreadable (a warning naming it)."""
    ref = layout.reference(data)
    if not (ref / CONFIG).exists():
        return None
    try:
        return run_preset(ref)
    except (OSError, ValueError, KeyError, TypeError) as e:
        warn(f"skipped the reference run: {ref / CONFIG} is unreadable ({type(e).__name__})", notes)
        return None


def on_reference(layout: Layout, cfg: RunConfig, data: str | None) -> bool:
    """True when `cfg` trains in the world of `data`'s reference run (same data, preset noise)."""
    return layout.reference(cfg.data, cfg.noise) == layout.reference(data)


def world_preset(layout: Layout, runs: Runs, data: str | None = None) -> Preset | None:
    """A preset of `data`'s world: the reference run's, else the one a run in that world saved
    (a workdir of model-free methods has no reference run)."""
    preset = reference_preset(layout, data)
    if preset is not None:
        return preset
    for seeds in runs.values():
        for result in seeds.values():
            cfg = run_config(result)
            if cfg is None or not on_reference(layout, cfg, data):
                continue
            try:
                return preset_from_dict(result["config"]["preset"])
            except (KeyError, TypeError, ValueError):  # a result without its preset: try another
                continue
    return None


# ----------------------------------------------------------------------------- scores


def score_variant(cfg: RunConfig) -> str | None:
    """Which of `VARIANTS` the score file of `cfg` is; None for files the report does not show
    (e.g. the flipped sign)."""
    if cfg.method == "lissa":
        return "lissa"
    options = scoring.tracin_options(cfg)
    if options == VARIANT_OPTIONS["base"]:
        return "base"
    if cfg.method != "tracin":
        return None
    return next((v for v, o in VARIANT_OPTIONS.items() if o == options), None)


def score_files(
    layout: Layout,
    runs: Runs,
    preset: Preset | None,
    data: str | None = None,
    notes: list[str] | None = None,
) -> dict[str, Path]:
    """{variant: score file} of the runs trained in `data`'s world, plus the default file of the
    reference preset when no run used it."""
    found: dict[str, Path] = {}
    for name in sorted(runs):
        for result in runs[name].values():
            cfg = run_config(result)
            saved = result.get("config", {}).get("scores")
            if not saved or cfg is None or not on_reference(layout, cfg, data):
                continue
            variant, path = score_variant(cfg), layout.resolve(saved)
            if variant is None or not path.exists():
                continue
            if found.setdefault(variant, path) != path and notes is not None:
                notes.append(
                    f"{name}: score file {path.name} differs from {found[variant].name} "
                    f"({variant} scores); the report uses the latter"
                )
    if "base" not in found and preset is not None:
        default = RunConfig(method="tracin", preset=preset.name, data=data)
        path, _ = scoring.score_file(default, preset, layout)
        if path.exists():
            found["base"] = path
    return found


def load_scores(
    layout: Layout,
    preset: Preset | None,
    runs: Runs | None = None,
    data: str | None = None,
    notes: list[str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """{score name: [N]} of every base score, LiSSA and the TracIn variants (`tracin_best`,
    `tracin_dropout`), plus {score name: source file name}. `runs` defaults to the workdir's."""
    from valuation import scores

    if runs is None:
        runs = load_runs(layout, notes)
    files = score_files(layout, runs, preset, data, notes)
    named: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    for variant in (v for v in VARIANTS if v in files):
        try:
            got, _ = scores.load_scores(files[variant])
        except (OSError, scores.ScoreFileError) as e:  # the message names the file
            warn(f"skipped {variant} scores: {e}", notes)
            continue
        key = {"base": None, "lissa": "lissa"}.get(variant, "tracin")
        if key is not None and key not in got:
            warn(f"skipped {variant} scores: {files[variant]} holds no '{key}' scores", notes)
            continue
        if variant == "base":
            picked = {k: v for k, v in got.items() if k != "token"}
        else:
            picked = {variant if key == "tracin" else key: got[key]}
        for k, v in picked.items():
            named[k], source[k] = v, files[variant].name
    return named, source
