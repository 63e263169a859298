"""Run the miglab fuzzer (atheris / libFuzzer) for a bounded time.

    python fuzz/run.py --seconds 60            # what CI runs (tests/hostile/test_fuzz_smoke.py)
    python fuzz/run.py --hours 4               # a long run, corpus kept in fuzz/corpus/
    python fuzz/run.py --seconds 60 -- -jobs=2 -workers=2   # extra libFuzzer flags
    python fuzz/run.py --seconds 600 --only qcow2            # one target alone

Every target of :mod:`targets` runs in one process; the first byte of an
input picks the target (``--only NAME``: one target, its own seeds, no
selector byte).  The seed corpus is written from data/ at start
(:mod:`seeds`).  A finding is an exception other than MiglabError (libFuzzer
writes ``crash-*`` to the artifact directory), a unit running over
``--timeout`` seconds (``timeout-*``) or the process exceeding
``--rss-mb`` (``oom-*``); the exit status is then non-zero.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    """Parse options, write the seeds, hand over to libFuzzer (does not return)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, default=60.0, help="total run time")
    budget.add_argument("--hours", type=float, help="total run time in hours")
    parser.add_argument("--corpus", type=Path, help="corpus directory (kept and grown)")
    parser.add_argument("--artifacts", type=Path, help="where crash/timeout files go")
    parser.add_argument("--max-len", type=int, default=1 << 17, help="largest input (bytes)")
    parser.add_argument("--timeout", type=int, default=1, help="seconds before a unit is a hang")
    parser.add_argument("--rss-mb", type=int, default=1024, help="memory before it is a finding")
    parser.add_argument("--only", metavar="TARGET", help="fuzz one target alone")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags after --")
    args = parser.parse_args(argv)
    seconds = int(args.hours * 3600 if args.hours is not None else args.seconds)

    import atheris

    with atheris.instrument_imports(include=["miglab"]):
        import seeds  # type: ignore[import-not-found]
        from targets import TARGETS, dispatch, run_target  # type: ignore[import-not-found]

        import miglab  # noqa: F401

    tmp = Path(tempfile.mkdtemp(prefix="miglab-fuzz-"))
    corpus = args.corpus or (HERE / "corpus" if args.hours is not None else tmp / "corpus")
    artifacts = args.artifacts or tmp
    artifacts.mkdir(parents=True, exist_ok=True)
    seed_dir = tmp / "seeds"
    if args.only is not None and args.only not in TARGETS:
        parser.error(f"no target {args.only!r}; known: {', '.join(TARGETS)}")
    n = seeds.write_corpus(seed_dir, only=args.only)
    corpus.mkdir(parents=True, exist_ok=True)
    chosen = [args.only] if args.only is not None else list(TARGETS)
    print(
        f"miglab fuzz: {len(chosen)} targets ({', '.join(chosen)}), {n} seeds, {seconds} s",
        flush=True,
    )
    flags = [
        sys.argv[0],
        str(corpus),
        str(seed_dir),
        f"-max_total_time={seconds}",
        f"-max_len={args.max_len}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_mb}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        *args.libfuzzer,
    ]
    warm(seed_dir, args.only)
    only = args.only

    def one(data: bytes) -> None:
        run_target(only, bytes(data))

    atheris.Setup(flags, dispatch if only is None else one)
    atheris.Fuzz()
    return 0


def warm(seed_dir: Path, only: str | None) -> None:
    """Run one seed of each target first: its first call imports and caches what it needs
    (pyarrow for the fleet, the 10.0 descriptions for the live pump), which would
    otherwise count as a hang against ``--timeout``."""
    from targets import TARGETS, dispatch, prepare, run_target

    prepare()
    done: set[str] = set()
    for path in sorted(seed_dir.iterdir()):
        target = path.name.split("-", 2)[2]
        name = next(t for t in TARGETS if t.replace(":", "-") == target)
        if name not in done:
            done.add(name)
            data = path.read_bytes()
            if only is not None:
                run_target(only, data)
            else:
                dispatch(data)


if __name__ == "__main__":
    sys.exit(main())
