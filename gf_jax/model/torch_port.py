"""Original GameFormer-Planner PyTorch weights <-> our params.

    python -m gf_jax.model.torch_port convert STATE_DICT.npz --out DIR [--preset paper]
    python -m gf_jax.model.torch_port check FIXTURE.npz

`convert` writes a state dict (.npz of the exact torch names) as our checkpoint. `check` runs
the parity-fixture check of `gf_jax.parity` (also `python -m gf_jax.parity FIXTURE.npz`): it
compares every output, intermediate, loss, best mode, metric and gradient the fixture holds
with the fixture README's tolerances, prints a table and exits 1 if any exceeds them.

Layout rules (fixture README): Linear weights are (out, in) and are transposed; LSTM gate
blocks are already in our order (i, f, g, o) and both biases are kept; attention in-projections
are packed q, k, v; the shared future encoder appears once per interaction level (the copies
must agree); buffers (position tables, index ranges) are recomputed and ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gf_jax import cli
from gf_jax.config import PRESETS, ModelConfig
from gf_jax.data.schema import DataError
from gf_jax.model import gameformer

Path_ = tuple[str, ...]
PREFIXES = ("encoder.", "decoder.", "planner.")
BUFFER_SUFFIXES = (".position_encode.pe",)
BUFFER_NAMES = ("decoder.initial_predictor.modal", "decoder.initial_predictor.agent")


class StateDictError(ValueError):
    """A state dict that does not fit the model; one line naming the key and the problem."""


@dataclasses.dataclass(frozen=True)
class Entry:
    torch_name: str
    path: Path_
    transpose: bool


def _linear(torch: str, path: Path_) -> Iterator[Entry]:
    yield Entry(f"{torch}.weight", (*path, "kernel"), True)
    yield Entry(f"{torch}.bias", (*path, "bias"), False)


def _norm(torch: str, path: Path_) -> Iterator[Entry]:
    yield Entry(f"{torch}.weight", (*path, "scale"), False)
    yield Entry(f"{torch}.bias", (*path, "bias"), False)


def _attention(torch: str, path: Path_) -> Iterator[Entry]:
    yield Entry(f"{torch}.in_proj_weight", (*path, "in_kernel"), True)
    yield Entry(f"{torch}.in_proj_bias", (*path, "in_bias"), False)
    yield from _linear(f"{torch}.out_proj", (*path, "out"))


def _mlp(torch: str, path: Path_, torch_indices: tuple[int, ...]) -> Iterator[Entry]:
    for i, t in enumerate(torch_indices):
        yield from _linear(f"{torch}.{t}", (*path, "layers", str(i)))


def _block(torch: str, path: Path_, attention: str, ffn: tuple[str, str], norms: tuple[str, str]):
    yield from _attention(f"{torch}.{attention}", (*path, "attention"))
    yield from _linear(f"{torch}.{ffn[0]}", (*path, "ffn", "linear_1"))
    yield from _linear(f"{torch}.{ffn[1]}", (*path, "ffn", "linear_2"))
    yield from _norm(f"{torch}.{norms[0]}", (*path, "norm_1"))
    yield from _norm(f"{torch}.{norms[1]}", (*path, "norm_2"))


def _decoder_block(torch: str, path: Path_, attention: str) -> Iterator[Entry]:
    yield from _block(torch, path, attention, ("ffn.0", "ffn.3"), ("norm_1", "norm_2"))


def _lstm(torch: str, path: Path_, num_layers: int) -> Iterator[Entry]:
    for i in range(num_layers):
        p = (*path, "layers", str(i))
        yield Entry(f"{torch}.weight_ih_l{i}", (*p, "kernel_ih"), True)
        yield Entry(f"{torch}.weight_hh_l{i}", (*p, "kernel_hh"), True)
        yield Entry(f"{torch}.bias_ih_l{i}", (*p, "bias_ih"), False)
        yield Entry(f"{torch}.bias_hh_l{i}", (*p, "bias_hh"), False)


def _gmm(torch: str, path: Path_) -> Iterator[Entry]:
    yield from _mlp(f"{torch}.gaussian", (*path, "gaussian"), (0, 3))
    yield from _mlp(f"{torch}.score", (*path, "score"), (0, 2))


def entries(model_config: ModelConfig) -> list[Entry]:
    """Every trainable state-dict entry of the original model and where it lives in params.

    The shared future encoder is listed once per interaction level, all with the same path.
    """
    c = model_config
    out: list[Entry] = []
    for name, torch in (("ego_encoder", "ego_encoder"), ("agent_encoder", "agent_encoder")):
        out += _lstm(f"encoder.{torch}.motion", ("encoder", name, "motion"), c.lstm_layers)
    for name in ("lane_encoder", "crosswalk_encoder"):
        out += _mlp(f"encoder.{name}.point_net", ("encoder", name, "point_net"), (0, 2, 4))
    for i in range(c.encoder_layers):
        out += _block(
            f"encoder.fusion_encoder.layers.{i}",
            ("encoder", "fusion_encoder", str(i)),
            "self_attn",
            ("linear1", "linear2"),
            ("norm1", "norm2"),
        )
    init, init_path = "decoder.initial_predictor", ("decoder", "initial_predictor")
    out.append(
        Entry(
            f"{init}.multi_modal_query_embedding.weight",
            (*init_path, "mode_embedding", "embedding"),
            False,
        )
    )
    out.append(
        Entry(
            f"{init}.agent_query_embedding.weight",
            (*init_path, "agent_embedding", "embedding"),
            False,
        )
    )
    out += _decoder_block(f"{init}.query_encoder", (*init_path, "query_encoder"), "cross_attention")
    out += _gmm(f"{init}.predictor", (*init_path, "predictor"))
    for k in range(c.decoder_levels):
        stage, path = f"decoder.interaction_stage.{k}", ("decoder", "interaction_stage", str(k))
        out += _decoder_block(
            f"{stage}.interaction_encoder", (*path, "interaction_encoder"), "self_attention"
        )
        out += _decoder_block(f"{stage}.query_encoder", (*path, "query_encoder"), "cross_attention")
        out += _mlp(f"{stage}.future_encoder.mlp", ("decoder", "future_encoder", "mlp"), (0, 2))
        out += _gmm(f"{stage}.decoder", (*path, "decoder"))
    out += _decoder_block("planner.route_fusion", ("planner", "route_fusion"), "cross_attention")
    out += _mlp("planner.plan_decoder", ("planner", "plan_decoder"), (0, 3))
    out += _mlp(
        "planner.route_encoder.point_net", ("planner", "route_encoder", "point_net"), (0, 2, 4)
    )
    return out


def _is_buffer(name: str) -> bool:
    return name in BUFFER_NAMES or name.endswith(BUFFER_SUFFIXES)


def _get(tree: Mapping[str, Any], path: Path_) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: dict[str, Any], path: Path_, value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def params_from_state_dict(
    state_dict: Mapping[str, np.ndarray], model_config: ModelConfig
) -> gameformer.Params:
    """Converts an original GameFormer-Planner state dict (exact torch names) to our params.

    Raises:
      StateDictError: one line naming the missing, unexpected or wrongly shaped key, or the
        future-encoder copy that differs from the first.
    """
    abstract = gameformer.abstract_params(model_config)
    known = entries(model_config)
    names = {e.torch_name for e in known}
    for name in state_dict:
        if name not in names and not _is_buffer(name):
            raise StateDictError(f"unexpected key {name!r} in the state dict for {model_config}")
    params: dict[str, Any] = {}
    first_source: dict[Path_, str] = {}
    for e in known:
        if e.torch_name not in state_dict:
            raise StateDictError(f"missing key {e.torch_name!r} in the state dict")
        value = np.asarray(state_dict[e.torch_name])
        want = tuple(_get(abstract, e.path).shape)
        want_torch = want[::-1] if e.transpose else want
        if value.shape != want_torch:
            raise StateDictError(
                f"key {e.torch_name!r}: expected shape {want_torch}, got {value.shape}"
            )
        value = np.asarray(value.T if e.transpose else value, np.float32)
        if e.path in first_source:
            if not np.array_equal(value, _get(params, e.path)):
                raise StateDictError(
                    f"key {e.torch_name!r}: differs from the shared copy "
                    f"{first_source[e.path]!r} (the future encoder is one shared module)"
                )
            continue
        first_source[e.path] = e.torch_name
        _set(params, e.path, value)
    if jax.tree.structure(params) != jax.tree.structure(abstract):
        raise StateDictError("internal: converted tree does not match the model's params")
    return jax.tree.map(jnp.asarray, params)


def state_dict_from_params(
    params: gameformer.Params, model_config: ModelConfig
) -> dict[str, np.ndarray]:
    """The inverse: torch names and layouts (trainable entries only, shared copies repeated).

    Also maps gradients to the original's per-parameter layout.
    """
    out = {}
    for e in entries(model_config):
        value = np.asarray(_get(params, e.path))
        out[e.torch_name] = np.ascontiguousarray(value.T if e.transpose else value)
    return out


# ----------------------------------------------------------------------------------- CLI


def _cmd_check(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the check needs gf_jax.losses and gf_jax.metrics, which
    # import gf_jax.model; a top-level import would run the dependency back up into the model.
    from gf_jax import parity

    return parity.run_check(args.fixture, strict=args.strict, verbose=args.verbose)


def load_npz(path: str | Path, what: str) -> Mapping[str, np.ndarray]:
    """The arrays of an .npz file (no pickles); a DataError naming the file otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{path}: unreadable {what} ({reason})") from None


