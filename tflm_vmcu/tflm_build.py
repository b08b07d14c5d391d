"""Builds programs against a TensorFlow Lite Micro source tree the user points at, for the
host or, with arm-none-eabi-gcc, for a Cortex-M core.

The tree has the layout that TFLM's own `create_tflm_tree.py` writes (as in
../shared/third_party/tflite-micro/reference, or .../cmsis_nn: TFLM with its CMSIS-NN
kernels). A `Toolchain` says which compilers and target flags a build uses:
`host_toolchain()` (g++/gcc, $CXX/$CC) or `cortex_m_toolchain(cpu, cmsis_nn)`.

On the host, `tflm_library` compiles the tree once into a static library with TFLM's own
Makefile flags and caches it. A cross build compiles only the tree's sources a program
links: `build_program` links, reads the linker's undefined symbols, compiles the tree's
files that define them (each object cached, shared by every program of the same tree,
toolchain and flags) and links again until nothing is missing. `build_program` compiles
an application with the flags that must match the library's (TF_LITE_STATIC_MEMORY,
CMSIS_NN, the float ABI ...) and links it, cached too.

Cache: `cache_dir`, else $TFLM_VMCU_CACHE, else ~/.cache/tflm-vmcu. A library (or a cross
build's object folder) is keyed by the tree (every file's path, size and mtime), the
compilers and the flags; an application object by its source's content and flags, and is
recompiled when any header it included (as the compiler reported) changes; a program by
its objects and the library. Concurrent builds of the same key wait for each other (a
lock file), so two test processes never build one library twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import progress
from .errors import TflmVmcuError

_KEY_VERSION = "tflm-vmcu-build-1"

# TFLM's own Makefile flags (make -n microlite at 90b983c, see the tree's README).
# Flags that change code generation or the ABI: an application must use them too.
_ABI_FLAGS_COMMON = [
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-ffunction-sections",
    "-fdata-sections",
    "-fmessage-length=0",
    "-DTF_LITE_STATIC_MEMORY",
    "-DTF_LITE_DISABLE_X86_NEON",
    "-DKERNELS_OPTIMIZED_FOR_SPEED",
]
_HOST_ABI_FLAGS = ["-DTF_LITE_USE_CTIME"]  # host only: micro_time.cc uses clock()
_CXX_FLAGS = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics"]
_C_FLAGS = ["-std=c17"]
_WARNINGS = [
    "-Wsign-compare",
    "-Wdouble-promotion",
    "-Wunused-variable",
    "-Wunused-function",
    "-Wswitch",
    "-Wvla",
    "-Wall",
    "-Wextra",
    "-Wmissing-field-initializers",
    "-Wstrict-aliasing",
    "-Wno-unused-parameter",
]
_CXX_WARNINGS = ["-Wnon-virtual-dtor"]
_C_WARNINGS = ["-Wimplicit-function-declaration"]
# TFLM: -O2 for kernels and third-party code, -Os for the rest (the core).
_KERNEL_DIRS = ("tensorflow/lite/micro/kernels/", "signal/", "third_party/")
_APP_OPT = "-O2"
_LINK_FLAGS = ["-Wl,--gc-sections"]
_LINK_LIBS = ["-lm"]

# Cortex-M cores: the float ABI of cmake/arm-none-eabi.cmake (TFLM's `cortex-m4+fp`,
# `cortex-m7+fp`), and the CMSIS device (Cortex_DFP) of the cmsis_nn tree.
_CORTEX_M = {
    "cortex-m4": (["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"], "M4", "ARMCM4"),
    "cortex-m7": (["-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-d16"], "M7", "ARMCM7"),
}
# TFLM's cortex_m_generic target with OPTIMIZED_KERNEL_DIR=cmsis_nn (the tree's README).
_CMSIS_NN_FLAGS = [
    "-DCMSIS_NN",
    "-DARM_NN_ENABLE_F16=0",
    "-DARM_NN_ENABLE_F32=0",
    "-DTF_LITE_MCU_DEBUG_LOG",
    "-mlittle-endian",
    "-funsigned-char",
    "-fomit-frame-pointer",
]
_CMSIS_NN_WARNINGS = ["-Wno-type-limits", "-Wno-unused-private-field"]

# Left out of the library: TFLM's signal-processing ops (signal/**) and kissfft, which they
# alone use. Nothing outside signal/ includes them except MicroMutableOpResolver's inline
# Add<Signal op>() members, which are only compiled into a program that calls them; such
# a program fails to link (undefined tflite::tflm_signal::Register_*), never silently.
_EXCLUDED_DIRS = ("signal/", "third_party/kissfft/")

# Files whose absence means the folder is not a TFLM tree of the expected layout.
_REQUIRED = (
    "tensorflow/lite/micro/micro_interpreter.cc",
    "tensorflow/lite/micro/micro_interpreter.h",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h",
    "tensorflow/lite/micro/kernels/conv.h",
    "tensorflow/lite/schema/schema_generated.h",
    "third_party/flatbuffers/include/flatbuffers/flatbuffers.h",
    "third_party/gemmlowp/fixedpoint/fixedpoint.h",
)
_CMSIS_NN_HEADER = "third_party/cmsis_nn/Include/arm_nnfunctions.h"


@dataclass(frozen=True)
class Toolchain:
    """The compilers and flags of one kind of build: the host, or one Cortex-M core.

    `target_flags` go into every compile and link (-mcpu, the float ABI); `abi_flags`
    into every compile, of the library and of the application alike (they change types'
    layouts or declarations); `warnings` into the library's compiles only. With `lazy`,
    a program links only the tree's sources it needs (compiled on demand), else the
    whole tree is one library."""

    name: str
    cc: str
    cxx: str
    ar: str
    target_flags: tuple[str, ...] = ()
    abi_flags: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    device: str | None = None  # CMSIS device (ARMCM4 ...): its headers' include path
    lazy: bool = False


def host_toolchain() -> Toolchain:
    """The host's compilers: $CC/$CXX/$AR, else gcc, g++ and ar."""
    return Toolchain(
        "host",
        _compiler("CC", "gcc"),
        _compiler("CXX", "g++"),
        os.environ.get("AR", "ar"),
        abi_flags=tuple(_HOST_ABI_FLAGS),
    )


