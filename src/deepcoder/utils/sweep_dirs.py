"""One output directory per job of a ``-m`` sweep, or a clear error.

Each stage defaults ``output_dir`` to the job's own Hydra folder. An explicit ``output_dir=DIR``
on a multirun is the same folder for every job unless it is swept or interpolates the job
(``output_dir='runs/${hydra:job.num}'``): the jobs would overwrite each other's students and
metrics, and a later ``generate`` job would "resume" an earlier one's trajectories. Each job
claims its folder with a marker naming the sweep and the job; a second job of the same sweep
finding it there stops before writing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = ".sweep_job.json"


def claim_for_sweep_job(output_dir: str | Path) -> None:
    """In a multirun, refuse an ``output_dir`` another job of the same sweep has already claimed."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra = HydraConfig.get()
    mine = {"sweep": str(Path(hydra.sweep.dir).resolve()), "job": int(hydra.job.num)}
    marker = Path(output_dir) / MARKER
    if marker.exists():
        claimed = json.loads(marker.read_text(encoding="utf-8"))
        if claimed.get("sweep") == mine["sweep"] and claimed.get("job") != mine["job"]:
            raise ValueError(
                f"output_dir={output_dir} is shared by jobs {claimed['job']} and {mine['job']} of this "
                "multirun: leave output_dir unset (each job gets its own folder under the sweep "
                "directory) or make it differ per job, e.g. output_dir='DIR/${hydra:job.num}'"
            )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(mine), encoding="utf-8")
