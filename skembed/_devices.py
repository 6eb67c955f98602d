"""Devices and floating-point types: where a model runs and in what precision.

Knows nothing of models or scikit-learn: it maps the ``device`` and
``precision`` settings to torch's, and tells whether this machine computes
bfloat16 natively (AMX or AVX512-BF16 on a CPU, any bfloat16-capable GPU)
or emulates it, many times slower.
"""

from __future__ import annotations

import warnings


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to the best available torch device, and check the others.

    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA device.")
        index = device.partition(":")[2]
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was asked for, but torch sees {torch.cuda.device_count()} "
                "CUDA device(s)."
            )
    if device == "mps" and not has_mps:
        raise ValueError("device='mps' was asked for, but torch sees no MPS device.")
    return device


def device_type(device: str) -> str:
    """``"cuda"`` for ``"cuda:1"``, and so on; ``"auto"`` is resolved first."""
    return resolve_device(device).split(":")[0]


def torch_dtype(precision: str):
    """The torch dtype of a ``precision`` setting."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        precision
    ]


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def has_native_bfloat16(device: str) -> bool:
    """Whether ``device`` (resolved) computes bfloat16 natively, so that it is fast there."""
    import torch

    kind = torch.device(device).type
    if kind == "cpu":
        return cpu_has_fast_bfloat16()
    if kind == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return False


def warn_if_bfloat16_is_slow(setting: str, instead: str, device: str) -> None:
    """Warn that ``setting`` is emulated, slower than ``instead``, on this CPU ``device``."""
    import torch

    if torch.device(device).type == "cpu" and not cpu_has_fast_bfloat16():
        warnings.warn(
            f"{setting} on a CPU without AVX512-BF16 or AMX instructions "
            f"is emulated and much slower than {instead}.",
            RuntimeWarning,
            stacklevel=3,
        )
