"""Test-wide settings that must be in place before PaddlePaddle is imported."""

import os

# Paddle runs one CPU thread unless told otherwise; two roughly doubles speed on CI's 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("FLAGS_call_stack_level", "2")