def cortex_m_cpus() -> list[str]:
    """The Cortex-M cores `cortex_m_toolchain` builds for."""
    return list(_CORTEX_M)


def cortex_m_toolchain(cpu: str, cmsis_nn: bool = True) -> Toolchain:
    """arm-none-eabi-gcc for `cpu` with the float ABI of cmake/arm-none-eabi.cmake; with
    `cmsis_nn`, TFLM's flags for its CMSIS-NN kernels (the cmsis_nn tree). Builds only
    the tree's sources a program links."""
    if cpu not in _CORTEX_M:
        raise TflmVmcuError(
            f"TFLM builds for '{cpu}' are not supported (choose from {', '.join(_CORTEX_M)})"
        )
    cpu_flags, core, device = _CORTEX_M[cpu]
    target = ("-mthumb", *cpu_flags)
    abi: list[str] = []
    warnings: list[str] = []
    if cmsis_nn:
        abi = [
            *_CMSIS_NN_FLAGS,
            f"-DCPU_{core}=1",
            f"-D{device}",
            f'-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE="{device}.h"',
        ]
        warnings = list(_CMSIS_NN_WARNINGS)
    return Toolchain(
        cpu,
        _compiler("ARM_CC", "arm-none-eabi-gcc"),
        _compiler("ARM_CXX", "arm-none-eabi-g++"),
        shutil.which("arm-none-eabi-ar") or "arm-none-eabi-ar",
        target_flags=target,
        abi_flags=tuple(abi),
        warnings=tuple(warnings),
        device=device if cmsis_nn else None,
        lazy=True,
    )


def has_cmsis_nn(tree: Path) -> bool:
    """True for a tree with TFLM's CMSIS-NN kernels (OPTIMIZED_KERNEL_DIR=cmsis_nn)."""
    return (Path(tree) / _CMSIS_NN_HEADER).is_file()


