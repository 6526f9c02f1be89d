"""What the CLI turns into one line and an exit code, never a traceback: bad input (2), a failed
run (1), Ctrl-C part-way through a command that says how to go on (130).
"""


class UserInputError(Exception):
    """Bad input that the user can fix; the message names the file/option and the problem."""


class RunFailed(Exception):
    """A training or tuning run ended with an error (after its allowed restarts); exit code 1."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a command part-way; the message says what was kept and how to go on (the
    command's session prints it, console.py; `prepare`, which has none, prints it itself); exit
    code 130."""


def describe(exc: BaseException) -> str:
    """`Type: first line of the message` (at most 200 characters of it), for one-line errors; the
    type stays because some messages (torch's among them) are a bare number."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
