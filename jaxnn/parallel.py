"""Training on several devices and processes, on JAX's own distribution: ``jax.sharding`` and
``jax.distributed``.

Data parallelism the way ``jit`` does it: parameters, layer state and optimizer state are
replicated on every device of a :class:`~jax.sharding.Mesh` with one axis, ``"data"``; each batch
is split along its first axis over that axis; XLA partitions the step and inserts the sums of
gradients (and of BatchNorm's statistics) across devices. Nothing here communicates by itself.

- :func:`data_mesh` builds the mesh over all devices of all processes, or the given ones.
- :func:`initialize` starts ``jax.distributed`` for several processes (on a cluster, under
  ``jaxnn launch``, or with explicit arguments).
- :func:`replicate`, :func:`shard_batch` and :func:`to_host` move host data and train states onto
  a mesh and back.

``fit``, ``evaluate``, ``make_train_step`` and ``make_eval_step`` take ``mesh=``. Random numbers do
not depend on how arrays are split (JAX's partitionable Threefry), so a run on any number of
devices draws the same permutations and dropout masks as on one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnn._checks import check_int

DATA_AXIS = "data"

# The variables ``jaxnn launch`` sets for each process it starts, read by :func:`initialize`.
COORDINATOR_VARIABLE = "JAXNN_COORDINATOR"
NUM_PROCESSES_VARIABLE = "JAXNN_NUM_PROCESSES"
PROCESS_ID_VARIABLE = "JAXNN_PROCESS_ID"

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "check_mesh",
    "data_mesh",
    "initialize",
    "is_main_process",
    "place",
    "replicate",
    "replicated",
    "shard_batch",
    "sync",
    "to_host",
]


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis :class:`~jax.sharding.Mesh` named ``"data"`` over ``devices``.

    Args:
      devices: the devices to train on; by default all of them, across every process
        (``jax.devices()``). Under several processes, a mesh must hold devices of every process.

    Example::

        mesh = jaxnn.parallel.data_mesh()                       # every device
        mesh = jaxnn.parallel.data_mesh(jax.devices()[:2])      # the first two
    """
    if devices is None:
        devices = jax.devices()
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
        raise TypeError(f"data_mesh: `devices` must be a list of jax devices, got {devices!r}")
    devices = list(devices)
    if not devices:
        raise ValueError("data_mesh: `devices` is empty; a mesh needs at least one device")
    for device in devices:
        if not isinstance(device, jax.Device):
            raise TypeError(f"data_mesh: `devices` must hold jax devices (from jax.devices()), got {device!r}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"data_mesh: `devices` lists a device more than once: {devices}")
    return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,))


def check_mesh(mesh: Any, where: str) -> Mesh:
    """Returns ``mesh`` if it is a :class:`~jax.sharding.Mesh` with a ``"data"`` axis, else raises."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{where}: `mesh` must be a jax.sharding.Mesh such as jaxnn.parallel.data_mesh(), "
                        f"got {type(mesh).__name__}")
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"{where}: `mesh` has axes {mesh.axis_names}; data parallelism splits batches "
                         f"over an axis named {DATA_AXIS!r}, as jaxnn.parallel.data_mesh() makes")
    if mesh.devices.size != mesh.shape[DATA_AXIS]:
        raise ValueError(f"{where}: `mesh` has axes {dict(mesh.shape)}; jaxnn splits batches over "
                         f"{DATA_AXIS!r} alone, so every other axis must have size 1")
    return mesh


def data_devices(mesh: Mesh) -> int:
    """How many devices a batch is split over."""
    return mesh.shape[DATA_AXIS]


def check_batch_size(batch_size: int, mesh: Mesh, where: str, argument: str = "batch_size") -> None:
    """Raises unless the global ``batch_size`` splits evenly over the mesh's devices."""
    devices = data_devices(mesh)
    if batch_size % devices:
        raise ValueError(f"{where}: `{argument}` (={batch_size}) is the global batch and must be divisible "
                         f"by the number of devices in the mesh (={devices})")


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of an array held whole on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """The sharding of a batch split along its first axis over ``"data"``.

    ``leading_axes`` axes before the batch axis are not split (1 for the ``(steps, batch, ...)``
    arrays of ``steps_per_call > 1``).
    """
    return NamedSharding(mesh, PartitionSpec(*([None] * leading_axes), DATA_AXIS))


