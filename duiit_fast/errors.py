"""Errors a user can act on. The CLI prints them as one line and exits 2."""
import os



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


def printable(text: str, one_line: bool = True) -> str:
    """File names that are not valid UTF-8 reach Python as surrogates: print their bytes escaped
    (caf\\xe9.png) instead of failing to encode them."""
    try:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\n", " ") if one_line else text
