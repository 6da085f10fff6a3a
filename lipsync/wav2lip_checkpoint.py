"""Load a Wav2Lip generator checkpoint from a local file, with one-line errors for every misfit.

The public files (wav2lip.pth, wav2lip_gan.pth) are `{"state_dict", "optimizer", "global_step",
"global_epoch"}` dicts whose keys may carry DataParallel's "module." prefix; other tools re-save
the bare state dict, and the newer release ships TorchScript archives. All three are accepted.
Loading uses `weights_only=True` (tensors and plain containers only, no code runs): the public
files need nothing more, so arbitrary pickles are refused unless the caller says it trusts them.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

from avatar.core.errors import EngineUnavailable, InputError

DATA_PARALLEL_PREFIX = "module."
BATCH_COUNT_SUFFIX = "num_batches_tracked"
FIT_HINT = (
    "use the public 96x96 generator wav2lip.pth or wav2lip_gan.pth, not a SyncNet/discriminator "
    "file or a 192/288/384 px variant"
)


def require_torch():
    try:
        import torch
    except ImportError as error:
        raise EngineUnavailable(
            "the Wav2Lip engine needs torch, which is not installed",
            "pip install '.[lipsync-neural]' -c constraints.txt",
        ) from error
    return torch


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips holding code/ and constants.pkl; plain torch.save zips do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def read_state_dict(checkpoint_path: Path, trust_pickle: bool = False) -> dict:
    """The generator's tensors from the file, keys without "module.", on the CPU."""
    torch = require_torch()
    path = Path(checkpoint_path)
    if not path.is_file():
        raise EngineUnavailable(
            f"Wav2Lip checkpoint not found: {path}",
            "run `avatar models download wav2lip` (or wav2lip_gan), or give the path of your copy",
        )
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # we only read its tensors
                loaded = torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError as error:
            raise InputError(
                f"cannot read TorchScript file {path.name}: {_first_line(error)}", FIT_HINT
            ) from error
    else:
        loaded = _torch_load(torch, path, trust_pickle)
    state = _unwrap(loaded, path.name)
    return {_strip_prefix(key): value for key, value in state.items()}


def _torch_load(torch, path: Path, trust_pickle: bool):
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found and not trust_pickle:
            raise InputError(
                f"{path.name} holds a Python object ({found.group(1)}) besides tensors, so it was not unpickled",
                "if you trust the file, load it with trust_pickle=True, or re-save only its state_dict",
            ) from error
        raise InputError(
            f"cannot read {path.name} as a PyTorch checkpoint ({_first_line(error)})",
            "the download may be truncated: the public wav2lip.pth is 436 MB (416 MiB)",
        ) from error
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise InputError(
            f"cannot read {path.name} as a PyTorch checkpoint ({_first_line(error)})",
            "the download may be truncated: the public wav2lip.pth is 436 MB (416 MiB)",
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _unwrap(loaded, name: str) -> Mapping:
    torch = require_torch()
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        return loaded["state_dict"]
    if isinstance(loaded, Mapping) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return loaded
    keys = ", ".join(map(str, list(loaded)[:5])) if isinstance(loaded, Mapping) else type(loaded).__name__
    raise InputError(f"{name} has no Wav2Lip state_dict (found: {keys})", FIT_HINT)


def _strip_prefix(key: str) -> str:
    return key[len(DATA_PARALLEL_PREFIX) :] if key.startswith(DATA_PARALLEL_PREFIX) else key


def check_state_dict(state: Mapping, expected: Mapping, name: str) -> None:
    """Raise InputError naming the first tensor that is missing, extra or of the wrong shape.

    `expected` is our model's state_dict. Batch-norm step counters (`num_batches_tracked`) may be
    absent: torch before 0.4.1 did not save them and inference never reads them.
    """
    for key, tensor in expected.items():
        if key not in state:
            if key.endswith(BATCH_COUNT_SUFFIX):
                continue
            raise InputError(f"{name} does not fit the Wav2Lip architecture: missing tensor {key}", FIT_HINT)
        got = tuple(getattr(state[key], "shape", ()))
        if got != tuple(tensor.shape) or not hasattr(state[key], "dtype"):
            raise InputError(
                f"{name} does not fit the Wav2Lip architecture: {key} has shape {got}, "
                f"expected {tuple(tensor.shape)}",
                FIT_HINT,
            )
    for key in state:
        if key not in expected:
            raise InputError(
                f"{name} does not fit the Wav2Lip architecture: unexpected tensor {key}", FIT_HINT
            )


def load_wav2lip(checkpoint_path: Path, device: str = "cpu", half: bool = False, trust_pickle: bool = False):
    """A Wav2Lip generator with the file's weights, in eval mode, on `device` (fp16 if `half`)."""
    torch = require_torch()
    from lipsync.wav2lip_model import Wav2Lip

    path = Path(checkpoint_path)
    state = read_state_dict(path, trust_pickle)
    model = Wav2Lip()
    check_state_dict(state, model.state_dict(), path.name)
    model.load_state_dict(state, strict=False)  # strict except the optional step counters, checked above
    dtype = torch.float16 if half else torch.float32
    return model.to(device=device, dtype=dtype).eval()
