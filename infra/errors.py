"""The kit's base error and how a command reports errors: bad input (KitError) and system errors
(OSError) end as one `error: ...` line, so callers can catch bad input without catching bugs."""

import contextlib
import errno
import os


class KitError(ValueError):
    """Base class for every error the kit raises on bad user input."""


@contextlib.contextmanager
def failing_to(action, path):
    """Name what was being done when an OSError escapes the block, so its message reads
    `cannot <action> <path>: <reason>` (the innermost name wins)."""
    try:
        yield
    except OSError as e:
        if getattr(e, "kit_action", None) is None:
            e.kit_action, e.kit_path = action, os.fspath(path)
        raise


def os_error_message(e):
    """`cannot <action> <path>: <reason>` for an OSError (read-only folder, full disk, missing mount)."""
    reason = (e.strerror or str(e) or type(e).__name__).strip().splitlines()[0]
    reason = reason[:1].lower() + reason[1:]
    action, path = getattr(e, "kit_action", None), getattr(e, "kit_path", None)
    if action is None:
        path = e.filename
        action = "write to" if e.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT) else "access"
    if path is None:
        return reason
    return f"cannot {action} {os.fsdecode(path) if isinstance(path, bytes) else path}: {reason}"


def error_message(e):
    """The line a command prints after `error: ` for bad input (KitError) or a system error (OSError)."""
    return os_error_message(e) if isinstance(e, OSError) else str(e)


def run_reporting_errors(func, *args, status=1):
    """Run a CLI command: bad input and system errors (OSError: permissions, full disk, read-only
    folders) end as one `error: ...` line on stderr and an exit status, not a traceback, while
    bugs (anything else) still show theirs."""
    import sys

    try:
        return func(*args)
    except (KitError, OSError) as e:
        print(f"error: {error_message(e)}", file=sys.stderr, flush=True)
        return status
