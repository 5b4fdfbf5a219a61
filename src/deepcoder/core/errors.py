"""The error a user can cause and fix that is not a bad value (a busy output_dir, a policy that fails
every episode): the root scripts print it as one line with an exit status, never a traceback."""

from __future__ import annotations


class UserError(RuntimeError):
    """A runtime condition the message tells the user how to fix."""
