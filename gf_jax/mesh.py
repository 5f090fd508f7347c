"""Device mesh, shardings and the few multi-process rules of training (data parallel).

Batches are split along their leading axis over one `data` axis, parameters and optimizer state
are replicated, and the same `jax.jit`-compiled step runs on one device or many (no pmap).

Several processes (one per host) run the same program on the global mesh. Every process builds
the same host batches (the sample order flows from the seed) and feeds only its addressable
shards; process 0, the lead, is the only one that touches the run's files, and shares what it
read (its verdict on the workdir, a restored checkpoint) with `on_lead` / `broadcast_arrays`.
Words go through JAX's coordination service, so a process may wait for the lead as long as it
takes; a device collective that runs for the first time is entered only after a `barrier`,
because gloo gives every process just 30 s to join it. In a single process every helper here is
the plain single-machine operation.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gf_jax import cli

DATA_AXIS = "data"
LEAD = 0  # the process that writes files, holds the workdir lock and shows progress
T = TypeVar("T")


class LeadProcessError(RuntimeError):
    """Raised on the other processes when process 0 failed; carries process 0's message."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """How this process joins a multi-process run (all None: JAX detects it from the cluster).

    Attributes:
      coordinator: host:port of process 0's coordination service.
      num_processes: processes in the run.
      process_id: this process's index, in [0, num_processes).
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def validate(self) -> Cluster:
        """cli.UsageError naming the flag when the three are given only in part or out of range."""
        given = [x is not None for x in dataclasses.astuple(self)]
        if any(given) and not all(given):
            raise cli.UsageError(
                "--coordinator, --num-processes and --process-id go together: give all three "
                "(or none on SLURM / Cloud TPU, where they are detected)"
            )
        if all(given):
            if self.num_processes < 1:
                raise cli.UsageError(f"--num-processes must be >= 1, got {self.num_processes}")
            if not 0 <= self.process_id < self.num_processes:
                raise cli.UsageError(
                    f"--process-id must be in [0, {self.num_processes}), got {self.process_id}"
                )
        return self


def cluster_detected(environ: dict[str, str] | None = None) -> str | None:
    """The name of a multi-process cluster environment this process runs in, or None.

    Mirrors the environments `jax.distributed.initialize()` detects by itself, narrowed to the
    ones where more than one process is actually running, so a plain machine (or a one-task
    SLURM allocation) never waits for peers that will not come:
    SLURM: `srun` of several tasks (JAX reads SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS,
    SLURM_PROCID and SLURM_LOCALID; see `jax._src.clusters.slurm_cluster`).
    Cloud TPU: a TPU VM (libtpu installed and TPU chips present, or the worker list GKE sets);
    JAX's TPU cluster environments then read the slice's workers from the metadata server.
    """
    env = os.environ if environ is None else environ
    slurm_vars = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")
    if all(v in env for v in (*slurm_vars, "SLURM_LOCALID")):
        tasks = env.get("SLURM_STEP_NUM_TASKS", env["SLURM_NTASKS"])
        if tasks.isdigit() and int(tasks) > 1:
            return "slurm"
    if env.get("TPU_WORKER_HOSTNAMES") or env.get("TPU_PROCESS_ADDRESSES"):
        return "cloud-tpu"
    if environ is None and _tpu_chips_present():
        return "cloud-tpu"
    return None


def _tpu_chips_present() -> bool:
    """A Cloud TPU VM: libtpu is installed and the PCI bus lists TPU chips (no network query)."""
    if importlib.util.find_spec("libtpu") is None:
        return False
    try:  # JAX's own check (private, hence guarded): reads /sys/bus/pci, starts no backend
        from jax._src import hardware_utils

        return hardware_utils.num_available_tpu_chips_and_device_id()[0] > 0
    except Exception:  # an unknown layout means "not detected", never a crash
        return False


def initialize_distributed(cluster: Cluster = Cluster()) -> str | None:
    """Joins a multi-process run before any other JAX call; says how (None: single process).

    Explicit flags win; with none, `jax.distributed.initialize()` is called without arguments
    when `cluster_detected()` finds a cluster (JAX then reads everything from it), and not at
    all on a plain machine.
    """
    cluster.validate()
    if cluster.coordinator is not None:
        if cluster.num_processes == 1:
            return None
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator,
            num_processes=cluster.num_processes,
            process_id=cluster.process_id,
        )
        return "flags"
    found = cluster_detected()
    if found is not None:
        jax.distributed.initialize()
    return found


