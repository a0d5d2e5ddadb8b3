"""One error hierarchy for everything Slicebox reports to a user.

Every error that a user's input, a job, the store or the machine can cause derives from
``SliceboxError``. The CLI (and later the service) catches only that base: anything else
that escapes is a bug and shows as one, with its traceback. Errors carry data (what
failed, which field or file) so callers need not parse messages.
"""

from __future__ import annotations


class SliceboxError(Exception):
    """Base of every error Slicebox reports to a user; ``str()`` is the one-line message."""

    exit_code = 1  # what the CLI exits with; subclasses for bad input use 2


class InputError(SliceboxError, ValueError):
    """Something a user gave us (a job file, pool file, trace, option) is invalid."""

    exit_code = 2
