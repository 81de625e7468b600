"""Errors a user can act on. The CLI prints them as one line and exits 2."""


class DuiitError(Exception):
    """Base class of duiit_fast's user-facing errors."""


class DuiitDataError(DuiitError, ValueError):
    """Bad input data: the message names the file (or folder) and what is wrong with it."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DuiitConfigError(DuiitError, ValueError):
    """A bad configuration value: the message names the field and what is wrong."""
