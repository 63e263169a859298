"""The file opener: your own stream or container, with an optional schema.

::

    from miglab.widgets import FileOpener, StreamExplorer
    opener = FileOpener()
    explorer = StreamExplorer("data/q72-pc-q35-7.2-net.mig")
    opener.on_open(lambda label, stream: explorer.show(stream))

Type a path on the machine running the kernel (or upload a file from the
browser), optionally the ``-dump-vmstate`` JSON of the QEMU that wrote it
(for streams without vmdesc), and press "open": the file is read with
:func:`miglab.containers.load`, so a bare stream, a compressed one, a
libvirt save image, a qcow2 snapshot or a mapped-ram file all open.  What
went wrong is said in the status line (the file, the offset), never as a
traceback.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import ipywidgets as w

from miglab.errors import MiglabError
from miglab.stream.model import Stream
from miglab.widgets._display import RunHint

__all__ = ("FileOpener",)

Callback = Callable[[str, Stream], None]


class FileOpener(RunHint, w.VBox):
    """A path (or an upload) and an optional schema; "open" loads it and tells the callbacks.

    Attributes:
        path: the file's path on the kernel's machine.
        upload: a file picked in the browser (read from its bytes; takes precedence).
        schema: optional path of a ``-dump-vmstate`` JSON.
        open_button: loads the file (:meth:`open_file`).
        status: HTML: what was opened (container, machine, sections) or why not.
        stream: the stream last opened (None before).
    """

    def __init__(self, path: str = "", *, schema: str = "") -> None:
        self.stream: Stream | None = None
        self._callbacks: list[Callback] = []
        self.path = w.Text(
            value=path, placeholder="/path/to/stream.mig", description="file",
            layout=w.Layout(width="480px"),
        )  # fmt: skip
        self.upload = w.FileUpload(description="upload", multiple=False)
        self.schema = w.Text(
            value=schema, placeholder="(optional) -dump-vmstate JSON", description="schema",
            layout=w.Layout(width="480px"),
        )  # fmt: skip
        self.open_button = w.Button(description="open", button_style="primary")
        self.status = w.HTML("<i>give a path or upload a file, then press open</i>")
        self.open_button.on_click(lambda _b: self.open_file())
        super().__init__(
            [w.HBox([self.path, self.upload]), w.HBox([self.schema, self.open_button]), self.status]
        )
        self.add_class("miglab-opener")

    def on_open(self, callback: Callback) -> None:
        """Call ``callback(label, stream)`` whenever a file is opened."""
        self._callbacks.append(callback)

    def open_file(self) -> Stream | None:
        """Load the uploaded file or the path; None (and the reason shown) when it fails."""
        from miglab.containers import container_name, load
        from miglab.vmstate.from_schema import SchemaIndex

        uploaded = list(self.upload.value)
        label = uploaded[0]["name"] if uploaded else self.path.value.strip()
        try:
            if not label:
                raise MiglabError("no file: give a path or upload one")
            schema = (
                SchemaIndex.load(self.schema.value.strip()) if self.schema.value.strip() else None
            )
            source = bytes(uploaded[0]["content"]) if uploaded else Path(label).expanduser()
            stream = load(source, schema=schema)
        except (MiglabError, OSError) as exc:
            self.status.value = f"<b>cannot open</b> {html.escape(label)}: {html.escape(str(exc))}"
            return None
        self.stream = stream
        undecoded = sum(not s.decoded for s in stream.sections)
        hint = (
            f", <b>{undecoded} not decoded</b> (no vmdesc: give the schema of the QEMU that wrote it)"
            if undecoded and stream.vmdesc is None and schema is None
            else (f", {undecoded} not decoded" if undecoded else "")
        )
        self.status.value = (
            f"opened <b>{html.escape(label)}</b>: {container_name(stream)}, machine "
            f"{html.escape(stream.machine or '(none)')}, {len(stream.sections)} sections{hint}"
        )
        for callback in self._callbacks:
            callback(label, stream)
        return stream
