"""Every shell block in README.md works after `make serve` alone.

Each ```sh (or ```bash, ```shell) block of README.md runs with bash, in a fresh directory,
against a live server on 127.0.0.1 that serves the default models: the README's
`127.0.0.1:8000` becomes that server's address. A block that needs more than `make serve`
(`make train`, a trained model, Docker, a cluster) says so on the line above its fence:

    <!-- skipped by tests/test_readme.py: needs `make train` -->

and is not run. A run block must exit 0; every curl call in it must answer 200 with a body of
its content type (JSON that parses, CSV with a header, a Parquet file, ...), and every other file
it writes must be what its suffix says. The blocks' `.venv/bin/python` is this interpreter with
the modules that only the other extras install (torch, scikit-learn, pandas, ...) made absent,
as in the venv `make serve` creates.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import DEFAULT_MODELS_DIR, ROOT, LiveServer

SKIP_MARK = re.compile(r"<!-- skipped by tests/test_readme\.py: (?P<reason>.+?) -->")
FENCE = re.compile(r"```(?P<lang>\S*)")
SHELL = {"sh", "bash", "shell"}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    text: str
    skip_reason: str | None


def readme_shell_blocks() -> list[Block]:
    lines = (ROOT / "README.md").read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.fullmatch(lines[i].strip())
        if opening is None:
            i += 1
            continue
        end = lines.index("```", i + 1)
        if opening["lang"] in SHELL:
            mark = SKIP_MARK.fullmatch(lines[i - 1].strip()) if i > 0 else None
            blocks.append(Block(i + 1, "\n".join(lines[i + 1 : end]) + "\n", mark["reason"] if mark else None))
        i = end + 1
    return blocks


BLOCKS = readme_shell_blocks()
RUN_BLOCKS = [block for block in BLOCKS if block.skip_reason is None]


# ---- the venv `make serve` creates ------------------------------------------------------------


def serve_distributions() -> set[str]:
    """The distributions `make serve` installs: genserve's dependencies and its serve extra, with
    theirs (markers and extras followed as pip would), plus the venv's own pip and setuptools."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["serve"]]]
    names = {"genserve", "pip", "setuptools"}
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:  # not for this platform
            continue
        for line in requires:
            sub = Requirement(line)
            extras = requirement.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(sub)
    return names


def modules_beyond_serve() -> list[str]:
    """Top-level modules of this venv that only other extras (torch, dev) install."""
    served = serve_distributions()
    return sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if not {canonicalize_name(dist) for dist in dists} & served
    )


SITECUSTOMIZE = """\
import importlib.abc
import sys

ABSENT = frozenset({absent!r})


class NotInstalledByMakeServe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (`make serve` does not install it)", name=name)
        return None


sys.meta_path.insert(0, NotInstalledByMakeServe())
"""

# Each curl call's status, content type and -o file go to $CALLS; what the block sees is unchanged.
PRELUDE = """\
set -euo pipefail
curl() {
  local call
  call=$(mktemp -d "$CALLS/XXXXXX")
  printf '%s\\n' "$*" > "$call/args"
  command curl -w '%{stderr}%{http_code}\\n%{content_type}\\n%{filename_effective}\\n' "$@" 2> "$call/meta" \\
    | tee "$call/body"
}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    live = LiveServer({})
    yield live
    live.stop()


@pytest.fixture(scope="module")
def serve_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `python` like `.venv/bin/python` after `make serve`: genserve importable, other extras absent."""
    root = tmp_path_factory.mktemp("serve-venv")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE.format(absent=modules_beyond_serve()))
    python = root / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{root / "site"}:{ROOT}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return root


# ---- what a block's outputs must be ------------------------------------------------------------


def check_csv(body: bytes) -> None:
    header, *rows = csv.reader(io.StringIO(body.decode()))
    assert rows, "a CSV with no rows"
    assert all(len(row) == len(header) for row in rows), "CSV rows of another length than the header"


def check_ndjson(body: bytes) -> None:
    lines = body.decode().splitlines()
    assert lines, "no NDJSON rows"
    for line in lines:
        json.loads(line)


def check_parquet(body: bytes) -> None:
    assert pq.read_metadata(io.BytesIO(body)).num_rows > 0


def check_npy(body: bytes) -> None:
    assert np.load(io.BytesIO(body)).size > 0


