"""The default transform registry, built when asked for: no registry is filled at import.

:func:`default_registry` returns a new :class:`~miglab.compat.registry.Registry` holding what
miglab knows about QEMU 5.2, 7.2, 10.0 and 11.1: the virtio rules
(:mod:`miglab.compat.virtio_rules`, ``virtio_features``, ``virtio_subsections``) and the
knowledge file's build and machine-generation steps (:mod:`miglab.compat.qemu_transforms`).
Each call builds its own, so a transform a caller adds to one is seen by no other::

    reg = default_registry()

    @reg.register("e1000", src="10.0", dst="7.2")
    def _(edit): ...

    convert_stream(stream, to_qemu="7.2", machine="pc-q35-7.2", registry=reg)
"""

from __future__ import annotations

from miglab.compat.qemu_transforms import register_qemu_transforms
from miglab.compat.registry import Plan, Registry
from miglab.compat.virtio_features import register_feature_transforms
from miglab.compat.virtio_rules import register_virtio_transforms
from miglab.compat.virtio_subsections import register_subsection_transforms

__all__ = ("default_registry", "plan")


def default_registry() -> Registry:
    """A new registry with every transform miglab ships, in the order their steps run."""
    registry = Registry()
    register_virtio_transforms(registry)
    register_feature_transforms(registry)
    register_subsection_transforms(registry)
    register_qemu_transforms(registry)
    return registry


def plan(device: str, src: str, dst: str, registry: Registry | None = None) -> Plan:
    """Plan ``device`` from ``src`` to ``dst`` in ``registry`` (default: :func:`default_registry`)."""
    return (registry if registry is not None else default_registry()).plan(device, src, dst)
