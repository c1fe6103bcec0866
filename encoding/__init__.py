"""Subnet codes of the CVPR 2022 NAS Track 1 ResNet48 space: parse, validate, sample, cost.

Pure numpy, no PaddlePaddle: everything above it (supernet, evaluation, submission) reads
codes through this package, and it imports in milliseconds. It also reads and writes
architecture lists. The base error and atomic writes come from `infra` and are re-exported here.
"""

from infra.atomic import atomic_write_json, atomic_write_text
from infra.errors import KitError, run_reporting_errors

from .arch import CODE_LEN, MAX_DEPTHS, RATIOS, SIZE_CODES, Arch, digit_matrix, format_code, parse
from .archlist import ArchEntry, read_arch_list, write_arch_list
from .cost import costs, macs_of, params_of
from .errors import ArchListError, CodeError
from .netspec import NetSpec, Widths, make_divisible, net_spec, widths
from .space import DOCUMENTED, RELEASED, SPACES, SearchSpace, check_ties, get_space

__all__ = [
    "CODE_LEN", "MAX_DEPTHS", "RATIOS", "SIZE_CODES", "Arch", "digit_matrix", "format_code", "parse",
    "ArchEntry", "read_arch_list", "write_arch_list", "atomic_write_json", "atomic_write_text",
    "costs", "macs_of", "params_of", "ArchListError", "CodeError", "KitError", "run_reporting_errors",
    "NetSpec", "Widths", "make_divisible", "net_spec", "widths",
    "DOCUMENTED", "RELEASED", "SPACES", "SearchSpace", "check_ties", "get_space",
]
