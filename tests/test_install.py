"""The install recipes: the core dependencies hold no CPU-only build, `make setup` / `make setup-cuda` pick the
`cpu` / `cuda` extra, and `.[cuda]` resolves, as on a CUDA Linux machine, to CUDA torch, spconv-cu*, the full
open3d and submitit (pip's dry run against the package index: nothing is downloaded beyond metadata, nothing
installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# The CPU builds: same module names as spconv-cu* / open3d, so either one in the core would be installed over
# (or under) the CUDA build on a GPU machine.
CPU_ONLY = {"spconv", "open3d-cpu"}
# A CUDA Linux machine as the dry run sees it: the GPU machines' Python and the manylinux tags of glibc 2.35
# (Ubuntu 22.04; open3d 0.20 needs it, an older glibc resolves to open3d 0.19).
TARGET_PYTHON = "3.12"
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(5, 36)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
# pip settings that reach the index; every other PIP_* variable (find-links to local wheels, constraints) is
# dropped together with the config files, so that the machine's own caps cannot change the resolution.
PIP_NETWORK_VARS = {
    "PIP_INDEX_URL",
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_TRUSTED_HOST",
    "PIP_PROXY",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
    "PIP_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}
NETWORK_ERRORS = ("NewConnectionError", "Max retries exceeded", "Could not fetch URL", "Temporary failure in name")


def _names(specs: list[str]) -> set[str]:
    """Returns the canonical distribution names of requirement strings."""
    return {canonicalize_name(Requirement(s).name) for s in specs}


def _project() -> dict:
    """Returns pyproject.toml's [project] table."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_core_dependencies_hold_no_cpu_only_build():
    core = [Requirement(s) for s in _project()["dependencies"]]
    names = {canonicalize_name(r.name) for r in core}
    assert not names & CPU_ONLY, f"CPU-only builds in the core dependencies: {sorted(names & CPU_ONLY)}"
    assert not any("+cpu" in str(r.specifier) for r in core)
    # the CUDA builds are not core either: a CPU machine must not be sent the CUDA wheels
    assert not {n for n in names if n.startswith("spconv") or n.startswith("open3d")}
    assert "torch" in names
    # submitit is imported only by --launcher slurm: an extra (slurm), in the cuda and dev ones too
    assert "submitit" not in names
    extras = _project()["optional-dependencies"]
    assert all("submitit" in _names(extras[e]) for e in ("slurm", "cuda", "dev"))


def test_cpu_and_cuda_extras_name_one_build_each():
    extras = _project()["optional-dependencies"]
    cpu, cuda = _names(extras["cpu"]), _names(extras["cuda"])
    assert cpu == CPU_ONLY
    assert not cuda & CPU_ONLY
    assert {n for n in cuda if n.startswith("spconv-cu")} and "open3d" in cuda


def _dry_run_recipe(target: str, *variables: str) -> str:
    """Returns the commands `make -n -B target` prints (nothing runs)."""
    done = subprocess.run(
        ["make", "-n", "-B", target, *variables], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def _line_index(lines: list[str], needle: str) -> int:
    """Returns the index of the first line containing needle (AssertionError when none does)."""
    hits = [i for i, line in enumerate(lines) if needle in line]
    assert hits, f"no line with {needle!r} in:\n" + "\n".join(lines)
    return hits[0]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_setup_installs_the_cpu_extra_and_setup_cuda_the_cuda_extra():
    cpu = _dry_run_recipe("setup").splitlines()
    assert _line_index(cpu, "install -q torch==2.13.0") < _line_index(cpu, "-e '.[dev,cpu]'")
    cuda = _dry_run_recipe("setup-cuda").splitlines()
    # CUDA torch first, then the project with its cuda extra; nothing of the CPU recipe
    assert _line_index(cuda, "install -q torch") < _line_index(cuda, "-e '.[dev,cuda]'")
    assert not [line for line in cuda if "torch==2.13.0" in line or ".[dev,cpu]" in line]
    index = "https://download.pytorch.org/whl/cu126"
    cuda = _dry_run_recipe("setup-cuda", f"TORCH_INDEX={index}").splitlines()
    assert f"--index-url {index}" in cuda[_line_index(cuda, "install -q torch")]


def _index_reachable(url: str) -> str | None:
    """Returns None when the package index answers, else why not (one line)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url.rstrip("/") + "/submitit/", method="HEAD"), timeout=15)
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    return None


@pytest.fixture(scope="module")
def cuda_resolution(tmp_path_factory) -> dict:
    """Returns pip's --report of `.[cuda]` resolved for CPython 3.12 on manylinux x86_64; skips offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in PIP_NETWORK_VARS}
    # No config files: the machine's /etc/xdg/pip caps torch at the releases on its disk (a constraint that would
    # make this resolution the machine's, not a CUDA user's) and adds local indexes of cp311 wheels.
    env["PIP_CONFIG_FILE"] = os.devnull
    index = env.get("PIP_INDEX_URL", "https://pypi.org/simple").split()[0]
    why = _index_reachable(index)
    if why:
        pytest.skip(f"pip cannot reach the package index, so the CUDA dependency set cannot be resolved ({why})")
    work = tmp_path_factory.mktemp("cuda-resolution")
    # a copy of what the metadata is built from, so the build leaves no egg-info in the shared working tree
    project = work / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    report = work / "report.json"
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    cmd += ["--report", str(report), "--target", str(work / "target")]  # pip < 24 wants --target with --platform
    cmd += ["--python-version", TARGET_PYTHON, "--implementation", "cp", *platforms, "--only-binary=:all:"]
    done = subprocess.run([*cmd, f"{project}[cuda]"], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        if any(s in done.stderr for s in NETWORK_ERRORS):
            pytest.skip(f"pip lost the package index mid-resolution: {done.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"`.[cuda]` does not resolve:\n{done.stderr[-3000:]}")
    assert not (work / "target").exists()  # a dry run installs nothing
    return json.loads(report.read_text())


def _resolved(report: dict) -> dict[str, dict]:
    """Returns the report's chosen distributions by canonical name -> their metadata."""
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"] for item in report["install"]}


@pytest.mark.slow
@pytest.mark.network
def test_cuda_extra_resolves_to_no_cpu_only_build(cuda_resolution):
    chosen = _resolved(cuda_resolution)
    assert not set(chosen) & CPU_ONLY, f"CPU-only builds chosen: {sorted(set(chosen) & CPU_ONLY)}"
    assert [n for n in chosen if n.startswith("spconv-cu")], "no spconv-cu* chosen"
    assert "open3d" in chosen and "submitit" in chosen and "freepoint-bench" in chosen


@pytest.mark.slow
@pytest.mark.network
def test_cuda_extra_resolves_torch_to_a_cuda_build(cuda_resolution):
    chosen = _resolved(cuda_resolution)
    torch = chosen["torch"]
    assert "cpu" not in (Version(torch["version"]).local or ""), f"torch {torch['version']} is a CPU build"
    # PyPI's Linux torch is the CUDA build: it requires NVIDIA's CUDA wheels (nvidia-*-cu12, or cuda-toolkit and
    # nvidia-*-cu13 for CUDA 13), which bring the CUDA runtime; a CPU build requires none
    cuda_deps = [r for r in torch.get("requires_dist") or [] if Requirement(r).name.startswith(("nvidia-", "cuda-"))]
    assert cuda_deps, f"torch {torch['version']} requires no NVIDIA CUDA wheels: a CPU build"
    assert [n for n in chosen if n.startswith("nvidia-cuda-runtime")], "no CUDA runtime in the resolution"
