"""The one exception type users see.

Every problem caused by user input (a malformed hierarchy, a missing dataset folder, a checkpoint
from another hierarchy, ...) raises :class:`HafclsError` with a message naming the problem and the
fix. The CLI turns it into a one-paragraph message and exit code 2, never a traceback.
"""

from __future__ import annotations


class HafclsError(ValueError):
    """A problem with user input: ``str(err)`` says what is wrong and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem} Fix: {fix}")
