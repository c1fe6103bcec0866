"""BatchNorm statistics for one subnet: the modes, `BNSnapshot`, `recalibrate` and `autocast` live in
`supernet.calibration` (beside the model, so `supernet.export` sets a subnet's statistics exactly as
evaluation does); this module keeps the names evaluate's code and its callers import."""

from supernet.calibration import MODES, BNSnapshot, autocast, recalibrate

__all__ = ["MODES", "BNSnapshot", "autocast", "recalibrate"]
