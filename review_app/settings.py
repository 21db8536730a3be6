"""The review service's settings: one frozen object built by ``hallo3-gate serve`` (or a test) and handed to
``review_app.app.create_app``. Nothing here reads the environment on import."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
DEFAULT_HOST = "127.0.0.1"  # never all interfaces unless told
DEFAULT_PORT = 8000
DEFAULT_SESSION_TTL_S = 8 * 3600  # one working day


@dataclass(frozen=True)
class Settings:
    """What the app serves and where its state lives.

    ``runs_dir`` is a gate ``--out`` directory (``pending/``, ``released/``, ``quarantine/`` inside); ``db`` the
    locator of the database that holds the ledger and the review state (``gate.database.resolve``);
    ``secure_cookies`` marks the session cookie ``Secure`` (set it behind HTTPS); ``max_upload_bytes`` caps a
    detection upload; ``upload_dir`` is where an upload is held while it is examined (None: the system's temporary
    directory); ``trust_anchors_pem`` are the C2PA trust anchors detection checks against; ``session_ttl_s`` is how
    long a login lasts.
    """

    runs_dir: Path
    db: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    secure_cookies: bool = False
    max_upload_bytes: int = 200 * MIB
    upload_dir: Path | None = None
    trust_anchors_pem: bytes | None = None
    session_ttl_s: int = DEFAULT_SESSION_TTL_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs_dir", Path(self.runs_dir))
        if self.upload_dir is not None:
            object.__setattr__(self, "upload_dir", Path(self.upload_dir))
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be at least 1 (got {self.max_upload_bytes})")
        if self.session_ttl_s < 60:
            raise ValueError(f"session_ttl_s must be at least 60 seconds (got {self.session_ttl_s})")
