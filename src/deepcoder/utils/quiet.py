"""Third-party noise off for the command-line stages, so a cluster log shows the run, not its libraries.

Off: httpx's line per API request (a 10k-problem generation is 10k lines), Lightning's advertising
tips, warnings known to be harmless here (no validation set, short epochs against the logging
interval, a deprecation inside Lightning) and, off a terminal, Hugging Face's tqdm bars. Real
warnings still show; ``DEEPCODER_VERBOSE=1`` keeps everything.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

HARMLESS_WARNINGS = (
    r"Total length of `.*` across ranks is zero",  # data.val_fraction=0: no validation loader, on purpose
    r"The number of training batches \(\d+\) is smaller than the logging interval",  # logging counts global steps
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # inside Lightning, not ours to fix
    r"ckpt_path=\"last\"\) is set, but there is no last checkpoint",  # said in one line by the train stage
)
QUIET_LOGGERS = ("httpx", "httpcore")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_third_party() -> None:
    if os.environ.get("DEEPCODER_VERBOSE") == "1":
        return
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=f".*{pattern}")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())
    if not sys.stdout.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers is imported
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
