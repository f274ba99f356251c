"""The one exception type for user mistakes.

The CLI prints its message on one line and exits with code 2; anything else that escapes is a bug
and keeps its traceback.
"""


class MmsaeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class UndefinedMetricError(MmsaeError, ZeroDivisionError):
    """A metric that divides by the rows' spread, on rows that have none (identical rows, or one
    row). A ZeroDivisionError too, which is what callers that expect it catch."""


class SAELoadError(MmsaeError, ValueError):
    """A folder that is not a loadable SAE; the message says why. (A ValueError too, as it was
    before it became an MmsaeError.)"""
