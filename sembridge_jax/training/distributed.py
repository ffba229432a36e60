"""Multi-process setup: one place that decides whether and how to call ``jax.distributed.initialize``,
and a helper that runs a host-side precompute (the bridge alignment) once, on process 0.

Decision order (``plan_distributed``, a pure function of the environment):

1. explicit: ``SEMBRIDGE_COORDINATOR`` (``host:port``) with ``SEMBRIDGE_NUM_PROCESSES`` and
   ``SEMBRIDGE_PROCESS_ID`` (or the same three as arguments) -> ``initialize(addr, n, i)``;
2. ``SEMBRIDGE_DISTRIBUTED=0`` -> single process, whatever else the environment says;
3. auto: a launcher jax detects by itself (Cloud TPU VM, ``TPU_WORKER_HOSTNAMES``, multi-task SLURM
   or Open MPI, ``JAX_COORDINATOR_ADDRESS``) or ``SEMBRIDGE_DISTRIBUTED=1`` -> ``initialize()``;
4. otherwise a single process and no call at all.

Waiting across processes for host-side work uses jax's coordination service (``barrier``,
``run_on_main_process``), never a device collective: on CPU, gloo gives up creating a
communicator when a process arrives more than 30 s after the others.

Preemption: ``jax.distributed.initialize`` starts jax's preemption service, which takes over SIGTERM; a
notice on any process reaches all of them and they agree on a step to stop at
(``preemption_sync_manager``; the trainer consults it once per step).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
from etils import epath
from jax._src import cloud_tpu_init
from jax._src import distributed as jax_distributed

from sembridge_jax.storage import as_path, remove

log = logging.getLogger(__name__)

T = TypeVar("T")
ENV_COORDINATOR = "SEMBRIDGE_COORDINATOR"
ENV_NUM_PROCESSES = "SEMBRIDGE_NUM_PROCESSES"
ENV_PROCESS_ID = "SEMBRIDGE_PROCESS_ID"
ENV_SWITCH = "SEMBRIDGE_DISTRIBUTED"


@dataclasses.dataclass(frozen=True)
class DistributedPlan:
    """How this process joins the job. ``mode``: "single", "explicit", "auto" (jax detects the
    cluster; ``num_processes``/``process_id`` are then known only after initialisation) or
    "external" (someone called ``jax.distributed.initialize`` before us)."""

    mode: str
    coordinator: str | None = None
    num_processes: int | None = 1
    process_id: int | None = 0


_active: DistributedPlan | None = None


def _running_in_cloud_tpu_vm() -> bool:
    # The flag jax's own Cloud TPU cluster detection uses (set at `import jax` from the PCI devices).
    return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def _int_env(env: Mapping[str, str], key: str) -> int:
    value = env.get(key)
    if value is None or value == "":
        raise ValueError(f"{ENV_COORDINATOR} is set, so {key} must be set too")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{key}={value!r} is not an integer") from None


def _launcher_detected(env: Mapping[str, str], cloud_tpu_vm: bool) -> str | None:
    """The name of a multi-process launcher that ``jax.distributed.initialize()`` detects alone."""
    if cloud_tpu_vm:
        return "Cloud TPU VM"
    if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return "TPU_WORKER_HOSTNAMES"
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "JAX_COORDINATOR_ADDRESS"
    for key in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        count = env.get(key, "1")
        if count.isdigit() and int(count) > 1:
            return key
    return None


def plan_distributed(
    env: Mapping[str, str] | None = None,
    *,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    cloud_tpu_vm: bool | None = None,
) -> DistributedPlan:
    """Decide from explicit arguments and the environment how to join the job (see module doc).

    Raises ``ValueError`` naming the variable when an explicit setting is incomplete or invalid.
    """
    env = os.environ if env is None else env
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    if coordinator is None and (num_processes is not None or process_id is not None):
        raise ValueError(f"num_processes/process_id given without a coordinator address ({ENV_COORDINATOR})")
    if coordinator is not None:
        n = num_processes if num_processes is not None else _int_env(env, ENV_NUM_PROCESSES)
        i = process_id if process_id is not None else _int_env(env, ENV_PROCESS_ID)
        if ":" not in coordinator:
            raise ValueError(f"{ENV_COORDINATOR}={coordinator!r} must be host:port")
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"{ENV_PROCESS_ID}={i} must lie in [0, {ENV_NUM_PROCESSES}={n})")
        return DistributedPlan("explicit", coordinator, n, i)
    switch = env.get(ENV_SWITCH, "")
    if switch not in ("", "0", "1"):
        raise ValueError(f"{ENV_SWITCH}={switch!r} must be 0, 1 or unset")
    if switch == "0":
        return DistributedPlan("single")
    cloud_tpu_vm = _running_in_cloud_tpu_vm() if cloud_tpu_vm is None else cloud_tpu_vm
    if switch == "1" or _launcher_detected(env, cloud_tpu_vm):
        return DistributedPlan("auto", None, None, None)
    return DistributedPlan("single")


def initialise_distributed(
    env: Mapping[str, str] | None = None,
    *,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = 300,
) -> DistributedPlan:
    """Join the multi-process job the environment describes (or stay single); call it first, before
    anything touches a jax device. Idempotent: later calls return the first result.

    Returns the plan with the real process id and count filled in.
    """
    global _active
    if _active is not None:
        return _active
    if jax.distributed.is_initialized():  # someone initialised jax directly: report what they did
        _active = DistributedPlan("external", None, jax.process_count(), jax.process_index())
        return _active
    plan = plan_distributed(env, coordinator=coordinator, num_processes=num_processes, process_id=process_id)
    if plan.mode == "explicit":
        jax.distributed.initialize(
            coordinator_address=plan.coordinator,
            num_processes=plan.num_processes,
            process_id=plan.process_id,
            initialization_timeout=timeout_s,
        )
    elif plan.mode == "auto":
        jax.distributed.initialize(initialization_timeout=timeout_s)
        plan = dataclasses.replace(plan, num_processes=jax.process_count(), process_id=jax.process_index())
    if plan.mode != "single":
        log.info("jax.distributed (%s): process %d of %d", plan.mode, plan.process_id, plan.num_processes)
    _active = plan
    return plan


def preemption_sync_manager():
    """jax's preemption sync manager when ``jax.distributed`` is initialised (it then owns SIGTERM), else None.

    ``reached_sync_point(n)``, called by every process with the same increasing ``n``, returns True on
    all of them at the same ``n`` after a SIGTERM reached any one (the largest ``n`` any process had
    passed when the notice arrived, plus one); see ``multihost_utils.reached_preemption_sync_point``."""
    return jax_distributed.global_state.preemption_sync_manager


def process_slot() -> tuple[int, int]:
    """(this process's index, the number of processes): which slice of each global batch it reads."""
    return jax.process_index(), jax.process_count()


def is_main_process() -> bool:
    """Whether this is process 0 (the one that writes shared artifacts and logs)."""
    return jax.process_index() == 0


def _published_marker(path: epath.Path) -> epath.Path:
    return path.parent / f".{path.name}.published"


def _publish(build_fn: Callable[[epath.Path], Any], path: epath.Path) -> None:
    """Build into a temporary sibling, rename it, then write a marker: a crashed build (or a
    crashed rename, which is a copy on object stores) never passes for a finished artifact."""
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    remove(tmp)
    remove(_published_marker(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    build_fn(tmp)
    if not tmp.exists():
        raise FileNotFoundError(f"the build function returned without writing its artifact {tmp}")
    remove(path)
    tmp.rename(path)
    _published_marker(path).write_text("")


def _coordination_client():
    """jax's coordination-service client (the one ``jax.distributed`` starts; orbax uses it too)."""
    client = jax_distributed.global_state.client
    if client is None:
        raise RuntimeError(
            f"{jax.process_count()} processes but jax.distributed is not initialised: call initialise_distributed() first"
        )
    return client


def barrier(name: str, timeout_s: float = 3600) -> None:
    """Wait until every process reaches ``barrier(name)`` (no-op with one process). Uses jax's
    coordination service with a timeout, not a device collective (see ``run_on_main_process``)."""
    if jax.process_count() > 1:
        _coordination_client().wait_at_barrier(f"sembridge/{name}", int(timeout_s * 1000))


_main_process_calls = itertools.count()  # every process calls in the same order (SPMD), so keys agree


def run_on_main_process(
    build_fn: Callable[[epath.Path], Any],
    artifact_path: str | os.PathLike,
    *,
    load_fn: Callable[[epath.Path], T] | None = None,
    reuse: bool = True,
    timeout_s: float = 6 * 3600,
) -> T | epath.Path:
    """Process 0 runs ``build_fn(path)`` (it must write a file or folder at ``path``) and publishes
    the result at ``artifact_path``; every process waits for it, then returns ``load_fn(artifact_path)``
    (or the path). With ``reuse``, an artifact that already exists is not rebuilt (e.g. on restart).

    The others wait on jax's coordination service (key-value store, up to ``timeout_s``), not on a
    device collective: CPU (gloo) collectives give up when the other processes are more than 30 s
    late, and a bridge precompute takes minutes. Process 0 publishes success or its error there, so
    when the build fails process 0 re-raises and every other process raises instead of hanging.
    All processes return together (a barrier after loading), ready for the next collective.
    ``artifact_path`` must be visible to all processes (a shared disk or a ``gs://`` path).
    """
    path = as_path(artifact_path)
    call = next(_main_process_calls)
    key = f"sembridge/run_on_main_process/{call}"
    multi = jax.process_count() > 1
    if is_main_process():
        error: Exception | None = None
        if not (reuse and _published_marker(path).exists()):
            try:
                _publish(build_fn, path)
            except Exception as e:  # noqa: BLE001 - reported to every process, then re-raised
                error = e
                log.error("building %s on process 0 failed:\n%s", path, traceback.format_exc())
        if multi:
            _coordination_client().key_value_set(key, "ok" if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
    else:
        try:
            status = _coordination_client().blocking_key_value_get(key, int(timeout_s * 1000))
        except Exception as e:  # noqa: BLE001 - jax raises a bare runtime error on the deadline
            raise TimeoutError(f"process {jax.process_index()} waited {timeout_s:.0f} s for process 0 "
                               f"to build {path}: {e}") from e
        if status != "ok":
            raise RuntimeError(f"process 0 failed to build {path}: {status}")
    if not _published_marker(path).exists():
        raise FileNotFoundError(
            f"{path} was built by process 0 but is not visible on process {jax.process_index()}: "
            "put the artifact on storage all hosts share (e.g. gs:// or NFS)"
        )
    result = load_fn(path) if load_fn is not None else path
    barrier(f"run_on_main_process/{call}/loaded", timeout_s)  # leave together: the next step may be a collective
    return result
