"""Faults injected from outside the product code: a command run in a fresh Python process with one
of its functions wrapped, so a test can SIGKILL it at a chosen point or poison a loss.

    subprocess.run(python_with(SUPERNET_FAULT.format(kind="kill", step=7), "train_supernet", args), ...)
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Supernet training: "kill" SIGKILLs the process when step `step` and its checkpoint (if one is due)
# are done, i.e. as step `step` + 1 starts; "nan" makes every loss of step `step` NaN.
SUPERNET_FAULT = """
import os, signal
from supernet import losses, train
original = train.Trainer.backward_step
def backward_step(self, x, y, paths, global_step):
    if "{kind}" == "kill" and global_step == {step}:
        os.kill(os.getpid(), signal.SIGKILL)
    if "{kind}" == "nan" and global_step + 1 == {step}:
        ce = losses.smoothed_cross_entropy
        losses.smoothed_cross_entropy = lambda *a, **k: ce(*a, **k) * float("nan")
        try:
            return original(self, x, y, paths, global_step)
        finally:
            losses.smoothed_cross_entropy = ce
    return original(self, x, y, paths, global_step)
train.Trainer.backward_step = backward_step
"""

# Standalone training: every loss from the `call`-th cross-entropy on (1-based) is NaN.
STANDALONE_NAN = """
import paddle.nn.functional as F
original = F.cross_entropy
calls = [0]
def cross_entropy(*a, **k):
    calls[0] += 1
    loss = original(*a, **k)
    return loss * float("nan") if calls[0] >= {call} else loss
F.cross_entropy = cross_entropy
"""

# `python -m evaluate run`: SIGKILL once `records` results are on disk.
EVALUATE_KILL = """
import os, signal
from evaluate import results_store
original = results_store.ResultsStore.append
count = [0]
def append(self, record):
    original(self, record)
    count[0] += 1
    if count[0] >= {records}:
        os.kill(os.getpid(), signal.SIGKILL)
results_store.ResultsStore.append = append
"""


def python_with(fault, module, args):
    """argv running `module`.main(args) (an entry point's main) after `fault` has run."""
    code = (f"import sys\nsys.path.insert(0, {ROOT!r})\nfrom runtime import cpu_speed\ncpu_speed.default_threads()\n"
            f"{fault}\nimport {module} as entry\nsys.exit(entry.main({list(args)!r}))\n")
    return [sys.executable, "-c", code]
