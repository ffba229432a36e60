"""Device mesh, logical-axis rules and shardings (big_vision style: sharding is data in the config).

The config names mesh axes and their sizes (``mesh.axes = (("data", -1), ("fsdp", 1), ("model", 1))``,
-1 = all remaining devices) and rules from the models' logical parameter axes ("vocab", "embed",
"mlp", "heads", ...) to mesh axes or tuples of them (``mesh.rules = (("vocab", "fsdp"), ("mlp", "model"))``).
Parameters and optimiser state become ``NamedSharding``s; the batch is split over the data axes
(every mesh axis that is not a model-parallel axis: data + fsdp).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Mesh axes that split the batch; every other axis (e.g. "tensor") splits parameters only.
BATCH_AXES = ("data", "fsdp")
PathKey = str


def mesh_shape(axes, num_devices: int) -> dict[str, int]:
    """Resolve one -1 size to the remaining devices; the product must equal ``num_devices``.
    ``axes``: ``{name: size}`` or ``((name, size), ...)`` (the config's form)."""
    sizes = {str(k): int(v) for k, v in dict(axes).items()}
    free = [k for k, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"mesh.axes: at most one axis may be -1, got {sizes}")
    if any(v == 0 or v < -1 for v in sizes.values()):
        raise ValueError(f"mesh.axes: sizes must be positive or -1, got {sizes}")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if free:
        if num_devices % fixed:
            raise ValueError(f"mesh.axes {sizes}: {num_devices} devices are not divisible by {fixed}")
        sizes[free[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise ValueError(f"mesh.axes {sizes} needs {math.prod(sizes.values())} devices, found {num_devices}")
    return sizes


def make_mesh(axes, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over ``devices`` (default: all devices of all processes) with the config's axes."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(axes, len(devices))
    try:
        grid = mesh_utils.create_device_mesh(tuple(sizes.values()), devices)
    except (ValueError, AssertionError, NotImplementedError):  # e.g. a shape the topology cannot tile
        grid = np.asarray(devices).reshape(tuple(sizes.values()))
    return Mesh(grid, tuple(sizes))


def logical_to_spec(
    names: Sequence[str | None] | None,
    shape: Sequence[int],
    rules: Iterable[tuple[str, str | None]],
    mesh: Mesh,
) -> PartitionSpec:
    """Map one tensor's logical axis names to a ``PartitionSpec`` with the rules.

    A logical axis without a rule, a mesh axis already used by an earlier dimension, or a
    dimension not divisible by the mesh axis size stays replicated (vocabularies like 12,000 rows
    need not divide the device count).
    """
    if not names:
        return PartitionSpec()
    if len(names) != len(shape):
        raise ValueError(f"logical axes {tuple(names)} do not match tensor shape {tuple(shape)}")
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for name, dim in zip(names, shape, strict=True):
        target = table.get(name) if name is not None else None
        axes = () if target is None else tuple(target) if isinstance(target, (tuple, list)) else (target,)
        for axis in axes:
            if axis not in mesh.shape:
                raise ValueError(f"mesh.rules maps {name!r} to {axis!r}, which is not a mesh axis {tuple(mesh.shape)}")
        axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
        size = math.prod(mesh.shape[a] for a in axes)
        if not axes or dim % size:
            spec.append(None)
        else:
            spec.append(axes[0] if len(axes) == 1 else axes)
            used.update(axes)
    return PartitionSpec(*spec)


def param_shardings(
    logical_axes: Mapping[PathKey, Sequence[str | None] | None],
    shapes: Mapping[PathKey, Sequence[int]],
    mesh: Mesh,
    rules: Iterable[tuple[str, str | None]],
) -> dict[PathKey, NamedSharding]:
    """``NamedSharding`` for every parameter of a flat ``{path: array}`` parameter dict."""
    rules = [tuple(r) for r in rules]
    return {k: NamedSharding(mesh, logical_to_spec(logical_axes.get(k), shapes[k], rules, mesh)) for k in shapes}


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes that split the batch (data and fsdp, when present)."""
    return tuple(a for a in BATCH_AXES if a in mesh.shape)


def batch_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Sharding of a batch array: its batch dimension (after ``leading`` unsplit dimensions, e.g.
    the gradient-accumulation axis) over the data axes, everything else replicated."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), batch_axes(mesh)))


def like_params(tree, params_sharding: Mapping[PathKey, NamedSharding], params_shape: Mapping, mesh: Mesh):
    """Shardings for a pytree derived from the parameters (optimiser state): a leaf whose key path
    ends in a parameter's key and has that parameter's shape gets the parameter's sharding
    (Adam's mu/nu); any other leaf (step counts, scalars) is replicated."""
    rep = replicated(mesh)

    def pick(path, leaf):
        for entry in reversed(path):
            key = getattr(entry, "key", None)
            if isinstance(key, str) and key in params_sharding:
                if tuple(np.shape(leaf)) == tuple(params_shape[key]):
                    return params_sharding[key]
                break
        return rep

    return jax.tree_util.tree_map_with_path(pick, tree)


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh, leading: int = 0) -> dict[str, jax.Array]:
    """Assemble this process's slice of the batch into global arrays split over the data axes."""
    sharding = batch_sharding(mesh, leading)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}
