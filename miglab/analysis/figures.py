"""matplotlib figures of streams, version evolution, encoders and compatibility.

Each function draws on a new figure (or the ``ax`` given) and returns the
Axes, so a notebook can restyle or save it.  Inputs are the tables of
:mod:`miglab.analysis`; the functions do no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap

from miglab.analysis.frames import sections_frame
from miglab.errors import NotFoundError
from miglab.stream.model import Stream

__all__ = (
    "BENCH_COLUMNS",
    "COMPAT_COLUMNS",
    "bench_table",
    "compat_pivot",
    "plot_compat_matrix",
    "plot_encoders",
    "plot_section_sizes",
    "plot_version_heatmap",
)

#: Columns :func:`plot_encoders` reads (``miglab.encoders.bench.measure``).
BENCH_COLUMNS = ("format", "stream", "state_bytes", "total_bytes", "encode_mbps", "decode_mbps")
#: Columns :func:`plot_compat_matrix` reads (``data/compat-matrix.csv``).
COMPAT_COLUMNS = ("source", "destination", "mode", "accepted")


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size, layout="constrained")
    return new


def plot_section_sizes(stream: Stream, *, top: int = 25, ax: Axes | None = None) -> Axes:
    """Bytes per device section, largest first, with RAM apart as one bar.

    RAM is most of a stream (every start/part/end chunk of ``ram`` added up),
    so it is drawn in its own colour at the top and labelled with its size;
    device sections are summed per idstr and instance.

    Args:
        stream: a loaded stream.
        top: show at most this many device sections (the rest are summed as
            ``(N others)``).
        ax: draw here instead of a new figure.
    """
    df = sections_frame(stream)
    df = df[df["kind"] != "command"]
    is_ram = df["name"] == "ram"
    ram = int(df.loc[is_ram, "size"].sum())
    dev = df[~is_ram].copy()
    dev["label"] = dev["name"] + np.where(
        dev["instance_id"] > 0, " #" + dev["instance_id"].astype(str), ""
    )
    sizes = dev.groupby("label")["size"].sum().sort_values(ascending=False)
    if len(sizes) > top:
        rest = sizes.iloc[top:]
        sizes = pd.concat([sizes.iloc[:top], pd.Series({f"({len(rest)} others)": rest.sum()})])
    labels = ["ram (all chunks)", *sizes.index]
    values = [ram, *sizes.to_numpy()]
    ax = _axes(ax, (8, 0.28 * len(labels) + 1.2))
    colors = ["tab:orange"] + ["tab:blue"] * len(sizes)
    y = np.arange(len(labels))
    ax.barh(y, values, color=colors)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("bytes on the wire (log scale)")
    ax.annotate(
        f"{ram:,} B",
        (ram, 0),
        xytext=(-4, 0),
        textcoords="offset points",
        ha="right",
        va="center",
        fontsize=8,
        color="white",
    )
    ax.set_title(
        f"{stream.machine or 'unknown machine'}: {len(dev)} device sections, "
        f"{stream.source_size or len(stream.to_bytes()):,} bytes"
    )
    return ax


def plot_version_heatmap(
    table: pd.DataFrame,
    *,
    ax: Axes | None = None,
    title: str = "",
    colorbar_label: str | None = None,
) -> Axes:
    """Heatmap of a device x (version or machine) table of version_id.

    Versions are integers, so each distinct value gets its own colour and
    the colour bar one tick per value (a continuous scale would invent
    versions 1.5 and 2.5); grey where the device is absent; every cell is
    annotated with its number.  Column labels (MultiIndex levels joined by
    a newline) are rotated so that long machine names do not overlap.  The
    colour bar is titled ``colorbar_label``, by default ``version_id``, or
    ``sent (1) / not sent (0)`` for a boolean (subsection) table.
    Takes :func:`~miglab.analysis.evolution.version_matrix`,
    :func:`~miglab.analysis.evolution.schema_version_matrix` or
    :func:`~miglab.analysis.evolution.device_timeline` output, or a
    subsection matrix of booleans.
    """
    boolean = all(str(t) in ("boolean", "bool") for t in table.dtypes)
    if colorbar_label is None:
        colorbar_label = "sent (1) / not sent (0)" if boolean else "version_id"
    values = table.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    ax = _axes(ax, (1.6 + 0.55 * table.shape[1], 1.6 + 0.26 * table.shape[0]))
    finite = values[np.isfinite(values)]
    levels = np.unique(finite) if finite.size else np.array([0.0])
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.95, len(levels)))
    cmap = ListedColormap(colours).with_extremes(bad="lightgrey")
    # Each value becomes its index among the levels: one colour per distinct version.
    index = np.full(values.shape, np.nan)
    for k, level in enumerate(levels):
        index[values == level] = k
    im = ax.imshow(
        np.ma.masked_invalid(index),
        aspect="auto",
        cmap=cmap,
        vmin=-0.5,
        vmax=len(levels) - 0.5,
        interpolation="nearest",
    )
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            dark = index[i, j] < len(levels) / 2
            ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")  # fmt: skip
    cols = ["\n".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in table.columns]
    rows = [" / ".join(map(str, r)) if isinstance(r, tuple) else str(r) for r in table.index]
    ax.set_xticks(range(len(cols)), cols, fontsize=8, rotation=60, ha="left",
                  rotation_mode="anchor")  # fmt: skip
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.xaxis.tick_top()
    bar = ax.figure.colorbar(im, ax=ax, shrink=0.6, ticks=range(len(levels)))
    bar.ax.set_yticklabels([f"{v:g}" for v in levels])
    bar.set_label(colorbar_label)
    if title:
        ax.set_title(title, pad=12)
    return ax


def plot_encoders(bench: pd.DataFrame, *, axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Two panels per encoder format: bytes on the wire, and encode/decode speed.

    Args:
        bench: rows of BENCH_COLUMNS (one per format and stream), or
            ``miglab.encoders.bench.measure`` output (see :func:`bench_table`).
        axes: two Axes to draw on instead of a new figure.

    Returns:
        The (size, speed) Axes.  Sizes are the median over streams of
        ``total_bytes`` (stacked: device state, then the rest); speeds the
        median MB/s.
    """
    bench = bench_table(bench) if "part" in bench.columns else bench
    missing = set(BENCH_COLUMNS) - set(bench.columns)
    if missing:
        raise NotFoundError(f"bench table lacks columns {sorted(missing)}")
    med = bench.groupby("format")[list(BENCH_COLUMNS[2:])].median().sort_values("total_bytes")
    if axes is None:
        _, new = plt.subplots(1, 2, figsize=(10, 0.4 * len(med) + 1.8), layout="constrained")
        axes = list(new)
    size_ax, speed_ax = axes
    y = np.arange(len(med))
    size_ax.barh(y, med["state_bytes"], color="tab:blue", label="device state")
    size_ax.barh(
        y,
        med["total_bytes"] - med["state_bytes"],
        left=med["state_bytes"],
        color="tab:orange",
        label="RAM and framing",
    )
    size_ax.set_yticks(y, med.index)
    size_ax.invert_yaxis()
    size_ax.set_xlabel("bytes (median over streams)")
    size_ax.legend(fontsize=8, loc="lower right")
    h = 0.4
    speed_ax.barh(y - h / 2, med["encode_mbps"], height=h, label="encode")
    speed_ax.barh(y + h / 2, med["decode_mbps"], height=h, label="decode")
    speed_ax.set_yticks(y, med.index)
    speed_ax.invert_yaxis()
    speed_ax.set_xlabel("MB/s of device state (median over streams)")
    speed_ax.legend(fontsize=8, loc="lower right")
    return size_ax, speed_ax


