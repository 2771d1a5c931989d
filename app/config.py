"""The studio's options: one frozen dataclass, filled from the command line by ``launch.py``."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
AUTH_ENV = "FASTINST_STUDIO_AUTH"


class ConfigError(ValueError):
    """An option combination the studio refuses, with a message meant for the person launching it."""


@dataclass(frozen=True)
class StudioConfig:
    """Everything that decides what the studio opens and how it is served.

    With neither ``images`` nor ``coco`` the studio opens the demo project (synthetic shapes and
    the shipped demo model) under ``data_dir / "demo"``.
    """

    images: Path | None = None          # folder of images to annotate
    coco: Path | None = None            # COCO JSON to import (images resolved against ``images``)
    weights: Path | None = None         # our checkpoint (.safetensors) or an official .pth/.pkl
    preset: str | None = None           # model preset, needed for official checkpoints
    model: str | None = None            # "fastinst" | "queryinst"; None: whatever --weights holds
    compare: Path | None = None         # another model's weights, registered as a version to compare with
    db: str | None = None               # SQLAlchemy URL of the annotation store
    host: str = "127.0.0.1"
    port: int = 7860
    auth: tuple[tuple[str, str], ...] = ()   # (user, password) pairs; required beyond loopback
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    data_dir: Path = Path("studio-data")
    cache_size: int = 16                # predictions kept in memory (each holds its explanation)
    strict: bool = False                # refuse a COCO file with any fault instead of repairing it

    @property
    def is_demo(self) -> bool:
        """True when no dataset was given, so the demo project is opened."""
        return self.images is None and self.coco is None

    @property
    def project_dir(self) -> Path:
        """Where this project's database, exports and fine-tuned checkpoints live."""
        return self.data_dir / ("demo" if self.is_demo else "project")

    @property
    def db_url(self) -> str:
        """The store URL: ``--db`` or a SQLite file in the project folder."""
        return self.db or f"sqlite:///{(self.project_dir / 'studio.db').resolve()}"

    def validate(self) -> None:
        """Raise ConfigError for combinations that cannot work or would be unsafe."""
        if self.images is not None and not self.images.is_dir():
            raise ConfigError(f"--images {self.images}: not a folder")
        if self.coco is not None and not self.coco.is_file():
            raise ConfigError(f"--coco {self.coco}: no such file")
        if self.weights is not None and not self.weights.is_file():
            raise ConfigError(f"--weights {self.weights}: no such file")
        if self.compare is not None and not self.compare.is_file():
            raise ConfigError(f"--compare {self.compare}: no such file")
        if self.model not in (None, "fastinst") and self.weights is None:
            raise ConfigError(f"--model {self.model} needs --weights (the shipped demo model is a FastInst model)")
        if not (0 < self.port < 65536):
            raise ConfigError(f"--port {self.port}: not a TCP port")
        if not is_loopback(self.host) and not self.auth:
            raise ConfigError(
                f"--host {self.host} exposes the studio beyond this machine: give --auth USER:PASSWORD "
                f"(or --auth @FILE with one USER:PASSWORD per line, or set {AUTH_ENV})")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(spec: str | None) -> tuple[tuple[str, str], ...]:
    """``USER:PASSWORD``, ``@FILE`` (one pair per line) or None (then the environment variable)."""
    spec = spec if spec is not None else os.environ.get(AUTH_ENV)
    if not spec:
        return ()
    lines = Path(spec[1:]).read_text().splitlines() if spec.startswith("@") else [spec]
    pairs = []
    for line in (ln.strip() for ln in lines):
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigError("--auth expects USER:PASSWORD (both non-empty)")
        pairs.append((user, password))
    return tuple(pairs)