def is_lead() -> bool:
    """True in the process that writes the run's files (process 0; the only one if single)."""
    return jax.process_index() == LEAD


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named `data` over `devices` (default: all global devices)."""
    devs = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devs, (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the `data` axis, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def _place(tree: Any, sharding: NamedSharding) -> Any:
    """Every process holds the whole host value; each feeds only its addressable devices."""
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def one(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, tree)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Places a host batch (pytree of arrays with a leading batch axis) across the mesh."""
    n = mesh.devices.size
    for leaf in jax.tree.leaves(batch):
        if leaf.shape[0] % n:
            raise ValueError(f"batch size {leaf.shape[0]} is not divisible by {n} devices")
    return _place(batch, batch_sharded(mesh))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """A host (or single-device) pytree replicated on every device of the mesh."""
    sharding = replicated(mesh)
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    return _place(jax.device_get(tree), sharding)


def to_host(tree: Any) -> Any:
    """Numpy values of a pytree of (possibly sharded, multi-process) arrays, on every process."""
    leaves = jax.tree.leaves(tree)
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def round_up_to_devices(batch_size: int, mesh: Mesh) -> int:
    """Smallest multiple of the device count that holds `batch_size` examples."""
    n = mesh.devices.size
    return -(-batch_size // n) * n


# ----------------------------------------------------------------------------- the lead shares

# How long a process waits for the lead's word or for its peers at a barrier: the lead may be
# building a data cache for hours. If a process dies, JAX's coordination service stops the rest.
WAIT_MS = 24 * 3600 * 1000
_sequence = itertools.count()  # every process makes the same calls in the same order


def _client() -> Any:
    """JAX's coordination-service client (no public accessor; orbax reads it the same way)."""
    from jax._src import distributed

    return distributed.global_state.client


def _key(kind: str) -> str:
    return f"gf_jax/{kind}/{next(_sequence)}"


def barrier() -> None:
    """Waits until every process is here (the coordination service, not a device collective).

    Needed before a collective that may run for the first time: its first run opens gloo's
    connections and gives every process a fixed 30 s to arrive, less than a process may spend
    alone (compiling, or on the lead's own work).
    """
    if jax.process_count() > 1:
        _client().wait_at_barrier(_key("barrier"), WAIT_MS)


def broadcast_json(value: Any) -> Any:
    """The lead's JSON-serialisable `value`, on every process (others pass anything, e.g. None).

    Through the coordination service's key-value store: the others wait as long as the lead
    takes, with no device collective involved.
    """
    if jax.process_count() == 1:
        return value
    key = _key("share")
    if is_lead():
        text = json.dumps(value)
        _client().key_value_set(key, text)
        return json.loads(text)  # what the others get, tuples turned into lists alike
    return json.loads(_client().blocking_key_value_get(key, WAIT_MS))


def broadcast_arrays(tree: Any, like: Any) -> Any:
    """The lead's pytree of host arrays, on every process; the others pass `like` (same shapes).

    Exact: the broadcast is a sum in which every process but the lead contributes zeros.
    """
    if jax.process_count() == 1:
        return tree
    src = tree if is_lead() else jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), like)
    barrier()  # a collective: all must arrive within gloo's 30 s
    return multihost_utils.broadcast_one_to_all(src)


def on_lead(fn: Callable[[], T]) -> T:
    """Runs `fn` on the lead only and returns its JSON-serialisable result on every process.

    If `fn` raises on the lead, the lead re-raises it and every other process raises
    `LeadProcessError` with its message: no process is left waiting for a peer that gave up.
    """
    if jax.process_count() == 1:
        return fn()
    if not is_lead():
        verdict = broadcast_json(None)
        if "error" in verdict:
            raise LeadProcessError(f"process {LEAD}: {verdict['error']}")
        return verdict["value"]
    try:
        value = fn()
    except Exception as e:
        broadcast_json({"error": str(e) or type(e).__name__})
        raise
    broadcast_json({"value": value})
    return value


def lead_does(fn: Callable[[], object]) -> None:
    """Runs `fn` (a write) on the lead only; if it fails, every process raises (see `on_lead`)."""

    def run() -> None:  # the result stays on the lead: only success or failure is shared
        fn()

    on_lead(run)


def lead_first(fn: Callable[[], T]) -> T:
    """Runs `fn` on the lead, then on the others: a shared cache is built once, then read.

    If it fails on the lead, the others raise `LeadProcessError` instead of running it.
    """
    if jax.process_count() == 1:
        return fn()
    held: dict[str, T] = {}

    def run() -> None:  # the value stays on the lead; the others wait for its success
        held["value"] = fn()

    on_lead(run)
    return held["value"] if is_lead() else fn()