def bench_table(measured: pd.DataFrame) -> pd.DataFrame:
    """``miglab.encoders.bench.measure`` rows (one per stream, part, format) as BENCH_COLUMNS.

    ``state_bytes`` is the ``device`` part (configuration, device sections,
    vmdesc), ``total_bytes`` the whole ``stream``; speeds are the device
    part's, the state a transform or encoder actually works on.
    """
    key = ["stream", "format"]
    dev = measured[measured["part"] == "device"].set_index(key)
    whole = measured[measured["part"] == "stream"].set_index(key)
    out = pd.DataFrame(
        {
            "state_bytes": dev["bytes"],
            "total_bytes": whole["bytes"],
            "encode_mbps": dev["encode_MBps"],
            "decode_mbps": dev["decode_MBps"],
        }
    ).reset_index()
    return out[list(BENCH_COLUMNS)]


_COMPAT_CMAP = ListedColormap(["tab:red", "tab:green"])


def compat_pivot(results: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Source x destination table of accepted (True/False/<NA>) for one mode, in input order."""
    sel = results[results["mode"] == mode]
    table = sel.pivot_table(index="source", columns="destination", values="accepted", aggfunc="all")
    rows = list(dict.fromkeys(results["source"]))
    cols = list(dict.fromkeys(results["destination"]))
    return table.reindex(index=rows, columns=cols).astype("boolean")


def plot_compat_matrix(
    results: pd.DataFrame,
    *,
    modes: Sequence[str] | None = None,
    axes: Sequence[Axes] | None = None,
) -> Sequence[Axes]:
    """One source x destination grid per mode: green where the destination loaded the stream.

    Args:
        results: rows of COMPAT_COLUMNS; ``mode`` is e.g. ``raw`` (the stream as
            the source wrote it) or ``compat`` (after ``miglab compat``).
        modes: which modes to draw, in order (default: as they appear).
        axes: Axes to draw on, one per mode.
    """
    missing = set(COMPAT_COLUMNS) - set(results.columns)
    if missing:
        raise NotFoundError(f"compat table lacks columns {sorted(missing)}")
    modes = list(modes) if modes is not None else list(dict.fromkeys(results["mode"]))
    if axes is None:
        rows, cols = results["source"].nunique(), results["destination"].nunique()
        _, new = plt.subplots(
            1,
            len(modes),
            figsize=(1.0 * cols * len(modes) + 4, 0.3 * rows + 1.6),
            layout="constrained",
            squeeze=False,
        )
        axes = list(new[0])
    for ax, mode in zip(axes, modes, strict=True):
        table = compat_pivot(results, mode)
        values = table.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        cmap = _COMPAT_CMAP.with_extremes(bad="lightgrey")
        ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(
                    j, i, "yes" if v else "no", ha="center", va="center", fontsize=8, color="white"
                )
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="left", fontsize=8)
        ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)
        ax.xaxis.tick_top()
        ax.set_ylabel("source")
        ax.set_title(f"{mode}: destination loads?", fontsize=10)
    return axes
