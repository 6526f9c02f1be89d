"""The one exception type that means "the user gave bad input".

The CLI turns it into a single line on stderr and exit code 2, never a traceback.
"""


class UserInputError(Exception):
    """Bad input that the user can fix; the message names the file/option and the problem."""


class RunFailed(Exception):
    """A training or tuning run ended with an error (after its allowed restarts); exit code 1."""
