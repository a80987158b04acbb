"""Native kernels: takes C source of a kernel, gives it compiled and loaded (ctypes), or None where it cannot be.

A loop that is linear in its own past, `h = a * h[t-1] + b` with `a` and `b` computed before the loop, is one
pass over time whose step is one multiply-add per element: per-step Python (a dispatch or two each step, forward
and backward) costs far more than the arithmetic. The kernel here runs the whole pass in C. It is plain C over
raw pointers, built by the system's C compiler (`$CC`, else `cc`) into a shared library cached by the hash of
its source and flags (`$RNNDSL_CACHE`, else `$XDG_CACHE_HOME/rnndsl`, else `~/.cache/rnndsl`), and called through
ctypes: no torch headers, so a first build takes well under a second (a torch C++ extension, which includes
torch's headers, takes about 45 s). `-ffp-contract=off` keeps `a * h + b` two roundings, as torch computes it,
so the kernel gives the same numbers as the generated loop.

The same builder (`library`) makes each loop's step kernels (`backend.native_step`: `step_library`, one per
source and C type), with the host's vector instructions and glibc's vector maths on top (`STEP_FLAGS`,
`STEP_LIBS`).

Where no compiler is found, the build fails, or `RNNDSL_NATIVE=0` is set, `scan_kernel()` (`step_library`) is
None and the caller takes its pure-PyTorch path; `why_not()` (`why_not("step")`) says which.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = [
    "SOURCE",
    "available",
    "cache_dir",
    "exported",
    "library",
    "scan_kernel",
    "shared_openmp",
    "step_library",
    "why_not",
]

FLAGS = ("-std=c99", "-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")

# Over (B, T, H) contiguous arrays, t in loop order (`reverse`: from T - 1 down), the step before the first
# reading start[i]: the forward out[i, t] = a[i, t] * out[i, t - 1] + b[i, t]; the backward, given dL/dout,
# g[i, t] = dL/dout[i, t] + a[i, t + 1] * g[i, t + 1] (the same recurrence the other way), da[i, t] =
# g[i, t] * out[i, t - 1] and dstart[i] = a[i, first] * g[i, first], in one pass. Each row of H is one
# vectorisable loop.
SOURCE = r"""
#define KERNELS(T_)                                                                                  \
    static void step_##T_(T_ *restrict out, const T_ *restrict a, const T_ *restrict h,              \
                          const T_ *restrict b, long n) {                                            \
        for (long j = 0; j < n; j++) out[j] = a[j] * h[j] + b[j];                                    \
    }                                                                                                \
    void rnndsl_linear_scan_##T_(const T_ *a, const T_ *b, const T_ *start, T_ *out, long B, long T, \
                                  long H, int reverse) {                                             \
        for (long i = 0; i < B; i++) {                                                               \
            const T_ *h = start + i * H;                                                             \
            for (long k = 0; k < T; k++) {                                                           \
                long at = (i * T + (reverse ? T - 1 - k : k)) * H;                                   \
                step_##T_(out + at, a + at, h, b + at, H);                                           \
                h = out + at;                                                                        \
            }                                                                                        \
        }                                                                                            \
    }                                                                                                \
    static void back_##T_(T_ *restrict g, T_ *restrict da, T_ *restrict carry, const T_ *restrict a, \
                          const T_ *restrict grad, const T_ *restrict prev, long n) {                \
        for (long j = 0; j < n; j++) {                                                               \
            g[j] = grad[j] + carry[j];                                                               \
            da[j] = g[j] * prev[j];                                                                  \
            carry[j] = a[j] * g[j];                                                                  \
        }                                                                                            \
    }                                                                                                \
    void rnndsl_linear_scan_backward_##T_(const T_ *a, const T_ *start, const T_ *out, const T_ *grad, \
                                           T_ *g, T_ *da, T_ *dstart, long B, long T, long H,        \
                                           int reverse) {                                            \
        for (long i = 0; i < B; i++) {                                                               \
            T_ *carry = dstart + i * H;                                                              \
            for (long j = 0; j < H; j++) carry[j] = 0;                                               \
            for (long k = T - 1; k >= 0; k--) {                                                      \
                long t = reverse ? T - 1 - k : k;                                                    \
                long at = (i * T + t) * H;                                                           \
                const T_ *prev = k == 0 ? start + i * H : out + at + (reverse ? H : -H);             \
                back_##T_(g + at, da + at, carry, a + at, grad + at, prev, H);                       \
            }                                                                                        \
        }                                                                                            \
    }
