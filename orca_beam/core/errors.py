"""The one error a user can fix from the command line.

``UsageError`` is the only exception the entry points turn into one line on stderr and exit
status 2: a flag that is wrong or missing, an input that matches nothing, a model handle that
cannot be found or loaded, a label or annotation table that cannot be read. Every other
exception is a bug or an outage and keeps its traceback. It subclasses ValueError, so callers
that caught ValueError from these functions keep working.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A mistake in what the user asked for; its message says what and how to fix it."""
