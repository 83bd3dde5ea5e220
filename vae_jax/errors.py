"""The one exception type for a user's mistake: the launcher prints its message and exits 2."""


class UserError(Exception):
  """Bad input (config value, data file, workdir state). The message is one line for the user."""
