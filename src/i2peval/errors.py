"""The base class of every error a user can cause and act on.

Its message names the file, key, row or column at fault and says what was expected; rule
scripts print it alone, without a traceback (`logs.to_log_file`).
"""


class I2PEvalError(Exception):
    """An error in the user's input, configuration or environment, explained in its message."""
