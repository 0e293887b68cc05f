"""How a subcommand fails: :class:`CommandError` and the exit statuses."""

from __future__ import annotations

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CommandError"]

#: Exit status for bad input (argparse's convention), and for failures while running.
EXIT_USAGE = 2
EXIT_FAILURE = 1


class CommandError(Exception):
    """A user-facing failure of a subcommand: printed as one line, never a traceback."""

    def __init__(self, message: str, *, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status
