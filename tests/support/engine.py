"""A real Docker engine for tests: find it, run the CLI, and build the stand-in base images.

No image registry is reachable where CI runs, so `build_standins()` builds the base images
that the Dockerfile and compose.yaml name, under exactly those references, from Debian
packages (tests/images/README.md says what each copies and what differs). It is called only
when KIT_STANDIN_IMAGES=1 (.ci/run sets it); elsewhere the engine pulls the real images.
Each stand-in is labelled with a hash of what it is built from and rebuilt only when that
changes, so a machine that kept its engine's images builds nothing.

    python -m tests.support.engine     # build (or confirm) every stand-in, printing what it did
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import programs
from harness.processes import ROOT

IMAGES = ROOT / "tests" / "images"
LABEL = "org.example.standin.hash"

# The Debian root filesystem every stand-in starts from (what debian:bookworm-slim is to the
# official images). The host's CA store goes into it, and only into it: builds on this
# network must trust the TLS-inspecting proxy the host trusts, and the kit's Dockerfile must
# not know about that.
BASE = "standin/debian:bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))

# Reference -> directory under tests/images/, in build order (uv before python is arbitrary).
STANDINS = {
    "ghcr.io/astral-sh/uv:0.13.8": "uv",
    "python:3.11.14-slim-bookworm": "python",
    "postgres:17.6-bookworm": "postgres",
    "nginxinc/nginx-unprivileged:1.28.0-alpine": "nginx",
}


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; on failure with `check`, raise with its output in the message."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def engine_unavailable_reason() -> str | None:
    """Say what to install or start when no usable engine, Compose or buildx is here."""
    if missing := programs.missing_reason("docker"):
        return missing
    try:
        if docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20).returncode:
            engine = programs.program("dockerd")
            return f"the Docker engine is not running or not reachable: start dockerd ({engine.install_hint})"
        if docker("compose", "version", check=False, timeout=20).returncode:
            return f"docker compose is missing: {programs.program('docker-compose').install_hint}"
        if docker("buildx", "version", check=False, timeout=20).returncode:
            return f"docker buildx is missing: {programs.program('docker-buildx').install_hint}"
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer within 20 s"
    return None


def _digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(hashlib.sha256(part).digest())
    return sha.hexdigest()[:16]


def _tree_digest(directory: Path, base_hash: str) -> str:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return _digest(
        base_hash.encode(),
        *(f"{p.relative_to(directory)}:{p.stat().st_mode & 0o111}".encode() for p in files),
        *(p.read_bytes() for p in files),
    )


def _current_hash(ref: str) -> str | None:
    result = docker(
        "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', ref, check=False
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def _run(*cmd: str, timeout: float) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)


def _build_base(wanted: str) -> None:
    """debootstrap a minimal Debian with the host's CA store and import it as BASE."""
    if missing := programs.missing_reason("debootstrap"):
        raise RuntimeError(f"building the stand-in base needs debootstrap: {missing}")
    with tempfile.TemporaryDirectory(prefix="standin-rootfs-") as tmp:
        rootfs, archive = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        _run("debootstrap", "--variant=minbase", "--include=ca-certificates", SUITE,
             str(rootfs), MIRROR, timeout=900)  # fmt: skip
        local_ca = rootfs / "usr/local/share/ca-certificates"
        local_ca.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA_BUNDLE, local_ca / "host-store.crt")
        _run("chroot", str(rootfs), "update-ca-certificates", timeout=120)
        # Like the official Debian images: no downloaded packages, no package lists.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        _run("tar", "-C", str(rootfs), "-cf", str(archive), ".", timeout=300)
        changes = [
            f"LABEL {LABEL}={wanted}",
            # uv and pip read this; Debian's own tools use the same bundle by default.
            "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            'CMD ["bash"]',
        ]
        docker("import", *(f"--change={change}" for change in changes), str(archive), BASE,
               timeout=300)  # fmt: skip


def build_standins(log: bool = False) -> None:
    """Build every stand-in whose inputs changed since it was last built; keep the rest."""
    base_hash = _digest(
        f"{SUITE} {MIRROR} minbase ca-certificates SSL_CERT_FILE".encode(),
        HOST_CA_BUNDLE.read_bytes(),
    )
    if _current_hash(BASE) != base_hash:
        if log:
            print(f"building {BASE} with debootstrap", flush=True)
        _build_base(base_hash)
    elif log:
        print(f"{BASE} is up to date", flush=True)
    for ref, name in STANDINS.items():
        wanted = _tree_digest(IMAGES / name, base_hash)
        if _current_hash(ref) == wanted:
            if log:
                print(f"{ref} is up to date", flush=True)
            continue
        if log:
            print(f"building {ref} from tests/images/{name}", flush=True)
        docker(
            "build",
            "--build-arg",
            f"BASE={BASE}",
            "--label",
            f"{LABEL}={wanted}",
            "--tag",
            ref,
            str(IMAGES / name),
            timeout=900,
        )


if __name__ == "__main__":
    reason = engine_unavailable_reason()
    if reason:
        sys.exit(f"tests.support.engine: {reason}")
    build_standins(log=True)
