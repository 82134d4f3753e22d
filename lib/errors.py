"""The one exception type that reaches the user as a single line.

Anything a user can cause (a missing file, a bad key, no network) raises UserError with a
message that names the file, line or key; `lib.cli` prints it as `error: <message>` and exits
with status 2. Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, reported in one line."""
