"""Measure what each wire format costs: bytes, and encode/decode speed.

:func:`measure` encodes every stream in every format, twice over: the whole
stream, and its *device state* — the configuration block, the device
sections and the vmdesc that describes them (:func:`device_state`), i.e.
everything but RAM, as QEMU sends it.  Sizes are compared with ``legacy``
(QEMU's bytes for the same tree); speeds are MB of legacy bytes per second,
so every format is charged for the same information.  Formats are timed
side by side, interleaved run by run, in CPU time (``time.process_time``:
other processes on the machine matter less), and the median of ``repeat``
runs is kept.  Every encoding is checked to decode back to the legacy bytes.
A decoded tree's vmdesc is parsed when first read
(:meth:`~miglab.stream.model.Stream.defer_vmdesc`), so decode times leave
its parse out; the round-trip check, which writes it, reads it.

The goals (issue 14): on device state, the best self-describing binary
format within 1.05x of legacy size, encode and decode at >= 100 MB/s for
MessagePack and CBOR and >= 50 MB/s for JSON.  :func:`summary` gives the
per-format table and :func:`chart` the figure.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from miglab.encoders import get, names
from miglab.errors import EncodingError
from miglab.stream.model import Section, Stream
from miglab.stream.ram import RamContext
from miglab.stream.reader import load
from miglab.vmstate.state import VMState

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ("chart", "device_state", "measure", "summary")

_MB = 1e6


def device_state(stream: Stream) -> Stream:
    """The stream without RAM: configuration, decoded device sections, vmdesc."""
    return Stream(
        version=stream.version,
        configuration=stream.configuration,
        records=[
            r for r in stream.records if isinstance(r, Section) and isinstance(r.payload, VMState)
        ],
        eof=True,
        vmdesc=stream.vmdesc,
        page_size=stream.page_size,
        ram=RamContext(stream.page_size, stream.ram.ignore_shared),
    )


def _streams(
    streams: Mapping[str, Stream | str | os.PathLike[str]]
    | Iterable[Stream | str | os.PathLike[str]],
) -> list[tuple[str, Stream]]:
    items = streams.items() if isinstance(streams, Mapping) else ((None, s) for s in streams)
    out = []
    for i, (label, s) in enumerate(items):
        if isinstance(s, Stream):
            out.append((label or f"stream{i}", s))
        else:
            out.append((label or Path(s).stem, load(s)))
    return out


def _elapsed(fn: Any, *args: Any, **kwargs: Any) -> float:
    t = time.process_time()
    fn(*args, **kwargs)
    return time.process_time() - t


def measure(
    streams: Mapping[str, Stream | str | os.PathLike[str]]
    | Iterable[Stream | str | os.PathLike[str]],
    formats: Sequence[str] | None = None,
    repeat: int = 5,
    progress: bool = False,
) -> pd.DataFrame:
    """A row per (stream, part, format): bytes, size ratio to legacy, MB/s.

    Args:
        streams: streams or paths (a mapping gives them labels).
        formats: format names (default: all registered).
        repeat: timed runs per measurement; the median is kept.
        progress: show a tqdm bar (one step per stream) on stderr.

    Columns: ``stream, part ("device"|"stream"), format, bytes, legacy_bytes,
    ratio, encode_s, decode_s, encode_MBps, decode_MBps, roundtrip_MBps``.

    Raises:
        EncodingError: a format did not give the legacy bytes back.
    """
    import pandas as pd

    fmts = [get(n) for n in (formats or names())]
    rows = []
    todo = _streams(streams)
    for label, stream in tqdm(todo, desc="bench", unit="stream", disable=not progress):
        for part, tree in (("device", device_state(stream)), ("stream", stream)):
            legacy = tree.to_bytes()
            encoded = {}
            for f in fmts:
                data = f.encode(tree)
                if f.decode(data).to_bytes() != legacy:
                    raise EncodingError(f"{f.name} does not round-trip {label} ({part})")
                encoded[f.name] = data
            times: dict[str, tuple[list[float], list[float]]] = {f.name: ([], []) for f in fmts}
            for _ in range(repeat):
                for f in fmts:
                    enc, dec = times[f.name]
                    enc.append(_elapsed(f.encode, tree))
                    dec.append(_elapsed(f.decode, encoded[f.name]))
            for f in fmts:
                e = statistics.median(times[f.name][0])
                d = statistics.median(times[f.name][1])
                n = len(legacy)
                rows.append(
                    {
                        "stream": label,
                        "part": part,
                        "format": f.name,
                        "bytes": len(encoded[f.name]),
                        "legacy_bytes": n,
                        "ratio": len(encoded[f.name]) / n,
                        "encode_s": e,
                        "decode_s": d,
                        "encode_MBps": n / e / _MB,
                        "decode_MBps": n / d / _MB,
                        "roundtrip_MBps": n / (e + d) / _MB,
                    }
                )
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per part and format: total bytes, size ratio to legacy, MB/s over all streams."""
    g = df.groupby(["part", "format"], sort=False)
    out = g.agg(
        bytes=("bytes", "sum"),
        legacy_bytes=("legacy_bytes", "sum"),
        encode_s=("encode_s", "sum"),
        decode_s=("decode_s", "sum"),
    )
    out["ratio"] = out["bytes"] / out["legacy_bytes"]
    out["encode_MBps"] = out["legacy_bytes"] / out["encode_s"] / _MB
    out["decode_MBps"] = out["legacy_bytes"] / out["decode_s"] / _MB
    out["roundtrip_MBps"] = out["legacy_bytes"] / (out["encode_s"] + out["decode_s"]) / _MB
    return out[["bytes", "ratio", "encode_MBps", "decode_MBps", "roundtrip_MBps"]].round(3)


def chart(df: pd.DataFrame) -> Figure:
    """Size ratio to legacy and encode/decode MB/s per format, device state and whole stream."""
    from matplotlib.figure import Figure

    s = summary(df).reset_index()
    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplots(2, 2)
    for col, part in enumerate(("device", "stream")):
        t = s[s["part"] == part].set_index("format")
        t["ratio"].plot.bar(ax=axes[0][col], color="tab:blue")
        axes[0][col].axhline(1.0, color="grey", lw=0.8)
        if part == "device":
            axes[0][col].axhline(1.05, color="tab:red", ls="--", lw=0.8, label="goal 1.05x")
            axes[0][col].legend()
        axes[0][col].set_title(f"{part}: bytes / legacy bytes")
        t[["encode_MBps", "decode_MBps"]].plot.bar(ax=axes[1][col])
        if part == "device":
            axes[1][col].axhline(100, color="tab:red", ls="--", lw=0.8, label="goal 100 MB/s")
        axes[1][col].set_yscale("log")
        axes[1][col].set_title(f"{part}: MB/s of legacy bytes (median)")
        axes[1][col].legend(fontsize="small")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xlabel("")
            ax.tick_params(axis="x", labelrotation=30)
    return fig