def place(value: Any, sharding: jax.sharding.Sharding) -> jax.Array:
    """``value`` (an array, the same on every process) as one global array of ``sharding``."""
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        data = place(jax.random.key_data(value), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array of ``tree`` (a train state, params) held whole on every device of ``mesh``.

    Under several processes, every process must pass the same values (as it does when each
    creates the train state from the same seed, or restores the same checkpoint).
    """
    sharding = replicated(check_mesh(mesh, "replicate"))
    return jax.tree.map(lambda leaf: place(leaf, sharding), tree)


def shard_batch(batch: Any, mesh: Mesh, *, leading_axes: int = 0, process_local: bool = False) -> Any:
    """Every array of ``batch`` split along its batch axis over the mesh's ``"data"`` axis.

    Args:
      batch: arrays (``x``, ``(x, y)``, a dict) whose batch axis comes after ``leading_axes``
        axes.
      mesh: from :func:`data_mesh`.
      leading_axes: axes before the batch axis (1 for ``steps_per_call > 1`` batches).
      process_local: ``False`` (default): every process passes the whole global batch.
        ``True``: each process passes only its own rows, in process order, and the global batch
        is their concatenation (``jax.make_array_from_process_local_data``).
    """
    mesh = check_mesh(mesh, "shard_batch")
    sharding = batch_sharding(mesh, leading_axes)

    def split(leaf):
        leaf = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if process_local:
            return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
        check_batch_size(leaf.shape[leading_axes], mesh, "shard_batch", "batch size")
        return place(leaf, sharding)

    return jax.tree.map(split, batch)


def to_host(tree: Any) -> Any:
    """Every array of ``tree`` as a NumPy array holding its global value, on every process.

    Arrays split over the devices of several processes are gathered (``process_allgather``).
    """

    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(jax.device_get(leaf))

    return jax.tree.map(fetch, tree)


def is_main_process() -> bool:
    """True on process 0, the one that prints and writes files."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Waits until every process reaches this point (a no-op with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Starts ``jax.distributed`` so that this process sees the devices of every process.

    Call it once, first thing, before any JAX computation, in every process. The arguments are
    found, in order, from what is given, from the variables ``jaxnn launch`` sets
    (``JAXNN_COORDINATOR``, ``JAXNN_NUM_PROCESSES``, ``JAXNN_PROCESS_ID``), and otherwise by
    JAX's own detection of the cluster it runs in (SLURM, Open MPI, Kubernetes, Cloud TPU). On
    CPU, processes exchange data through the Gloo collectives.

    Args:
      coordinator: ``"host:port"`` of process 0's coordination service.
      num_processes: how many processes take part.
      process_id: this process's index, ``0 .. num_processes - 1``.

    Raises:
      RuntimeError: called twice, or after JAX has started computing.
      TypeError, ValueError: an argument of the wrong type or value.

    Example (on a SLURM cluster, ``srun python train.py``)::

        jaxnn.parallel.initialize()
        mesh = jaxnn.parallel.data_mesh()
    """
    if jax.distributed.is_initialized():
        raise RuntimeError("initialize: jax.distributed is already initialized in this process; call "
                           "jaxnn.parallel.initialize() once")
    environment = os.environ
    if coordinator is None:
        coordinator = environment.get(COORDINATOR_VARIABLE)
    if num_processes is None and NUM_PROCESSES_VARIABLE in environment:
        num_processes = _int_variable(NUM_PROCESSES_VARIABLE)
    if process_id is None and PROCESS_ID_VARIABLE in environment:
        process_id = _int_variable(PROCESS_ID_VARIABLE)
    if coordinator is not None and not isinstance(coordinator, str):
        raise TypeError(f"initialize: `coordinator` must be a 'host:port' string, got {coordinator!r}")
    if num_processes is not None:
        num_processes = check_int(num_processes, "num_processes", "initialize", low=1)
    if process_id is not None:
        process_id = check_int(process_id, "process_id", "initialize", low=0)
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(f"initialize: `process_id` (={process_id}) must be below `num_processes` "
                             f"(={num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except RuntimeError as error:
        if "before any JAX" in str(error):
            raise RuntimeError("initialize: JAX has already started computing in this process; call "
                               "jaxnn.parallel.initialize() first, before creating any array or calling "
                               "jax.devices()") from error
        raise


def _int_variable(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"initialize: the environment variable {name} must be an int, got {value!r}") from None
