"""Where a supernet's weights come from: a training checkpoint, the challenge's official weights, or a
few-shot split (one fine-tuned copy per group of codes). One object names the source; it loads the
supernet for a code, lists the files it reads (hashed into results manifests) and says which group a
code belongs to. Beside the model, so an exporter or a search loads weights without `evaluate/`.

    source = WeightsSource("checkpoint", "runs/supernet-demo/supernet.pdparams")
    model = source.load(spec)                 # a ResNet48Supernet in eval mode
    model = source.load(spec, code)           # few-shot: the copy of the code's group
"""

import os
from dataclasses import dataclass

from encoding import KitError
from infra.config import Flag

KINDS = ("checkpoint", "official", "fewshot")
WEIGHT_FLAGS = {"checkpoint": "--checkpoint", "official": "--official", "fewshot": "--fewshot"}
# The command-line flags of a weights source, shared by every command that loads shared weights.
SOURCE_FLAGS = [
    Flag("--checkpoint", "evaluate.checkpoint", str,
         "supernet training checkpoint (dict with 'model') or plain supernet state dict (.pdparams)"),
    Flag("--official", "evaluate.official", str, "the challenge's resnet48.pdparams, loaded into the supernet"),
    Flag("--fewshot", "evaluate.fewshot", str, "a few-shot split's manifest.json: each code by its group's copy"),
]
ONE_SOURCE = ("give exactly one of --checkpoint (a supernet training checkpoint or state dict), --official (the "
              "challenge's resnet48.pdparams) and --fewshot (a few-shot split's manifest.json)")


def weights_source(cfg):
    """('checkpoint' | 'official' | 'fewshot', path) from evaluate.checkpoint / .official / .fewshot
    (exactly one)."""
    from infra.config import get

    given = [(kind, get(cfg, f"evaluate.{kind}", None)) for kind in WEIGHT_FLAGS]
    given = [(kind, path) for kind, path in given if path]
    if len(given) != 1:
        raise KitError(ONE_SOURCE + (", not several" if given else ""))
    kind, path = given[0]
    if not os.path.isfile(path):
        raise KitError(f"{WEIGHT_FLAGS[kind]} {path} does not exist")
    return kind, path


def fewshot_weights(manifest):
    """(groups, {group: weights path}) of a few-shot split whose every copy has been fine-tuned."""
    from .fewshot import finetune_command, read_manifest

    groups, weights = read_manifest(manifest)
    missing = [g for g in groups if not os.path.isfile(weights[g.name])]
    if missing:
        root = os.path.dirname(os.path.abspath(manifest))
        raise KitError(f"few-shot groups without fine-tuned weights ({', '.join(g.name for g in missing)}): "
                       f"expected {weights[missing[0].name]}; fine-tune with e.g. "
                       f"{finetune_command('CONFIG', root, missing[0])}")
    return groups, weights


def load_weights(model, kind, path, reorder=True):
    """Put the weights of `path` into `model` (a ResNet48Supernet): a training checkpoint (a dict whose
    'model' entry is the state dict, as runtime/checkpoint.py saves it) or a plain state dict
    (.pdparams) for 'checkpoint'; the challenge's largest-subnet checkpoint for 'official' (each block's
    channels sorted by importance unless `reorder` is false). Returns the model."""
    from runtime.checkpoint import load_checkpoint, load_model_state

    from .pretrained import load_official_resnet48

    if kind == "official":
        load_official_resnet48(model, path, reorder=reorder)
    elif kind == "checkpoint":
        state = load_checkpoint(path)
        if isinstance(state.get("model"), dict):
            state = state["model"]
        load_model_state(model, state, source=f"checkpoint {path}")
    else:
        raise KitError(f"weights kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return model


@dataclass(frozen=True)
class WeightsSource:
    """One source of shared weights: kind ('checkpoint' | 'official' | 'fewshot') and path."""
    kind: str
    path: str
    reorder: bool = True  # official weights: channels sorted by importance, as the official demo

    def __post_init__(self):
        if self.kind not in KINDS:
            raise KitError(f"weights kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not os.path.isfile(self.path):
            raise KitError(f"{self.kind} weights {self.path} do not exist")

    @classmethod
    def from_config(cls, cfg):
        """The source of evaluate.checkpoint / .official / .fewshot (exactly one) and evaluate.reorder."""
        from infra.config import get

        kind, path = weights_source(cfg)
        return cls(kind, path, reorder=bool(get(cfg, "evaluate.reorder")))

    def groups(self):
        """The few-shot groups (each with its weights) in routing order; [] for a single supernet."""
        return fewshot_weights(self.path)[0] if self.kind == "fewshot" else []

    def group_of(self, code, groups=None):
        """The few-shot group's name that scores `code` (None for a single supernet); refuses a code no
        group takes."""
        if self.kind != "fewshot":
            return None
        from .fewshot import route

        return route(self.groups() if groups is None else groups, code).name

    def files(self):
        """Every file the weights are read from (hashed into a results or export manifest)."""
        return [self.path] + (list(fewshot_weights(self.path)[1].values()) if self.kind == "fewshot" else [])

    def load(self, spec, code=None, group=None):
        """A ResNet48Supernet under `spec` holding these weights, in eval mode; for a few-shot split the
        copy of `group` (or of the group that takes `code`)."""
        from .model import ResNet48Supernet

        kind, path = self.kind, self.path
        if kind == "fewshot":
            if group is None and code is None:
                raise KitError("a few-shot split holds one supernet per group: name the code or the group to load")
            groups, weights = fewshot_weights(self.path)
            if group is None:
                group = self.group_of(code, groups)
            if group not in weights:
                raise KitError(f"few-shot split {self.path} has no group {group!r}: {', '.join(weights)}")
            kind, path = "checkpoint", weights[group]
        model = load_weights(ResNet48Supernet(spec), kind, path, reorder=self.reorder)
        model.eval()
        return model
