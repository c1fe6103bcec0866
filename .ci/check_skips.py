"""Fail when pytest's summary (`-ra`) reports a skipped test that .ci/allowed_skips.txt does not allow.

    python .ci/check_skips.py PYTEST_OUTPUT [ALLOWED]
"""

import os
import re
import sys

SKIP = re.compile(r"^SKIPPED \[(\d+)\] ([^:]+):\d+: (.*)$")


def allowed_entries(path):
    with open(path, encoding="utf-8") as f:
        rows = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    return [tuple(part.strip() for part in row.split("|", 1)) for row in rows]


def unexpected_skips(output_lines, allowed):
    found = []
    for line in output_lines:
        m = SKIP.match(line.strip())
        if m and not any(m.group(2) == f and m.group(3).startswith(r) for f, r in allowed):
            found.append(line.strip())
    return found


def main(argv):
    output = argv[1]
    allowed = argv[2] if len(argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "allowed_skips.txt")
    with open(output, encoding="utf-8", errors="replace") as f:
        bad = unexpected_skips(f.read().splitlines(), allowed_entries(allowed))
    for line in bad:
        print(f"unexpected skip: {line}", file=sys.stderr)
    if bad:
        print(f"{len(bad)} skip report(s) not in {allowed}: fix the test or its setup", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