def cache_root(cache_dir: Path | None = None) -> Path:
    """The cache folder: cache_dir, else $TFLM_VMCU_CACHE, else ~/.cache/tflm-vmcu."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("TFLM_VMCU_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tflm-vmcu"


def _abi(toolchain: Toolchain | None) -> list[str]:
    if toolchain is None:
        return [*_ABI_FLAGS_COMMON, *_HOST_ABI_FLAGS]
    return [*_ABI_FLAGS_COMMON, *toolchain.abi_flags]


def tflm_flags(toolchain: Toolchain | None = None) -> list[str]:
    """C++ flags every file that includes TFLM headers must use with the library of
    `toolchain` (default: the host's) (TF_LITE_STATIC_MEMORY changes TfLiteTensor's
    layout; -fno-rtti is needed to derive from TFLM classes; CMSIS_NN declares the
    CMSIS-NN registrations; the target flags fix the float ABI). Add an optimisation
    level and warnings as you like."""
    target = list(toolchain.target_flags) if toolchain is not None else []
    return [*target, *_CXX_FLAGS, *_abi(toolchain)]


def tflm_c_flags(toolchain: Toolchain | None = None) -> list[str]:
    """tflm_flags() for C sources of the application."""
    target = list(toolchain.target_flags) if toolchain is not None else []
    return [*target, *_C_FLAGS, *_abi(toolchain)]


def tflm_include_dirs(tree: Path, toolchain: Toolchain | None = None) -> list[Path]:
    """Include paths for the TFLM headers of `tree` (the tree's README's list; with a
    toolchain for a CMSIS device, the CMSIS and CMSIS-NN headers too)."""
    tree = Path(tree).resolve()
    third = tree / "third_party"
    subdirs = ["gemmlowp", "flatbuffers/include", "kissfft", "ruy"]
    dirs = [tree, third, *(third / d for d in subdirs)]
    if toolchain is not None and toolchain.device is not None:
        cmsis = third / "cmsis"
        dirs += [
            cmsis / "Cortex_DFP" / "Device" / toolchain.device / "Include",
            cmsis / "CMSIS" / "Core" / "Include",
            cmsis,
            third / "cmsis_nn",
            third / "cmsis_nn" / "Include",
        ]
    return dirs


def _compiler(var: str, default: str) -> str:
    name = os.environ.get(var, default)
    path = shutil.which(name)
    if path is None:
        raise TflmVmcuError(f"C/C++ compiler '{name}' not found (set {var} or install it)")
    return path


def _compiler_id(cxx: str) -> str:
    proc = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    return f"{cxx} {(proc.stdout.splitlines() or ['?'])[0]}"


def _check_tree(tree: Path) -> Path:
    tree = Path(tree)
    if not tree.is_dir():
        raise TflmVmcuError(f"TFLM source tree {tree} does not exist or is not a folder")
    missing = [f for f in _REQUIRED if not (tree / f).is_file()]
    if missing:
        raise TflmVmcuError(
            f"{tree} is not a complete TFLM source tree (as create_tflm_tree.py writes): "
            f"missing {', '.join(missing)}"
        )
    return tree.resolve()


def _tree_files(tree: Path) -> list[str]:
    """Every file under tree, relative, sorted (hidden folders skipped)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, tree)
        for f in filenames:
            files.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(files)


def library_sources(tree: Path) -> list[str]:
    """The tree's files that go into the library (relative paths): every .cc and .c
    except signal/** and third_party/kissfft/** (the kissfft .c files are #included by
    signal's wrappers and never compiled on their own)."""
    return [
        f
        for f in _tree_files(Path(tree))
        if f.endswith((".cc", ".c")) and not f.startswith(_EXCLUDED_DIRS)
    ]


def _source_flags(rel: str, toolchain: Toolchain | None = None) -> list[str]:
    opt = "-O2" if rel.startswith(_KERNEL_DIRS) else "-Os"
    target = list(toolchain.target_flags) if toolchain is not None else []
    extra = list(toolchain.warnings) if toolchain is not None else []
    if rel.endswith(".c"):
        return [*target, *_C_FLAGS, *_abi(toolchain), opt, *_WARNINGS, *_C_WARNINGS, *extra]
    return [*target, *_CXX_FLAGS, *_abi(toolchain), opt, *_WARNINGS, *_CXX_WARNINGS, *extra]


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()[:20]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _first_error(output: str) -> str:
    lines = output.splitlines()
    for marker in ("undefined reference", " error:", "error:", "fatal"):
        for line in lines:
            if marker in line:
                return line.strip()
    return (lines or ["no message"])[0].strip()


class _Job:
    """One compiler run: writes `tmp`, renamed to `out` on success, so an interrupted
    build never leaves a truncated file under the final name."""

    def __init__(self, name: str, cmd: list[str], out: Path) -> None:
        self.name, self.out = name, out
        self.tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        self.cmd = [*cmd, "-o", str(self.tmp)]


