"""The project's own exception types.

Everything the apps report as a one-line ``PROG: error: ...`` with exit status 2 derives from
:class:`VitlearnencError` (or is an ``OSError`` of a missing path); any other exception is a
bug and keeps its traceback. Each concrete error also derives from the builtin type callers
would expect (``ValueError``, ``KeyError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class VitlearnencError(Exception):
    """Base of the project's errors: bad input or configuration, not a bug."""


class InputError(VitlearnencError, ValueError):
    """Input (images, sizes, options, settings) that cannot work; the message names the fix."""


class UnknownOptionError(VitlearnencError, TypeError):
    """An option (keyword) that the cipher, model or attack does not take."""