def check_metrics(body: bytes) -> None:
    assert body.strip(), "an empty answer"


CHECKS: dict[str, Callable[[bytes], None]] = {
    "application/json": lambda body: json.loads(body),
    "application/x-ndjson": check_ndjson,
    "text/csv": check_csv,
    "text/plain": check_metrics,
    "application/vnd.apache.parquet": check_parquet,
    "application/x-npy": check_npy,
    "image/png": lambda body: assert_starts(body, b"\x89PNG\r\n\x1a\n"),
    "image/svg+xml": lambda body: assert_starts(body, b"<svg"),
}
SUFFIXES = {
    ".json": "application/json",
    ".ndjson": "application/x-ndjson",
    ".csv": "text/csv",
    ".parquet": "application/vnd.apache.parquet",
    ".npy": "application/x-npy",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


def assert_starts(body: bytes, magic: bytes) -> None:
    assert body.startswith(magic), f"does not start with {magic!r}: {body[:40]!r}"


def check_body(kind: str, body: bytes, what: str) -> None:
    assert kind in CHECKS, f"{what}: no check for {kind!r}; add one to tests/test_readme.py"
    try:
        CHECKS[kind](body)
    except Exception as e:
        raise AssertionError(f"{what}: not {kind}: {e}\n{body[:500]!r}") from e


# ---- the tests ---------------------------------------------------------------------------------


def test_every_skip_mark_stands_above_a_shell_block() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if SKIP_MARK.search(line):
            fence = FENCE.fullmatch(lines[number].strip()) if number < len(lines) else None
            assert fence and fence["lang"] in SHELL, f"README.md:{number}: a skip mark not right above a shell block"


def test_the_api_examples_are_among_the_blocks_run() -> None:
    run = "".join(block.text for block in RUN_BLOCKS)
    for endpoint in ("/generate", "/quantiles", "/anomaly", "/v2/models/"):
        assert f"127.0.0.1:8000{endpoint}" in run


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[f"README.md:{block.line}" for block in RUN_BLOCKS])
def test_readme_block_works_after_make_serve(
    block: Block, server: LiveServer, serve_python: Path, tmp_path: Path
) -> None:
    for name in ("sklearn", "torch", "pandas", "palmerpenguins"):
        assert not re.search(rf"\b{name}\b", block.text), f"README.md:{block.line} needs {name}: not in `make serve`"
    script = block.text.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}").replace(
        "localhost:8000", f"127.0.0.1:{server.port}"
    )
    assert ":8000" not in script, f"README.md:{block.line} talks to port 8000 on another host"
    work = tmp_path / "checkout"
    calls = tmp_path / "calls"
    work.mkdir()
    calls.mkdir()
    (work / ".venv").symlink_to(serve_python)
    (work / "models").symlink_to(DEFAULT_MODELS_DIR)  # for offline commands: the models the server serves
    result = subprocess.run(
        ["bash", "-c", PRELUDE + script],
        cwd=work,
        env={**os.environ, "CALLS": str(calls)},
        capture_output=True,
        timeout=300,
    )
    code, out, err = result.returncode, result.stdout[-2000:], result.stderr[-3000:]
    assert code == 0, f"README.md:{block.line} exited {code}:\n{script}\nstdout:\n{out!r}\nstderr:\n{err!r}"

    checked: set[Path] = set()
    for call in sorted(calls.iterdir(), key=lambda d: d.stat().st_mtime_ns):
        args = (call / "args").read_text().strip()
        status, content_type, filename, *errors = (call / "meta").read_text().split("\n")
        what = f"README.md:{block.line}: curl {args}"
        body_file = work / filename if filename else call / "body"
        body = body_file.read_bytes()
        assert status == "200", f"{what}: answered {status} {errors}\n{body[:500]!r}"
        check_body(content_type.partition(";")[0].strip(), body, what)
        checked.add(body_file.resolve())
    for path in work.iterdir():
        if path.name not in (".venv", "models") and path.resolve() not in checked:
            assert path.suffix in SUFFIXES, f"README.md:{block.line} wrote {path.name}, of no known kind"
            check_body(SUFFIXES[path.suffix], path.read_bytes(), f"README.md:{block.line}: {path.name}")
            checked.add(path)
    assert checked, f"README.md:{block.line} called nothing and wrote nothing"
