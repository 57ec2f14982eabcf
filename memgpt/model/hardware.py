"""Which dtype this hardware runs fast: bf16 only where it is native (CUDA with bf16, or a CPU with
AVX512-BF16 or AMX); elsewhere bf16 is emulated and ~2-6x slower than fp32 (measured: prefill of 1,536
tokens took 24 s in bf16 against 4.1 s in fp32 on an AVX2-only AMD EPYC)."""

from __future__ import annotations

import functools

import torch

from ..errors import MemGPTError

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: str = "cpu", flags: frozenset[str] | None = None) -> bool:
    """True when bf16 matmuls run natively on `device` ("cpu" or "cuda")."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags))


def resolve_dtype(name: str, device: str = "cpu") -> str:
    """"bf16" or "fp32" for a requested dtype name; "auto" picks bf16 only where it is native."""
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name not in DTYPES:
        raise MemGPTError(f"dtype must be auto, bf16 or fp32, got {name!r}")
    return name
