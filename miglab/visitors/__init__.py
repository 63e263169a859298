"""Serialize by visiting: one walk serves saving and loading.

QEMU devices used to write ``qemu_put_be32(f, port->guest_connected)``; with
visitors they write ``visit_type_u32(v, "guest_connected", ...)`` and the
*visitor* decides whether that writes QEMU's four big-endian bytes, reads
them back, or builds/reads an in-memory object tree.  The contract (who owns
what, which direction may fail, how errors name members) is in
:mod:`miglab.visitors.base`; the visitors are:

========================  ======================================================
QEMUFileOutputVisitor(f)  writes QEMU's exact bytes to a :class:`QEMUFileWriter`
QEMUFileInputVisitor(f)   reads them back; errors carry member path and offset
ObjectOutputVisitor()     builds a plain object tree; ``complete()`` returns it
ObjectInputVisitor(tree)  reads a tree back, strictly
========================  ======================================================

The legacy ``qemu_put_be*`` / ``qemu_get_be*`` API on a QEMUFile is kept in
:mod:`miglab.visitors.qemufile` so a handler can be converted line by line;
:func:`visitor_for` finds the visitor registered for a QEMUFile meanwhile.
"""

from __future__ import annotations

from miglab.lazy import lazy_attributes

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from miglab.visitors.base import (
        Visitor,
        visit_check_struct,
        visit_end_list,
        visit_end_struct,
        visit_next_list,
        visit_optional,
        visit_start_list,
        visit_start_struct,
        visit_start_subsection,
        visit_type_bool,
        visit_type_buffer,
        visit_type_float64,
        visit_type_i8,
        visit_type_i16,
        visit_type_i32,
        visit_type_i64,
        visit_type_int_array,
        visit_type_str,
        visit_type_u8,
        visit_type_u16,
        visit_type_u32,
        visit_type_u64,
    )
    from miglab.visitors.object_visitor import ObjectInputVisitor, ObjectOutputVisitor
    from miglab.visitors.qemufile import (
        QEMUFileReader,
        QEMUFileWriter,
        qemu_get_be8,
        qemu_get_be16,
        qemu_get_be32,
        qemu_get_be64,
        qemu_get_buffer,
        qemu_get_counted_string,
        qemu_put_be8,
        qemu_put_be16,
        qemu_put_be32,
        qemu_put_be64,
        qemu_put_buffer,
        qemu_put_counted_string,
    )
    from miglab.visitors.qemufile_visitor import (
        QEMUFileInputVisitor,
        QEMUFileOutputVisitor,
        visitor_for,
    )

_LAZY = {
    "Visitor": "miglab.visitors.base",
    "visit_check_struct": "miglab.visitors.base",
    "visit_end_list": "miglab.visitors.base",
    "visit_end_struct": "miglab.visitors.base",
    "visit_next_list": "miglab.visitors.base",
    "visit_optional": "miglab.visitors.base",
    "visit_start_list": "miglab.visitors.base",
    "visit_start_struct": "miglab.visitors.base",
    "visit_start_subsection": "miglab.visitors.base",
    "visit_type_bool": "miglab.visitors.base",
    "visit_type_buffer": "miglab.visitors.base",
    "visit_type_float64": "miglab.visitors.base",
    "visit_type_i8": "miglab.visitors.base",
    "visit_type_i16": "miglab.visitors.base",
    "visit_type_i32": "miglab.visitors.base",
    "visit_type_i64": "miglab.visitors.base",
    "visit_type_int_array": "miglab.visitors.base",
    "visit_type_str": "miglab.visitors.base",
    "visit_type_u8": "miglab.visitors.base",
    "visit_type_u16": "miglab.visitors.base",
    "visit_type_u32": "miglab.visitors.base",
    "visit_type_u64": "miglab.visitors.base",
    "ObjectInputVisitor": "miglab.visitors.object_visitor",
    "ObjectOutputVisitor": "miglab.visitors.object_visitor",
    "QEMUFileReader": "miglab.visitors.qemufile",
    "QEMUFileWriter": "miglab.visitors.qemufile",
    "qemu_get_be8": "miglab.visitors.qemufile",
    "qemu_get_be16": "miglab.visitors.qemufile",
    "qemu_get_be32": "miglab.visitors.qemufile",
    "qemu_get_be64": "miglab.visitors.qemufile",
    "qemu_get_buffer": "miglab.visitors.qemufile",
    "qemu_get_counted_string": "miglab.visitors.qemufile",
    "qemu_put_be8": "miglab.visitors.qemufile",
    "qemu_put_be16": "miglab.visitors.qemufile",
    "qemu_put_be32": "miglab.visitors.qemufile",
    "qemu_put_be64": "miglab.visitors.qemufile",
    "qemu_put_buffer": "miglab.visitors.qemufile",
    "qemu_put_counted_string": "miglab.visitors.qemufile",
    "QEMUFileInputVisitor": "miglab.visitors.qemufile_visitor",
    "QEMUFileOutputVisitor": "miglab.visitors.qemufile_visitor",
    "visitor_for": "miglab.visitors.qemufile_visitor",
}

__all__ = (
    "ObjectInputVisitor",
    "ObjectOutputVisitor",
    "QEMUFileInputVisitor",
    "QEMUFileOutputVisitor",
    "QEMUFileReader",
    "QEMUFileWriter",
    "Visitor",
    "qemu_get_be8",
    "qemu_get_be16",
    "qemu_get_be32",
    "qemu_get_be64",
    "qemu_get_buffer",
    "qemu_get_counted_string",
    "qemu_put_be8",
    "qemu_put_be16",
    "qemu_put_be32",
    "qemu_put_be64",
    "qemu_put_buffer",
    "qemu_put_counted_string",
    "visit_check_struct",
    "visit_end_list",
    "visit_end_struct",
    "visit_next_list",
    "visit_optional",
    "visit_start_list",
    "visit_start_struct",
    "visit_start_subsection",
    "visit_type_bool",
    "visit_type_buffer",
    "visit_type_float64",
    "visit_type_i8",
    "visit_type_i16",
    "visit_type_i32",
    "visit_type_i64",
    "visit_type_int_array",
    "visit_type_str",
    "visit_type_u8",
    "visit_type_u16",
    "visit_type_u32",
    "visit_type_u64",
    "visitor_for",
)


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> tuple[str, ...]:
    return __all__
