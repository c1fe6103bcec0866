"""Lazy package attributes (PEP 562): a package names what it exports and the module each lives in, and
the module is imported on first touch, so importing the package (e.g. for a Paddle-free settings module
beside Paddle code) imports nothing else."""

import importlib


def lazy_exports(package, exports):
    """(__getattr__, __dir__) for `package` (its __name__) exporting {name: submodule}."""

    def __getattr__(name):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{module}", package), name)

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__
