"""Join the output directories of sharded generation runs into one trajectory set.

``python -m deepcoder.generation.merge OUT_DIR SHARD_DIR [SHARD_DIR …]`` writes
``OUT_DIR/trajectories.jsonl``, ``manifest.json`` and ``report.json``, each atomically. It
refuses shards of different teachers, keeps one record per problem (a record without
``error`` beats an error record; of two good records the first given wins and the problem is
listed under ``duplicates``), and checks the shards' manifests for missing shards and
problems. Inputs are only read. The exit code is 1 when problems or shards are missing; the
merged directory is itself resumable: ``generate.py output_dir=OUT_DIR`` runs what is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepcoder.generation.report import dataset_report, print_report
from deepcoder.generation.store import MANIFEST, REPORT, TRAJECTORIES, write_manifest
from deepcoder.records.schema import TrajectoryRecord, as_record
from deepcoder.utils.jsonl import read_json, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)


@dataclass
class Shard:
    """One input directory: its records (the last per problem) and its manifest, if any."""

    path: Path
    records: dict[str, TrajectoryRecord]
    manifest: dict[str, Any] | None
    seconds: float | None

    @classmethod
    def read(cls, path: Path) -> Shard:
        file = path / TRAJECTORIES
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no trajectory file (is {path} a generate.py output_dir?)")
        records: dict[str, TrajectoryRecord] = {}
        try:
            for number, record in read_jsonl(file):
                if not isinstance(record.get("problem_id"), str):
                    raise ValueError(f"{file}:{number}: field 'problem_id': missing or not a string")
                records.pop(record["problem_id"], None)
                records[record["problem_id"]] = as_record(record)
        except ValueError as exc:
            raise ValueError(
                f"{exc}\n(a run killed mid-write leaves a torn last line: "
                f"rerun generate.py with output_dir={path} to repair and finish it)"
            ) from None
        manifest = _read_json(path / MANIFEST)
        report = _read_json(path / REPORT)
        return cls(path, records, manifest, report.get("seconds") if report else None)


@dataclass
class MergeResult:
    records: list[TrajectoryRecord]
    expected: list[str]
    duplicates: list[str] = field(default_factory=list)
    replaced_errors: list[str] = field(default_factory=list)


def merge_shards(shard_dirs: Sequence[str | Path], output_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Merge ``shard_dirs`` into ``output_dir``; returns (and writes) the merged report."""
    if not shard_dirs:
        raise ValueError("merge: give at least one shard directory")
    output_dir = Path(output_dir)
    dirs = [Path(d) for d in shard_dirs]
    if output_dir.resolve() in {d.resolve() for d in dirs}:
        raise ValueError(f"merge: the output directory {output_dir} is also an input; pick a new one")
    if (output_dir / TRAJECTORIES).exists() and not overwrite:
        raise FileExistsError(f"{output_dir / TRAJECTORIES} exists; pass --overwrite to replace it")
    shards = [Shard.read(d) for d in dirs]
    provider, model = _teacher(shards)
    shard_check = _check_manifests(shards)
    result = _combine(shards)
    got = {r["problem_id"] for r in result.records}
    missing = [pid for pid in result.expected if pid not in got]
    write_jsonl(result.records, output_dir / TRAJECTORIES)
    write_manifest(
        output_dir,
        provider=provider,
        model=model,
        shard=0,
        num_shards=1,
        problem_ids=list(dict.fromkeys([*result.expected, *(r["problem_id"] for r in result.records)])),
    )
    seconds = [s.seconds for s in shards if s.seconds is not None]
    report = {
        "n_problems": len(result.expected) if result.expected else None,
        **dataset_report(result.records),
        "teacher": {"provider": provider, "model": model},
        "merged_from": [str(s.path) for s in shards],
        **shard_check,
        "missing": missing,
        "duplicates": result.duplicates,
        "replaced_errors": result.replaced_errors,
        "seconds": round(sum(seconds), 3) if seconds else None,  # summed over shards: machine time, not wall time
    }
    write_json(output_dir / REPORT, report)
    for pid in result.duplicates:
        log.warning("merge: %s has a good record in more than one shard; kept the first", pid)
    return report


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return read_json(path)


def _teacher(shards: Sequence[Shard]) -> tuple[str, str]:
    """The one teacher of all shards (from records, else manifests); mixed teachers are refused."""
    seen: dict[tuple[str, str], Path] = {}
    for shard in shards:
        sources = [r.get("teacher") or {} for r in shard.records.values()]
        sources += [shard.manifest["teacher"]] if shard.manifest else []
        for teacher in sources:
            seen.setdefault((str(teacher.get("provider") or "?"), str(teacher.get("model") or "?")), shard.path)
    if len(seen) > 1:
        named = ", ".join(f"{p}/{m} in {path}" for (p, m), path in seen.items())
        raise ValueError(f"merge: shards of different teachers ({named}); merge each teacher on its own")
    if not seen:
        raise ValueError("merge: the shards hold no records and no manifest")
    return next(iter(seen))


def _check_manifests(shards: Sequence[Shard]) -> dict[str, Any]:
    """Which shard indices are there, missing or given twice (manifests of one ``num_shards``)."""
    manifests = [s.manifest for s in shards if s.manifest]
    for shard in shards:
        if shard.manifest is None:
            log.warning("merge: %s has no %s; its missing problems cannot be detected", shard.path, MANIFEST)
    counts = {m["num_shards"] for m in manifests}
    if len(counts) > 1:
        raise ValueError(f"merge: the shards were split with different num_shards {sorted(counts)}")
    num_shards = counts.pop() if counts else None
    indices = [m["shard"] for m in manifests]
    return {
        "num_shards": num_shards,
        "missing_shards": sorted(set(range(num_shards)) - set(indices)) if num_shards else [],
        "repeated_shards": sorted({i for i in indices if indices.count(i) > 1}),
    }


def _combine(shards: Sequence[Shard]) -> MergeResult:
    """One record per problem, in shard then file order."""
    chosen: dict[str, TrajectoryRecord] = {}
    result = MergeResult(records=[], expected=[])
    for shard in shards:
        result.expected += shard.manifest["problem_ids"] if shard.manifest else []
        for pid, record in shard.records.items():
            kept = chosen.get(pid)
            if kept is None:
                chosen[pid] = record
            elif kept.get("error") and not record.get("error"):
                chosen[pid] = record
                result.replaced_errors.append(pid)
            elif not kept.get("error") and not record.get("error"):
                result.duplicates.append(pid)
    result.expected = list(dict.fromkeys(result.expected))
    result.records = list(chosen.values())
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deepcoder.generation.merge", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="where the merged trajectories.jsonl, manifest.json, report.json go")
    parser.add_argument("shard_dirs", nargs="+", help="output_dir of each shard's generate.py run")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing merged trajectories.jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = merge_shards(args.shard_dirs, args.output_dir, overwrite=args.overwrite)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print_report(f"merge: {len(args.shard_dirs)} shards → {args.output_dir}", report)
    if report["missing"] or report["missing_shards"]:
        print(
            f"incomplete: {len(report['missing'])} problems missing {report['missing'][:10]}, "
            f"shards missing {report['missing_shards']}; resume them with generate.py "
            f"(or output_dir={args.output_dir})",
            file=sys.stderr,
        )
        raise SystemExit(1)


if __name__ == "__main__":
    main()