def _model_config(args: argparse.Namespace) -> ModelConfig:
    """The preset's model with the flags' overrides; a UsageError naming the flag."""
    overrides = {
        k: v
        for k, v in (
            ("encoder_layers", args.encoder_layers),
            ("decoder_levels", args.decoder_levels),
            ("neighbors", args.neighbors),
            ("modalities", args.modalities),
        )
        if v is not None
    }
    try:
        return dataclasses.replace(PRESETS[args.preset].model, **overrides).validate()
    except ValueError as e:  # "ModelConfig.<field> must be ..."
        field = str(e).split()[0].removeprefix("ModelConfig.")
        flag = "--" + field.replace("_", "-") if field in overrides else "--preset"
        raise cli.UsageError(f"{flag}: {e}") from None


def _cmd_convert(args: argparse.Namespace) -> int:
    from gf_jax import checkpoint

    config = _model_config(args)  # flags first: nothing is read before they are checked
    z = load_npz(args.state_dict, "state dict (.npz)")
    state_dict = {k: v for k, v in z.items() if k.startswith(PREFIXES)}
    try:
        params = params_from_state_dict(state_dict, config)
    except StateDictError as err:
        raise DataError(f"{args.state_dict}: {err}") from None
    meta = {
        "source": str(args.state_dict),
        "model_config": dataclasses.asdict(config),
        "converted_from": "pytorch GameFormer-Planner state dict",
    }
    out = checkpoint.save_params(args.out, params, meta)
    print(f"wrote {gameformer.param_count(params):,} parameters to {out}")
    return 0


@cli.guarded
def main(argv: list[str] | None = None) -> int:
    """Exit 0, 1 (an unreadable or unfitting file, or a parity failure) or 2 (a bad flag)."""
    jax.config.update("jax_default_matmul_precision", "highest")
    p = cli.script_parser("python -m gf_jax.model.torch_port", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="compare the port with a parity fixture (.npz)")
    c.add_argument("fixture", type=Path)
    c.add_argument(
        "--strict",
        action="store_true",
        help="relative L2 < 1e-3 for every full gradient, even float32-noise references",
    )
    c.add_argument("--verbose", action="store_true", help="one row per gradient norm")
    c.set_defaults(func=_cmd_check)
    v = sub.add_parser("convert", help="convert a state dict (.npz of torch names) to a checkpoint")
    v.add_argument("state_dict", type=Path)
    v.add_argument("--out", type=Path, required=True)
    v.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    v.add_argument("--encoder-layers", type=int)
    v.add_argument("--decoder-levels", type=int)
    v.add_argument("--neighbors", type=int)
    v.add_argument("--modalities", type=int)
    v.set_defaults(func=_cmd_convert)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
