"""The errors of codes and architecture lists (both bad input: KitError)."""

from infra.errors import KitError


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
