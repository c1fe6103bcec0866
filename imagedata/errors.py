"""The data package's error type: bad paths, files and settings, reported at start-up."""

from encoding import KitError


class DataError(KitError):
    """A dataset directory, list file or data setting is missing or malformed."""