KERNELS(float)
KERNELS(double)
"""

_reasons: dict[str, str] = {}

# What a step kernel (`backend.native_step`) is built with besides `FLAGS`: the host's vector instructions, and
# glibc's vector maths (libmvec), which the source's `declare simd` lines let loops over exp and tanh call: a
# scalar expf a lane measured 3-7x slower than torch's vectorised ops here, the vector one 1.7-7x faster.
# `-fno-trapping-math` lets gcc vectorise a select whose arms compute something (relu's derivative, `x > 0 ? g
# : 0`, kept the whole loop scalar without it: IndRNN's backward step 4x slower); it changes no result.
STEP_FLAGS = ("-march=native", "-fopenmp-simd", "-fno-trapping-math")
STEP_LIBS = ("-lmvec", "-lm")


def cache_dir() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("RNNDSL_CACHE"):
        return Path(os.environ["RNNDSL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rnndsl"


def why_not(tag: str = "linear_scan") -> str:
    """Why the library `tag` ("linear_scan", or "step" for the step kernels) is None ("" when it is not, or
    has not been asked for yet)."""
    return _reasons.get(tag, "")


@functools.cache
def scan_kernel() -> ctypes.CDLL | None:
    """The linear-scan library (built on first use, then loaded from the cache), or None."""
    lib = library("linear_scan", SOURCE)
    if lib is None:
        return None
    sizes = [ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_int]
    for c_type in ("float", "double"):
        for name, pointers in (("rnndsl_linear_scan_", 4), ("rnndsl_linear_scan_backward_", 7)):
            fn = getattr(lib, name + c_type)
            fn.argtypes = [*[ctypes.c_void_p] * pointers, *sizes]
            fn.restype = None
    return lib


@functools.cache
def step_library(source: str, suffix: str) -> ctypes.CDLL | None:
    """A loop's step kernels (`backend.native_step`) for one C type ("f32" or "f64": the source's part under
    `#ifdef RNNDSL_F32`...), built on first use (then loaded from the cache), or None (`why_not("step")` says
    why). A step function takes (step, T, B, threads, pointer table); a whole run over time (`_fwall`, `_bwall`,
    where the loop has no matrix product) takes (T, B, threads, pointer table). Built with OpenMP (`-fopenmp`)
    where the compiler has it, which splits a call's rows among the threads given; else without, the rows in
    order."""
    flags = (*STEP_FLAGS, f"-DRNNDSL_{suffix.upper()}")
    shared_openmp()  # asked before a kernel built with -fopenmp loads a libgomp of its own
    lib = library("step", source, (*flags, "-fopenmp"), STEP_LIBS) or library("step", source, flags, STEP_LIBS)
    if lib is None:
        return None
    for name in exported(source):
        if name.endswith("_" + suffix):
            fn = getattr(lib, name)
            # a step: (step, T, B, threads, table); a whole run: (T, B, threads, table)
            longs = 3 if name.rsplit("_", 2)[-2].endswith("all") else 4
            fn.argtypes = [*[ctypes.c_long] * longs, ctypes.c_void_p]
            fn.restype = None
    return lib


@functools.cache
def shared_openmp() -> bool:
    """Whether torch runs its threads on GNU OpenMP, whose `libgomp.so.1` importing torch loaded: a step kernel
    built with -fopenmp then links that same library, and its threads are torch's pool. Elsewhere (Intel's
    OpenMP, macOS, no /proc) the kernels' rows stay on one thread (`kernels.step_threads`). Asked first before
    any step kernel loads."""
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp" in line for line in maps)
    except OSError:
        return False


def exported(source: str) -> list[str]:
    """The names of the functions a step kernel's source exports, in order: its lines `// export NAME`."""
    return [line.split()[-1] for line in source.splitlines() if line.startswith("// export ")]


def available() -> bool:
    """Whether native kernels may be built here at all: not switched off, and a C compiler found."""
    return os.environ.get("RNNDSL_NATIVE", "1") != "0" and _which(os.environ.get("CC", "cc")) is not None


@functools.cache
def _which(compiler: str) -> str | None:
    return shutil.which(compiler)


def library(tag: str, source: str, flags: tuple[str, ...] = (), libs: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """C `source` built with `FLAGS` + `flags` and linked with `libs` into a shared library, cached by the hash
    of all of it, and loaded; None where it cannot be (`why_not(tag)` says why)."""
    if os.environ.get("RNNDSL_NATIVE", "1") == "0":
        _reasons[tag] = "RNNDSL_NATIVE=0"
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        _reasons[tag] = f"no C compiler ({os.environ.get('CC', 'cc')}) on PATH"
        return None
    command = [*FLAGS, *flags]
    key = hashlib.sha256("\0".join([source, *command, *libs, compiler, platform.machine()]).encode()).hexdigest()
    path = cache_dir() / f"{tag}-{key[:16]}.so"
    try:
        if not path.exists():
            _build(compiler, source, command, libs, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as err:
        _reasons[tag] = f"building the kernel failed: {err}"
        return None
    _reasons.pop(tag, None)
    return lib


def _build(compiler: str, source: str, flags: list[str], libs: tuple[str, ...], path: Path) -> None:
    """Compile `source` to `path`, atomically: processes building at once each write their own file and the
    last rename wins, so no process loads a half-written library."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src, lib = Path(tmp) / "kernel.c", Path(tmp) / "kernel.so"
        src.write_text(source)
        done = subprocess.run(
            [compiler, *flags, "-o", str(lib), str(src), *libs], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
        os.replace(lib, path)