def _run_jobs(jobs: Sequence[_Job], what: str) -> None:
    """Runs the jobs in parallel (os.cpu_count() at a time); on the first failure starts
    no more and raises with the file and the compiler's first error line."""

    def run(job: _Job) -> None:
        try:
            proc = subprocess.run(job.cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise TflmVmcuError(f"{what}: cannot run {job.cmd[0]}: {exc}") from None
        if proc.returncode != 0:
            job.tmp.unlink(missing_ok=True)
            why = _first_error(proc.stderr + proc.stdout)
            raise TflmVmcuError(f"{what}: compiling {job.name} failed: {why}")
        job.tmp.replace(job.out)

    if jobs:
        progress.step(f"{what}: compiling {len(jobs)} files (cached afterwards)")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures: list[Future[None]] = [pool.submit(run, job) for job in jobs]
        wait(futures, return_when=FIRST_EXCEPTION)
        for fut in futures:
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                raise fut.exception()  # type: ignore[misc]


def _library_key(
    tree: Path, cxx: str, cc: str, sources: list[str], toolchain: Toolchain | None = None
) -> str:
    parts = [_KEY_VERSION, _compiler_id(cxx), _compiler_id(cc)]
    if toolchain is not None:  # the host's key is unchanged: no toolchain part
        parts += ["toolchain", toolchain.name, *toolchain.target_flags, f"lazy={toolchain.lazy}"]
    for rel in _tree_files(tree):
        st = (tree / rel).stat()
        parts.append(f"{rel} {st.st_size} {st.st_mtime_ns}")
    parts += [f"{rel} {' '.join(_source_flags(rel, toolchain))}" for rel in sources]
    return _digest(parts)


def tflm_library(
    tree: Path, cache_dir: Path | None = None, toolchain: Toolchain | None = None
) -> Path:
    """Compiles the TFLM tree into a static library (for the host unless `toolchain` says
    otherwise; cached, see the module docstring) and returns its path. Compiles every
    .cc/.c of `library_sources` with TFLM's Makefile flags (-Os core, -O2 kernels) in
    os.cpu_count() parallel jobs. Raises TflmVmcuError for a missing or incomplete tree
    and for a compiler failure (naming the file and the compiler's first error line)."""
    tree = _check_tree(tree)
    if toolchain is None:
        cxx, cc, ar = _compiler("CXX", "g++"), _compiler("CC", "gcc"), os.environ.get("AR", "ar")
        key_toolchain = None
    else:
        cxx, cc, ar = toolchain.cxx, toolchain.cc, toolchain.ar
        key_toolchain = toolchain if toolchain.name != "host" else None
    sources = library_sources(tree)
    key = _library_key(tree, cxx, cc, sources, key_toolchain)
    root = cache_root(cache_dir)
    lib = root / f"tflm-lib-{key}" / "libtflm.a"
    if lib.is_file():
        return lib
    with _locked(root / f"tflm-lib-{key}.lock"):
        if lib.is_file():  # another process built it while we waited
            return lib
        _build_library(tree, cxx, cc, ar, sources, lib, toolchain)
    return lib


def _object_name(rel: str) -> str:
    # Flat, unique member names: `ar` keeps one member per name.
    return rel.replace("/", "__") + ".o"


def _library_jobs(
    tree: Path, toolchain: Toolchain | None, cxx: str, cc: str, rels: Iterable[str], obj_dir: Path
) -> list[_Job]:
    includes = [f"-I{d}" for d in tflm_include_dirs(tree, toolchain)]
    jobs = []
    for rel in rels:
        obj = obj_dir / _object_name(rel)
        if not obj.is_file():  # else left by an interrupted build of the same key
            compiler = cc if rel.endswith(".c") else cxx
            cmd = [compiler, *_source_flags(rel, toolchain), *includes, "-c", str(tree / rel)]
            jobs.append(_Job(rel, cmd, obj))
    return jobs


def _archive(ar: str, objects: Sequence[Path], lib: Path) -> None:
    tmp_lib = lib.with_suffix(f".a.tmp{os.getpid()}")
    tmp_lib.unlink(missing_ok=True)
    proc = subprocess.run(
        [ar, "rcs", str(tmp_lib), *map(str, objects)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise TflmVmcuError(f"TFLM library: {ar} failed: {_first_error(proc.stderr)}")
    tmp_lib.replace(lib)


def _build_library(
    tree: Path,
    cxx: str,
    cc: str,
    ar: str,
    sources: list[str],
    lib: Path,
    toolchain: Toolchain | None = None,
) -> None:
    obj_dir = lib.parent / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    _run_jobs(_library_jobs(tree, toolchain, cxx, cc, sources, obj_dir), "TFLM library")
    _archive(ar, [obj_dir / _object_name(rel) for rel in sources], lib)
    shutil.rmtree(obj_dir, ignore_errors=True)


# --- Cross builds: only the sources a program links ------------------------------------

_UNDEFINED = re.compile(r"undefined reference to [`']([^'\n]+)'")
_SPECIAL = re.compile(
    r"^(?:vtable for |typeinfo for |typeinfo name for |VTT for |construction vtable for |"
    r"guard variable for |non-virtual thunk to |virtual thunk to )"
)


class _LazyObjects:
    """The object folder of one tree, toolchain and set of flags: each of the tree's
    library sources compiled on first need (by the symbols a link misses) and kept."""

    def __init__(self, tree: Path, toolchain: Toolchain, cache_dir: Path | None) -> None:
        self.tree, self.toolchain = tree, toolchain
        self.sources = library_sources(tree)
        key = _library_key(tree, toolchain.cxx, toolchain.cc, self.sources, toolchain)
        self.dir = cache_root(cache_dir) / f"tflm-obj-{key}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def compiled(self) -> list[str]:
        return [rel for rel in self.sources if (self.dir / _object_name(rel)).is_file()]

    def compile(self, rels: Iterable[str]) -> None:
        tc = self.toolchain
        jobs = _library_jobs(self.tree, tc, tc.cxx, tc.cc, sorted(rels), self.dir)
        _run_jobs(jobs, f"TFLM library ({tc.name})")

    def archive(self, lib: Path) -> None:
        """The objects compiled so far as one static library `lib`."""
        _archive(self.toolchain.ar, [self.dir / _object_name(r) for r in self.compiled()], lib)

    def definers(self, symbols: Iterable[str]) -> set[str]:
        """The not yet compiled sources that define (by their text) any of the linker's
        undefined `symbols` (demangled names)."""
        done = set(self.compiled())
        found: set[str] = set()
        texts = _source_texts(self.tree, tuple(self.sources))
        for symbol in symbols:
            patterns, word = _definition_patterns(symbol)
            near = {rel: text for rel, text in texts.items() if word in text}
            for pattern in patterns:
                hits = {rel for rel, text in near.items() if pattern.search(text)}
                if hits:
                    found |= hits - done
                    break
        return found


@cache
def _source_texts(tree: Path, sources: tuple[str, ...]) -> dict[str, str]:
    texts = {}
    for rel in sources:
        text = (tree / rel).read_text(errors="replace")
        # Comments out: a name in a comment defines nothing.
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
        texts[rel] = re.sub(r"//[^\n]*", "", text)
    return texts


def _strip_templates(name: str) -> str:
    name = name.replace("operator<<", "operator_shl").replace("operator<", "operator_lt")
    while True:
        stripped = re.sub(r"<[^<>]*>", "", name)
        if stripped == name:
            return name
        name = stripped


def _definition_patterns(symbol: str) -> tuple[list[re.Pattern[str]], str]:
    """Regular expressions for a definition of `symbol` (a demangled name) in a source
    file, most specific first, and the plain name every match contains."""
    special = _SPECIAL.match(symbol)
    name = _strip_templates(_SPECIAL.sub("", symbol))
    name = name.split("(", 1)[0].strip()
    parts = [p for p in name.split("::") if p]
    if not parts:
        return [], symbol
    last = re.escape(parts[-1])
    if special:  # a class's vtable or typeinfo: where its members are defined
        return [re.compile(rf"\b{last}::~?\w+\s*\(")], parts[-1]
    # A definition: after a return type at the start of its line (a call's arguments
    # continued on a line have none), the name, its parameter list, a constructor's
    # initialisers, then a body.
    typed = r"(?m)^[ \t]*(?:[\w:<>,]+[ \t*&]+)+"
    body = r"\s*\([^;{]*\)[^;{]*\{"
    patterns = []
    if len(parts) >= 2:
        owner = re.escape(parts[-2])
        # A constructor or destructor has no return type.
        head = r"(?m)^[ \t]*" if parts[-1].lstrip("~") == parts[-2] else typed
        patterns.append(re.compile(rf"{head}(?:\w+::)*{owner}::{last}{body}"))
    patterns.append(re.compile(rf"{typed}{last}{body}"))
    if len(parts) >= 2:
        patterns.append(re.compile(rf"\b{owner}::{last}\b"))  # a static member
    patterns += [
        re.compile(rf"\b{last}\s*(?:\[[^\]]*\]\s*)*="),  # a variable: initialised
        re.compile(rf"\b{last}\b"),
    ]
    return patterns, parts[-1]


def _undefined_symbols(output: str) -> list[str]:
    return sorted(set(_UNDEFINED.findall(output)))


# --- Programs ----------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stamp(path: str) -> list[object]:
    st = Path(path).stat()
    return [path, st.st_size, st.st_mtime_ns]


def _deps_unchanged(manifest: Path) -> bool:
    """True if every file the last build read (sources and the headers they included)
    still has the size and mtime recorded then."""
    try:
        recorded = json.loads(manifest.read_text())
        return all(_stamp(str(entry[0])) == entry for entry in recorded)
    except (OSError, ValueError, TypeError, IndexError):
        return False


def _read_depfile(path: Path) -> list[str]:
    """The prerequisites in a make-style dependency file written by -MMD."""
    text = path.read_text().replace("\\\n", " ")
    _, _, prereqs = text.partition(": ")
    return [p for p in prereqs.split() if p]


def _app_objects(
    srcs: list[Path],
    cxx_cmd: list[str],
    c_cmd: list[str],
    root: Path,
    extra: Mapping[Path, Sequence[str]] | None = None,
) -> list[Path]:
    """Compiles each application source (C++, or C for .c/.S) into a cached object, keyed by
    the command and the source's content; recompiled when a header it included changed.
    Returns the objects in the order of `srcs`."""
    objects, jobs = [], []
    for src in srcs:
        cmd = c_cmd if src.suffix in (".c", ".S") else cxx_cmd
        cmd = [*cmd, *(extra or {}).get(src, ())]
        key = _digest([_KEY_VERSION, "object", *cmd, str(src), _file_digest(src)])
        obj = root / f"obj-{key}" / f"{src.stem}.o"
        objects.append(obj)
        if obj.is_file() and _deps_unchanged(obj.with_suffix(".deps.json")):
            continue
        obj.parent.mkdir(parents=True, exist_ok=True)
        depfile = obj.with_suffix(f".d{os.getpid()}")
        jobs.append(_Job(src.name, [*cmd, "-MMD", "-MF", str(depfile), "-c", str(src)], obj))
    _run_jobs(jobs, "build_program")
    for job in jobs:
        depfile = job.out.with_suffix(f".d{os.getpid()}")
        deps = _read_depfile(depfile)
        depfile.unlink(missing_ok=True)
        stamps = [_stamp(str(Path(d).resolve())) for d in sorted(set(deps))]
        job.out.with_suffix(".deps.json").write_text(json.dumps(stamps))
    return objects


def build_program(
    tree: Path,
    sources: Sequence[Path],
    output: Path,
    include_dirs: Sequence[Path] = (),
    defines: Sequence[str] = (),
    extra_libs: Sequence[Path | str] = (),
    cache_dir: Path | None = None,
    *,
    toolchain: Toolchain | None = None,
    opt: str = _APP_OPT,
    link_flags: Sequence[str] = (),
    link_deps: Sequence[Path] = (),
    source_flags: Mapping[Path, Sequence[str]] | None = None,
) -> Path:
    """Compiles the C++17 `sources` (C for .c) with `tflm_flags(toolchain)` and `opt` (plus
    -I include_dirs, -D defines) and links them with `extra_libs` (before TFLM) against
    the tree's TFLM (-Wl,--gc-sections, `link_flags`, -lm); copies the program to `output`
    and returns it. On the host (`toolchain` None or a host one) TFLM is
    `tflm_library(tree)`; a lazy (cross) toolchain links only the tree's sources the
    program needs. Each object is cached by its source's content and flags and recompiled
    when an included header changes; the program by its objects, the library and
    `link_deps` (files the link reads, e.g. a linker script). `source_flags` adds flags
    to one source's compile only (e.g. -I of a folder of generated headers, so that the
    other objects stay cached when it moves). Raises TflmVmcuError naming
    the file and first error on a failed compile, and the first error line on a failed
    link."""
    tree = _check_tree(tree)
    lazy = toolchain is not None and toolchain.lazy
    lib = None if lazy else tflm_library(tree, cache_dir, toolchain)
    cxx = toolchain.cxx if toolchain is not None else _compiler("CXX", "g++")
    cc = toolchain.cc if toolchain is not None else _compiler("CC", "gcc")
    srcs = [Path(s).resolve() for s in sources]
    if not srcs:
        raise TflmVmcuError("build_program: no sources given")
    for s in srcs:
        if not s.is_file():
            raise TflmVmcuError(f"build_program: source {s} does not exist")
    common = [f"-I{Path(d).resolve()}" for d in include_dirs]
    common += [f"-I{d}" for d in tflm_include_dirs(tree, toolchain)]
    common += [f"-D{d}" for d in defines]
    cxx_cmd = [cxx, *tflm_flags(toolchain), opt, *common]
    c_cmd = [cc, *tflm_c_flags(toolchain), opt, *common]
    root = cache_root(cache_dir)
    extra = {Path(k).resolve(): list(v) for k, v in (source_flags or {}).items()}
    objects = _app_objects(srcs, cxx_cmd, c_cmd, root, extra)
    libs = [str(Path(x).resolve()) if Path(x).is_file() else str(x) for x in extra_libs]
    target = list(toolchain.target_flags) if toolchain is not None else []
    link = [*target, *link_flags, *_LINK_FLAGS, *_LINK_LIBS]
    parts = [_KEY_VERSION, "program", _compiler_id(cxx), str(lib), *link, "|", *libs]
    parts += [_file_digest(o) for o in objects]
    parts += [f"{x} {_file_digest(Path(x))}" for x in libs if Path(x).is_file()]
    parts += [f"{d} {_file_digest(Path(d))}" for d in link_deps]
    if lib is not None:
        parts.append(" ".join(map(str, _stamp(str(lib)))))
    else:
        parts.append(f"lazy {tree}")
    entry = root / f"prog-{_digest(parts)}"
    program = entry / "program"
    with _locked(entry.with_suffix(".lock")):
        if not program.is_file():
            try:
                shutil.rmtree(entry, ignore_errors=True)
                entry.mkdir(parents=True)
                if lib is not None:
                    _link(cxx, objects, libs, [str(lib)], link, program)
                else:
                    assert toolchain is not None
                    _link_lazy(tree, toolchain, cache_dir, cxx, objects, libs, link, program)
            except TflmVmcuError:
                shutil.rmtree(entry, ignore_errors=True)  # leave no half-built entry
                raise
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    shutil.copy2(program, tmp)
    tmp.replace(output)
    return output


def _try_link(
    cxx: str, objects: list[Path], libs: list[str], tflm: list[str], link: list[str], out: Path
) -> tuple[bool, str]:
    job = _Job("the program", [cxx, *map(str, objects), *libs, *tflm, *link], out)
    proc = subprocess.run(job.cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        job.tmp.unlink(missing_ok=True)
        return False, proc.stderr + proc.stdout
    job.tmp.replace(out)
    return True, ""


def _link(
    cxx: str, objects: list[Path], libs: list[str], tflm: list[str], link: list[str], out: Path
) -> None:
    ok, output = _try_link(cxx, objects, libs, tflm, link, out)
    if not ok:
        raise TflmVmcuError(f"build_program: linking failed: {_first_error(output)}")


def _link_lazy(
    tree: Path,
    toolchain: Toolchain,
    cache_dir: Path | None,
    cxx: str,
    objects: list[Path],
    libs: list[str],
    link: list[str],
    out: Path,
) -> None:
    """Links against the tree's objects compiled so far; while the linker misses symbols
    that sources of the tree define, compiles those sources and links again."""
    lazy = _LazyObjects(tree, toolchain, cache_dir)
    lib = out.parent / "libtflm.a"
    while True:
        with _locked(lazy.dir.with_suffix(".lock")):
            lazy.archive(lib)
        ok, output = _try_link(cxx, objects, libs, [str(lib)], link, out)
        if ok:
            lib.unlink(missing_ok=True)
            return
        missing = lazy.definers(_undefined_symbols(output))
        if not missing:
            raise TflmVmcuError(f"build_program: linking failed: {_first_error(output)}")
        with _locked(lazy.dir.with_suffix(".lock")):
            lazy.compile(missing)
