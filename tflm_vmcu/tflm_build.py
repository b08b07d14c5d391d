"""Builds host programs against a TensorFlow Lite Micro source tree the user points at.

The tree has the layout that TFLM's own `create_tflm_tree.py` writes (as in
../shared/third_party/tflite-micro/reference). `tflm_library` compiles it once into a
static library with TFLM's own Makefile flags and caches it; `build_program` compiles an
application with the flags that must match the library's and links it, cached too.

Cache: `cache_dir`, else $TFLM_VMCU_CACHE, else ~/.cache/tflm-vmcu. A library is keyed
by the tree (every file's path, size and mtime), the compiler and the flags; a program by
its sources' contents, its flags and the library, and is rebuilt when any header it
included (as the compiler reported) changes. Concurrent builds of the same key wait for
each other (a lock file), so two test processes never build one library twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

from .errors import TflmVmcuError

_KEY_VERSION = "tflm-vmcu-build-1"

# TFLM's own Makefile flags (make -n microlite at 90b983c, see the tree's README).
# Flags that change code generation or the ABI: an application must use them too.
_ABI_FLAGS = [
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-ffunction-sections",
    "-fdata-sections",
    "-fmessage-length=0",
    "-DTF_LITE_STATIC_MEMORY",
    "-DTF_LITE_DISABLE_X86_NEON",
    "-DKERNELS_OPTIMIZED_FOR_SPEED",
    "-DTF_LITE_USE_CTIME",  # host only: micro_time.cc uses clock()
]
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
    "tensorflow/lite/micro/kernels/conv.cc",
    "tensorflow/lite/schema/schema_generated.h",
    "third_party/flatbuffers/include/flatbuffers/flatbuffers.h",
    "third_party/gemmlowp/fixedpoint/fixedpoint.h",
)


def cache_root(cache_dir: Path | None = None) -> Path:
    """The cache folder: cache_dir, else $TFLM_VMCU_CACHE, else ~/.cache/tflm-vmcu."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("TFLM_VMCU_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tflm-vmcu"


def tflm_flags() -> list[str]:
    """C++ flags every file that includes TFLM headers must use with `tflm_library`'s
    library (TF_LITE_STATIC_MEMORY changes TfLiteTensor's layout; -fno-rtti is needed to
    derive from TFLM classes). Add an optimisation level and warnings as you like."""
    return [*_CXX_FLAGS, *_ABI_FLAGS]


def tflm_include_dirs(tree: Path) -> list[Path]:
    """Include paths for the TFLM headers of `tree` (the tree's README's list)."""
    tree = Path(tree).resolve()
    third = tree / "third_party"
    subdirs = ["gemmlowp", "flatbuffers/include", "kissfft", "ruy"]
    return [tree, third, *(third / d for d in subdirs)]


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


def _source_flags(rel: str) -> list[str]:
    opt = "-O2" if rel.startswith(_KERNEL_DIRS) else "-Os"
    if rel.endswith(".c"):
        return [*_C_FLAGS, *_ABI_FLAGS, opt, *_WARNINGS, *_C_WARNINGS]
    return [*_CXX_FLAGS, *_ABI_FLAGS, opt, *_WARNINGS, *_CXX_WARNINGS]


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

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures: list[Future[None]] = [pool.submit(run, job) for job in jobs]
        wait(futures, return_when=FIRST_EXCEPTION)
        for fut in futures:
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                raise fut.exception()  # type: ignore[misc]


def _library_key(tree: Path, cxx: str, cc: str, sources: list[str]) -> str:
    parts = [_KEY_VERSION, _compiler_id(cxx), _compiler_id(cc)]
    for rel in _tree_files(tree):
        st = (tree / rel).stat()
        parts.append(f"{rel} {st.st_size} {st.st_mtime_ns}")
    parts += [f"{rel} {' '.join(_source_flags(rel))}" for rel in sources]
    return _digest(parts)


def tflm_library(tree: Path, cache_dir: Path | None = None) -> Path:
    """Compiles the TFLM tree into a static library for the host (cached; see the module
    docstring) and returns its path. Compiles every .cc/.c of `library_sources` with
    TFLM's Makefile flags (-Os core, -O2 kernels) in os.cpu_count() parallel jobs.
    Raises TflmVmcuError for a missing or incomplete tree and for a compiler failure
    (naming the file and the compiler's first error line)."""
    tree = _check_tree(tree)
    cxx, cc = _compiler("CXX", "g++"), _compiler("CC", "gcc")
    sources = library_sources(tree)
    key = _library_key(tree, cxx, cc, sources)
    root = cache_root(cache_dir)
    lib = root / f"tflm-lib-{key}" / "libtflm.a"
    if lib.is_file():
        return lib
    with _locked(root / f"tflm-lib-{key}.lock"):
        if lib.is_file():  # another process built it while we waited
            return lib
        _build_library(tree, cxx, cc, sources, lib)
    return lib


