"""Error types of the submission tools, so the CLI can tell bad input (exit 1) from bugs."""

from encoding import KitError


class SubmissionError(KitError):
    """A results, submission or ground-truth file cannot be used; the message lists every problem."""

    def __init__(self, message, problems=()):
        self.problems = list(problems)
        self.headline = message
        if self.problems:
            message = message + "\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(message)


class MetricError(KitError):
    """A ranking metric is undefined for the given values (too few entries, all values equal)."""
