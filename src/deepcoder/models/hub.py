"""Whether a Hugging Face hub id can be loaded, answered in seconds: the local cache first, then
one short question to the hub, instead of the hub client's retries (about 25 s with no network).
Model loading and the stage checks both ask here."""

from __future__ import annotations

import os

HUB_TIMEOUT_S = 5.0


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or any(
        os.environ.get(name, "0").lower() not in ("0", "", "false")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_unavailable(repo_id: str) -> str | None:
    """None when ``repo_id`` is in the local cache or the hub knows it (gated included: loading says
    how to get access); otherwise why it cannot be loaded, as a phrase."""
    from huggingface_hub import model_info, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return None
    except HFValidationError as exc:
        return f"is not a hub id ({exc})"
    if hub_offline():
        return "is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1)"
    try:
        model_info(repo_id, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return None
    except RepositoryNotFoundError:
        return "is not a model on the Hugging Face hub"
    except Exception as exc:  # no network, DNS, timeout, proxy: the hub cannot be asked
        return (
            f"is not in the local Hugging Face cache and the hub is unreachable "
            f"({type(exc).__name__} within {HUB_TIMEOUT_S:.0f} s)"
        )
    return None
