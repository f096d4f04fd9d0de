"""The one exception type for mistakes a user can fix (bad path, bad value, corrupt file)."""


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""
