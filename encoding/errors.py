"""The kit's own exception types, so callers can catch bad input without catching bugs."""


class KitError(ValueError):
    """Base class for every error the kit raises on bad user input."""


class CodeError(KitError):
    """A subnet code is malformed or lies outside a search space.

    Carries the offending code, the 0-based position in the code as the user wrote it
    (None when the problem is not tied to one character) and the reason, so a message
    can point at the exact digit.
    """

    def __init__(self, code, position, reason):
        self.code = code
        self.position = position
        self.reason = reason
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"invalid subnet code {code!r}{where}: {reason}")


class ArchListError(KitError):
    """An architecture-list JSON file is malformed (bad JSON, missing keys, duplicate ids)."""


def run_reporting_errors(func, *args, status=1):
    """Run a CLI command: bad input ends as one `error: ...` line on stderr and an exit status,
    not a traceback, while bugs (anything but KitError) still show theirs."""
    import sys

    try:
        return func(*args)
    except KitError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return status
