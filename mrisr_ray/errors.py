"""The one exception type that means "the user gave bad input".

The CLI turns it into a single line on stderr and exit code 2, never a traceback.
"""


class UserInputError(Exception):
    """Bad input that the user can fix; the message names the file/option and the problem."""


class RunFailed(Exception):
    """A training or tuning run ended with an error (after its allowed restarts); exit code 1."""


def describe(exc: BaseException) -> str:
    """`Type: first line of the message` (at most 200 characters of it), for one-line errors; the
    type stays because some messages (torch's among them) are a bare number."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
