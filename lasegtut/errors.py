"""The one error type a student should see.

Anything that is the user's fault (a missing file, a wrong shape, a corrupt download)
raises :class:`LasegError` with a one-line message. The command line turns it into
``lasegtut: error: <message>`` on stderr and exit status 2, never a traceback.
"""


class LasegError(Exception):
    """A user-facing error with a single-line, actionable message."""


class LasegWarning(UserWarning):
    """Something the user should know about a result that is still given (one line, like errors).

    The command line prints it as ``lasegtut CMD: warning: <message>`` on stderr.
    """
