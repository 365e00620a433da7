"""Generate the Python code of the llmgw protobuf contracts.

Sources are ``protos/llmgw/**/*.proto``; the output is the package ``llmgw/``
at the repository root (``from llmgw.inference.v1 import inference_pb2``):

* ``*_pb2.py`` messages (protoc's Python generator, bundled in grpcio-tools),
* ``*_pb2_grpc.py`` gRPC stubs and servicers (grpcio-tools),
* ``*_pb2.pyi`` / ``*_pb2_grpc.pyi`` type stubs (mypy-protobuf plugins),
* an ``__init__.py`` in every package and a ``py.typed`` marker.

``llmgw/`` is owned by this script: files in it that generation does not
produce are removed. Imports of ``google/rpc/*.proto`` come from the
installed googleapis-common-protos wheel and ``google/protobuf/*.proto``
from grpcio-tools; the former are also staged into ``.build/proto-deps`` for
buf (see buf.yaml). Nothing of them is committed.

Usage::

    python tools/gen_protos.py                  # regenerate llmgw/
    python tools/gen_protos.py --check          # exit 1 if llmgw/ drifted
    python tools/gen_protos.py --stage-deps     # only stage .build/proto-deps
    python tools/gen_protos.py --descriptor-set OUT.binpb
                                                # FileDescriptorSet with source info

The output depends only on the .proto files and the versions of
grpcio-tools and mypy-protobuf.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
DEPS_DIR = REPO_ROOT / ".build" / "proto-deps"
PACKAGE = "llmgw"
OUTPUT_DIR = REPO_ROOT / PACKAGE

_PLUGINS = ("protoc-gen-mypy", "protoc-gen-mypy_grpc")
_IGNORED_PARTS = frozenset({"__pycache__"})


class GenerationError(RuntimeError):
    """A tool needed for generation is missing or protoc failed."""


@dataclass(frozen=True)
class Drift:
    """Differences between a generated tree and the committed one (relative paths)."""

    missing: tuple[str, ...]
    extra: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def clean(self) -> bool:
        """True when the trees are identical."""
        return not (self.missing or self.extra or self.changed)


def _package_dirs(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise GenerationError(f"python package {name!r} is not installed")
    return [Path(location) for location in spec.submodule_search_locations]


def googleapis_rpc_dir() -> Path:
    """Directory holding google/rpc/*.proto of the googleapis-common-protos wheel."""
    for directory in _package_dirs("google.rpc"):
        if (directory / "status.proto").is_file():
            return directory
    raise GenerationError("google/rpc/status.proto not found: install googleapis-common-protos")


def well_known_types_root() -> Path:
    """Include root of google/protobuf/*.proto shipped with grpcio-tools."""
    for directory in _package_dirs("grpc_tools"):
        root = directory / "_proto"
        if (root / "google" / "protobuf" / "timestamp.proto").is_file():
            return root
    raise GenerationError("grpc_tools/_proto not found: install grpcio-tools")


def stage_deps(dest: Path = DEPS_DIR) -> Path:
    """Copy google/rpc/*.proto into ``dest``/google/rpc, replacing what was there."""
    target = dest / "google" / "rpc"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for source in sorted(googleapis_rpc_dir().glob("*.proto")):
        shutil.copyfile(source, target / source.name)
    return dest


def proto_files() -> list[Path]:
    """All contract files, sorted."""
    files = sorted((PROTO_ROOT / PACKAGE).rglob("*.proto"))
    if not files:
        raise GenerationError(f"no .proto files under {PROTO_ROOT / PACKAGE}")
    return files


def _plugin_path(name: str) -> Path:
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return candidate
    found = shutil.which(name)
    if found is None:
        raise GenerationError(f"{name} not found: install mypy-protobuf")
    return Path(found)


def _include_args(deps: Path) -> list[str]:
    return [f"-I{PROTO_ROOT}", f"-I{deps}", f"-I{well_known_types_root()}"]


def _run_protoc(args: Sequence[str]) -> None:
    command = [sys.executable, "-m", "grpc_tools.protoc", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerationError(f"protoc failed ({result.returncode}):\n{result.stderr}")


def _write_package_files(out_root: Path) -> None:
    package_root = out_root / PACKAGE
    directories = sorted({path.parent for path in package_root.rglob("*_pb2.py")})
    packages: set[Path] = set()
    for directory in directories:
        current = directory
        while current != out_root:
            packages.add(current)
            current = current.parent
    for package in sorted(packages):
        dotted = ".".join(package.relative_to(out_root).parts)
        docstring = f'"""Generated code of {dotted}; do not edit (tools/gen_protos.py)."""\n'
        (package / "__init__.py").write_text(docstring, encoding="utf-8")
    (package_root / "py.typed").write_text("", encoding="utf-8")


def generate(out_root: Path, deps: Path) -> None:
    """Generate the ``llmgw`` package into ``out_root`` (which must be empty)."""
    plugins = [f"--plugin={name}={_plugin_path(name)}" for name in _PLUGINS]
    outputs = [
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
    ]
    files = [str(path) for path in proto_files()]
    _run_protoc([*_include_args(deps), *plugins, *outputs, *files])
    _write_package_files(out_root)


def write_descriptor_set(out_file: Path, deps: Path) -> None:
    """Write a FileDescriptorSet of the contracts and their imports, with source info."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    files = [str(path) for path in proto_files()]
    args = [
        *_include_args(deps),
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out_file}",
        *files,
    ]
    _run_protoc(args)


def _tree(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file()
        and not _IGNORED_PARTS.intersection(path.relative_to(root).parts)
        and path.suffix != ".pyc"
    }


def compare_trees(expected: Path, actual: Path) -> Drift:
    """Compare the files of two directory trees byte by byte."""
    wanted, present = _tree(expected), _tree(actual)
    changed = sorted(
        name
        for name in wanted & present
        if not filecmp.cmp(expected / name, actual / name, shallow=False)
    )
    return Drift(
        missing=tuple(sorted(wanted - present)),
        extra=tuple(sorted(present - wanted)),
        changed=tuple(changed),
    )


def sync_tree(source: Path, dest: Path) -> Drift:
    """Make ``dest`` identical to ``source``, touching only files that differ."""
    drift = compare_trees(source, dest)
    for name in drift.extra:
        (dest / name).unlink()
    for name in (*drift.missing, *drift.changed):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)
    for directory in sorted(dest.rglob("*"), reverse=True):
        if directory.is_dir() and directory.name not in _IGNORED_PARTS:
            remaining = [p for p in directory.iterdir() if p.name not in _IGNORED_PARTS]
            if not remaining:
                shutil.rmtree(directory)
    return drift


def _generate_to_temp(work: Path) -> Path:
    deps = stage_deps(DEPS_DIR)
    out_root = work / "out"
    out_root.mkdir()
    generate(out_root, deps)
    return out_root / PACKAGE


def _report(drift: Drift, labels: tuple[str, str, str]) -> None:
    for label, names in zip(labels, (drift.missing, drift.extra, drift.changed), strict=True):
        for name in names:
            print(f"{label}: {PACKAGE}/{name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary directory and fail if llmgw/ differs",
    )
    mode.add_argument(
        "--stage-deps",
        action="store_true",
        help="only stage google/rpc protos into .build/proto-deps",
    )
    mode.add_argument(
        "--descriptor-set",
        type=Path,
        metavar="OUT",
        help="write a FileDescriptorSet (imports and source info included) to OUT",
    )
    args = parser.parse_args(argv)
    try:
        if args.stage_deps:
            print(stage_deps(DEPS_DIR))
            return 0
        if args.descriptor_set is not None:
            write_descriptor_set(args.descriptor_set.resolve(), stage_deps(DEPS_DIR))
            return 0
        with tempfile.TemporaryDirectory(prefix="llmgw-gen-") as work:
            generated = _generate_to_temp(Path(work))
            if args.check:
                drift = compare_trees(generated, OUTPUT_DIR)
                if drift.clean:
                    return 0
                _report(drift, ("missing", "extra", "changed"))
                print("generated code is out of date: run python tools/gen_protos.py")
                return 1
            _report(sync_tree(generated, OUTPUT_DIR), ("created", "removed", "updated"))
            return 0
    except GenerationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