def _build_library(tree: Path, cxx: str, cc: str, sources: list[str], lib: Path) -> None:
    obj_dir = lib.parent / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{d}" for d in tflm_include_dirs(tree)]
    jobs, objects = [], []
    for rel in sources:
        # Flat, unique member names: `ar` keeps one member per name.
        obj = obj_dir / (rel.replace("/", "__") + ".o")
        objects.append(obj)
        if not obj.is_file():  # else left by an interrupted build of the same key
            compiler = cc if rel.endswith(".c") else cxx
            cmd = [compiler, *_source_flags(rel), *includes, "-c", str(tree / rel)]
            jobs.append(_Job(rel, cmd, obj))
    _run_jobs(jobs, "TFLM library")
    ar = os.environ.get("AR", "ar")
    tmp_lib = lib.with_suffix(f".a.tmp{os.getpid()}")
    proc = subprocess.run(
        [ar, "rcs", str(tmp_lib), *map(str, objects)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise TflmVmcuError(f"TFLM library: {ar} failed: {_first_error(proc.stderr)}")
    tmp_lib.replace(lib)
    shutil.rmtree(obj_dir, ignore_errors=True)


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


def build_program(
    tree: Path,
    sources: Sequence[Path],
    output: Path,
    include_dirs: Sequence[Path] = (),
    defines: Sequence[str] = (),
    extra_libs: Sequence[Path | str] = (),
    cache_dir: Path | None = None,
) -> Path:
    """Compiles the C++17 `sources` with `tflm_flags()` and -O2 (plus -I include_dirs, -D
    defines) and links them with `extra_libs` (before TFLM) against `tflm_library(tree)`
    (-Wl,--gc-sections -lm); copies the program to `output` and returns it. Cached by the
    sources' contents, the flags and the library; rebuilt when an included header
    changes. Raises TflmVmcuError naming the file and first error on a failed compile,
    and the first error line on a failed link."""
    lib = tflm_library(tree, cache_dir)
    tree = _check_tree(tree)
    cxx = _compiler("CXX", "g++")
    srcs = [Path(s).resolve() for s in sources]
    if not srcs:
        raise TflmVmcuError("build_program: no sources given")
    for s in srcs:
        if not s.is_file():
            raise TflmVmcuError(f"build_program: source {s} does not exist")
    flags = [*tflm_flags(), _APP_OPT]
    flags += [f"-I{Path(d).resolve()}" for d in include_dirs]
    flags += [f"-I{d}" for d in tflm_include_dirs(tree)]
    flags += [f"-D{d}" for d in defines]
    libs = [str(Path(x).resolve()) if Path(x).is_file() else str(x) for x in extra_libs]
    parts = [_KEY_VERSION, "program", _compiler_id(cxx), str(lib), *flags, "|", *libs]
    parts += [f"{s} {_file_digest(s)}" for s in srcs]
    parts += [f"{x} {_file_digest(Path(x))}" for x in libs if Path(x).is_file()]
    entry = cache_root(cache_dir) / f"prog-{_digest(parts)}"
    program, manifest = entry / "program", entry / "deps.json"
    with _locked(entry.with_suffix(".lock")):
        if not (program.is_file() and _deps_unchanged(manifest)):
            try:
                _build_program(cxx, srcs, flags, libs, lib, entry)
            except TflmVmcuError:
                shutil.rmtree(entry, ignore_errors=True)  # leave no half-built entry
                raise
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    shutil.copy2(program, tmp)
    tmp.replace(output)
    return output


def _build_program(
    cxx: str, srcs: list[Path], flags: list[str], libs: list[str], lib: Path, entry: Path
) -> None:
    shutil.rmtree(entry, ignore_errors=True)
    entry.mkdir(parents=True)
    jobs = []
    for i, src in enumerate(srcs):
        obj = entry / f"{i}_{src.stem}.o"
        cmd = [cxx, *flags, "-MMD", "-MF", str(obj.with_suffix(".d")), "-c", str(src)]
        jobs.append(_Job(src.name, cmd, obj))
    _run_jobs(jobs, "build_program")
    deps: set[str] = set()
    for job in jobs:
        deps.update(_read_depfile(job.out.with_suffix(".d")))
    program = entry / "program"
    link = _Job("the program", [cxx, *(str(j.out) for j in jobs), *libs, str(lib)], program)
    link.cmd += [*_LINK_FLAGS, *_LINK_LIBS]
    proc = subprocess.run(link.cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        link.tmp.unlink(missing_ok=True)
        raise TflmVmcuError(
            f"build_program: linking failed: {_first_error(proc.stderr + proc.stdout)}"
        )
    link.tmp.replace(program)
    stamps = [_stamp(str(Path(d).resolve())) for d in sorted(deps)]
    (entry / "deps.json").write_text(json.dumps(stamps))
