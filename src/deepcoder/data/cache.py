"""One prepared dataset per key, built once and mapped by every process (all ranks, all runs).

The key covers everything that decides the token ids and labels: the trajectory file's bytes,
the tokenizer (its full serialisation and chat template), the span strategy and its settings,
``max_length``, stored teacher logprobs and the renderer's version. The store lives in
``<cache>/datasets/<settings>-<data digest>/`` (:mod:`deepcoder.data.store`).

The first process to miss takes a file lock and builds into a ``.tmp`` directory that an atomic
rename turns into the store, so a crash mid-build leaves nothing a later run takes for a hit
(the next builder removes the debris); the others wait on the lock and map the result. A file
that only grew since a store of the same settings was built (trajectories appended) starts from
a copy of that store and renders only the new lines. The lock is ``filelock``'s: on a shared
filesystem every node's ranks share one build where the filesystem supports locks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from filelock import FileLock
from transformers import PreTrainedTokenizerBase

from deepcoder.data.prepare import Renderer, StoreWriter, rendered_chunks
from deepcoder.data.store import ExampleStore
from deepcoder.utils.paths import cache_dir

log = logging.getLogger(__name__)

RENDER_VERSION = 4  # bump when render.py, the span rules or the stored arrays change


def settings_key(tokenizer: PreTrainedTokenizerBase, span: Any, **settings: Any) -> str:
    """A digest of the tokenizer, span strategy and settings (the data's digest comes apart)."""
    digest = hashlib.sha256()
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(str(tokenizer.chat_template or "").encode())
    strategy = {"class": f"{type(span).__module__}.{type(span).__qualname__}", **vars(span)}
    digest.update(json.dumps([strategy, settings, RENDER_VERSION], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def _digests(path: Path, size: int, prefixes: set[int]) -> tuple[str, dict[int, str], int]:
    """The sha256 of the file's first ``size`` bytes, of its first ``p`` bytes for each ``p`` in
    ``prefixes``, and its newlines; one pass."""
    digest, found, lines, done = hashlib.sha256(), {}, 0, 0
    cuts = sorted(p for p in prefixes if 0 < p < size) + [size]
    with path.open("rb") as handle:
        for cut in cuts:
            while done < cut:
                block = handle.read(min(1 << 20, cut - done))
                if not block:
                    raise ValueError(f"{path} shrank while being read: is it being rewritten?")
                digest.update(block)
                lines += block.count(b"\n")
                done += len(block)
            found[cut] = digest.hexdigest()
    return found.pop(size), found, lines


def _bases(datasets: Path, key: str, size: int) -> dict[Path, dict[str, Any]]:
    """The sources (``meta.json``'s) of the stores of these settings whose source was a newline-ended
    prefix of a ``size``-byte file, by store folder."""
    sources = {}
    for meta in datasets.glob(f"{key}-*/meta.json"):
        source = json.loads(meta.read_text(encoding="utf-8"))["source"]
        if source["newline"] and source["bytes"] < size:
            sources[meta.parent] = source
    return sources


def _build(root: Path, path: Path, renderer: Renderer, num_proc: int, source: dict, base: ExampleStore | None) -> None:
    """Render ``path`` (up to ``source["bytes"]``) into ``root``, after ``base``'s copy when given."""
    root.mkdir(parents=True)
    start, first_line, example = 0, 1, ""
    if base is not None:
        for array in base.root.glob("*.bin"):
            if array.name != "order.bin":
                shutil.copyfile(array, root / array.name)
        start, first_line = base.meta["source"]["bytes"], base.meta["source"]["lines"] + 1
        example = base.meta["alignment_example"]
        log.info(
            "%s grew: rendering from line %d on, after the %d examples of %s", path, first_line, len(base), base.root
        )
    writer = StoreWriter(root)
    for columns, bad in rendered_chunks(renderer, path, num_proc, start, first_line, source["bytes"]):
        if columns:
            writer.append(columns)
        example = example or bad
    writer.finish(
        {
            "version": RENDER_VERSION,
            "teacher": renderer.token_map is not None,
            "alignment_example": example,
            "source": source,
        }
    )


def prepared_store(
    path: str | Path, renderer: Renderer, num_proc: int = 1, cache: bool = True, **settings: Any
) -> tuple[ExampleStore, bool]:
    """The store of ``path`` rendered by ``renderer``, built if needed; and whether it was a hit.

    ``cache=False`` builds a private store, deleted when the returned store is collected.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: trajectory file not found (run generate.py first, or set data.trajectories)")
    if num_proc < 1:
        raise ValueError(f"data.num_proc must be >= 1, got {num_proc}")
    datasets = cache_dir("datasets")
    size = path.stat().st_size
    key = settings_key(renderer.tokenizer, renderer.span, max_length=renderer.max_length, **settings)
    bases = _bases(datasets, key, size) if cache else {}
    full, prefixes, lines = _digests(path, size, {source["bytes"] for source in bases.values()})
    with path.open("rb") as handle:
        handle.seek(max(size - 1, 0))
        newline = handle.read(1) == b"\n"
    source = {"bytes": size, "sha256": full, "lines": lines, "newline": newline}
    if not cache:
        private = Path(tempfile.mkdtemp(prefix=".private-", dir=datasets))
        _build(private / "store", path, renderer, num_proc, source, None)
        store = ExampleStore(private / "store")
        weakref.finalize(store, shutil.rmtree, private, True)
        return store, False
    final = datasets / f"{key}-{full[:20]}"
    if (final / "meta.json").exists():
        log.info("rendered examples from cache %s", final)
        return ExampleStore(final), True
    with FileLock(str(datasets / f"{final.name}.lock")):
        if (final / "meta.json").exists():  # another process built it while this one waited
            return ExampleStore(final), True
        for debris in datasets.glob(f".{final.name}.*.tmp"):  # a build that crashed (the lock is free)
            shutil.rmtree(debris, ignore_errors=True)
        grown = [root for root, source in bases.items() if prefixes.get(source["bytes"]) == source["sha256"]]
        base = max(grown, key=lambda root: bases[root]["bytes"], default=None)
        building = datasets / f".{final.name}.{os.getpid()}.tmp"
        try:
            _build(building, path, renderer, num_proc, source, None if base is None else ExampleStore(base))
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        os.rename(building, final)  # atomic: the store appears whole or not at all
    log.info("rendered examples cached in %s", final)
    return ExampleStore(final), False
