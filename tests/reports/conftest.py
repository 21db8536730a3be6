"""A factory of realistic audit records: a released run, a failed one, and one that could not measure."""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest

from reports.environment import collect_environment
from reports.keyframes import keyframe_indices, make_keyframes
from reports.schema import GateRecord

FPS = 25.0
N_FRAMES = 125  # 5 s at 25 fps


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_frames(n: int, seed: int, size: int = 256, only: Iterable[int] | None = None) -> np.ndarray:
    """A moving face-like blob on a gradient: enough structure for thumbnails that are not blank.

    ``only`` draws just those frames (the others stay black) — cheap when only keyframes are needed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = np.zeros((n, size, size, 3), np.uint8)
    for t in range(n) if only is None else only:
        cx, cy = 0.5 + 0.1 * math.sin(t / 9), 0.45 + 0.05 * math.cos(t / 7)
        face = ((xx - cx) / 0.22) ** 2 + ((yy - cy) / 0.3) ** 2 < 1
        mouth = (np.abs(xx - cx) < 0.08) & (np.abs(yy - cy - 0.15) < 0.01 + 0.03 * abs(math.sin(t / 2)))
        img = np.stack([40 + 120 * yy, 60 + 80 * xx, 150 - 60 * yy], axis=-1)
        img[face] = (224, 180, 150)
        img[mouth] = (120, 30, 40)
        frames[t] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return frames


@functools.cache
def _environment() -> dict:
    return collect_environment().model_dump()


@functools.cache
def _keyframes_cached(seed: int) -> tuple[dict, ...]:
    frames = synthetic_frames(N_FRAMES, seed, size=128, only=keyframe_indices(N_FRAMES, 4))
    return tuple(k.model_dump() for k in make_keyframes(frames, FPS, count=4, max_side=96))


def _keyframes(seed: int) -> list[dict]:
    return [dict(k) for k in _keyframes_cached(seed)]


SIGNED = "C2PA manifest urn:c2pa:5f1e: Valid, signed by hallo3-gate DEVELOPMENT signer"


def _row(rid: str, status: str, evidence: list[str], reason: str | None = None) -> dict:
    from gate.compliance import requirement

    req = requirement(rid)
    return {
        "id": rid,
        "requirement": req.requirement,
        "source": req.source,
        "status": status,
        "evidence": evidence,
        "reason": reason,
    }


def compliance_rows(payload: str = "a5c30000") -> list[dict]:
    """The matrix of a released output under the default offline policy (no TSA, the in-house watermark), written
    out as the gate fills it — every status appears, and hostile-looking text where a value could carry it."""
    return [
        _row(
            "eu-ai-act-50-2", "met", [SIGNED, "c2pa.actions: c2pa.created, digitalSourceType trainedAlgorithmicMedia"]
        ),
        _row("eu-code-1-1-2-watermark", "met", [f"watermark org.hallo3-gate.rivagan-vote.v2: payload {payload}"]),
        _row("rfc3161-timestamp", "not_met", [SIGNED], "no time-stamping authority configured ($HALLO3_GATE_TSA_URL)"),
        _row("ca-sb942-latent", "met", [SIGNED, "org.hallo3-gate.disclosure: provider Example <Studios> & Co"]),
        _row(
            "ca-sb942-detection",
            "met",
            ["answer rests on: c2pa_manifest, watermark, ledger"],
            "public access: operator",
        ),
        _row("eu-ai-act-50-4-label", "met", ["visible label 'AI-generated' at top-right: 75 of 75 frames"]),
        _row("cn-gb45438-explicit", "met", ["visible label 'AI-generated' at top-right: 75 of 75 frames"]),
        _row(
            "cn-gb45438-implicit", "met", ["container metadata AIGC: Label=1, ContentProducer=Example <Studios> & Co"]
        ),
        _row("c2pa-watermark-action", "met", ["c2pa.actions: c2pa.watermarked.bound", "scope.timespan 0-5000 ms"]),
        _row(
            "c2pa-soft-binding",
            "not_met",
            ["c2pa.soft-binding alg org.hallo3-gate.rivagan-vote.v2"],
            "not on the C2PA soft-binding algorithm list",
        ),
        _row("c2pa-manifest-recovery", "met", [f"watermark payload {payload} -> ledger row 7"]),
        _row("cawg-identity", "not_applicable", [], "signed by a KMS signer: no CAWG identity <b>possible</b>"),
        _row("cawg-training-mining", "met", ["cawg.training-mining: 4 entries, all notAllowed"]),
        _row("cn-art9-retention", "not_checked", ["retention 365 days (default)"], "no ledger to verify"),
        _row("consent", "met", ["consent cns-0123456789ab: matched, similarity 0.830 (threshold 0.6, facenet)"]),
    ]


def compliance_parts() -> dict:
    """disclosure, consent and label of a 1.3 record (consent by id only)."""
    return {
        "disclosure": {
            "provider": "Example <Studios> & Co",
            "system": "hallo3 (Hallo3 official) / hallo3-gate",
            "version": "model 3f2a9c01b4de; hallo3-gate 0.9.0",
            "created": "2026-11-23T23:19:00Z",
            "id": "urn:uuid:0b0e3c52-5d0c-4c1e-9d39-7d0f3a2b1c11",
        },
        "consent": {
            "consent_id": "cns-0123456789ab",
            "status": "matched",
            "similarity": 0.83,
            "threshold": 0.6,
            "backend": "facenet",
            "output_similarity": 0.79,
        },
        "label": {
            "text": "AI-generated",
            "position": "top-right",
            "start_seconds": 3.0,
            "persistent": True,
            "size": 0.06,
            "font": "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
            "font_sha256": _sha("font"),
            "frames_checked": 125,
            "frames_labelled": 125,
            "seconds_required": 3.0,
            "seconds_labelled": 5.0,
            "ok": True,
        },
    }


def build_record_dict(
    variant: str = "released",
    *,
    seed: int = 0,
    model: str = "hallo3",
    shift: float = 0.0,
    compliance: bool = False,
) -> dict:
    """A full record as the gate would fill it. ``variant``: released | failed | unmeasured.

    ``shift`` moves Sync-C and identity up (to fake a better model in comparison tests); ``seed`` varies the noise.
    ``compliance``: a record of the current schema (1.3) with its compliance matrix, disclosure, consent and label;
    else a 1.0 record as before.
    """
    data = _build_record_dict(variant, seed=seed, model=model, shift=shift)
    if compliance:
        from reports.schema import SCHEMA_VERSION

        data["schema_version"] = SCHEMA_VERSION
        for w in data["weights"]:
            w.update(pinned_sha256=w["sha256"], status="verified", verified=True)
        data["compliance"] = compliance_rows(data["watermark"]["payload"])
        data.update(compliance_parts())
    return data


def _build_record_dict(variant: str, *, seed: int, model: str, shift: float) -> dict:
    rng = np.random.default_rng(seed)
    run_id = f"20261123T231900Z-{model}-{seed:04d}-{variant}"
    created = datetime(2026, 11, 23, 23, 19, tzinfo=UTC) + timedelta(minutes=seed)
    payload = f"{(0xA5C3_0000 + seed) & 0xFFFFFFFF:08x}"

    identity_series = np.clip(0.78 + shift / 10 + rng.normal(0, 0.03, N_FRAMES), -1, 1).tolist()
    for i in range(40, 44):  # a few frames where no face was found
        identity_series[i] = None
    sync_conf = np.clip(6.5 + shift + rng.normal(0, 1.2, N_FRAMES - 4), 0, None).tolist()
    bit_acc = np.clip(1.0 - np.abs(rng.normal(0, 0.02, N_FRAMES // 4)), 0, 1).tolist()

    sync_c = float(np.mean(sync_conf)) if variant != "failed" else 1.7 + 0.2 * rng.random()
    identity = [v for v in identity_series if v is not None]
    measurements: list[dict[str, Any]] = [
        {
            "name": "sync_c",
            "value": sync_c,
            "protocol": "SyncNet v2 (syncnet_v2.model), S3FD crops 224², 5-frame windows, offsets ±15, LSE-C",
            "higher_is_better": True,
            "unit": "",
            "details": {"offset_frames": 1, "windows": N_FRAMES - 4, "track": 0},
            "series": {"label": "sync confidence per window", "values": sync_conf, "start_frame": 2, "fps": FPS},
        },
        {
            "name": "sync_d",
            "value": 8.1 - shift / 2 + 0.3 * rng.random(),
            "protocol": "SyncNet v2, min distance over offsets ±15, LSE-D",
            "higher_is_better": False,
            "unit": "",
        },
        {
            "name": "identity_mean",
            "value": float(np.mean(identity)),
            "protocol": "ArcFace cosine to reference portrait, per frame, frames without a face skipped",
            "higher_is_better": True,
            "unit": "cosine",
            "details": {"frames_with_face": len(identity), "frames": N_FRAMES},
            "series": {"label": "cosine similarity to reference", "values": identity_series, "fps": FPS},
        },
        {
            "name": "identity_min",
            "value": float(np.min(identity)),
            "protocol": "ArcFace cosine, minimum over frames with a face",
            "higher_is_better": True,
            "unit": "cosine",
        },
        {
            "name": "fvd",
            "value": 412.0 - 40 * shift,
            "protocol": "I3D Kinetics-400 (TF-Hub), StyleGAN-V fvd2048_16f, reference set 'hdtf-val-64'",
            "higher_is_better": False,
            "scope": "set",
            "details": {"n_real": 64, "n_fake": 16},
        },
        {"name": "fps", "value": FPS, "protocol": "container stream rate", "higher_is_better": None, "unit": "fps"},
    ]
    if variant == "unmeasured":
        measurements[2] = {
            "name": "identity_mean",
            "value": None,
            "protocol": "ArcFace cosine to reference portrait",
            "higher_is_better": True,
            "unit": "cosine",
            "reason": "not measured: w600k_r50.onnx missing — run `hallo3-gate weights fetch arcface` <now>",
        }
        measurements[3] = {**measurements[2], "name": "identity_min"}

    def check(name, metric, op, threshold, required=True) -> dict[str, Any]:
        m = next(x for x in measurements if x["name"] == metric)
        value = m["value"]
        if value is None:
            return {
                "name": name,
                "metric": metric,
                "op": op,
                "threshold": threshold,
                "value": None,
                "outcome": "not_measured",
                "required": required,
                "message": m["reason"],
            }
        ok = {">=": value >= threshold, "<=": value <= threshold, "==": value == threshold}[op]
        return {
            "name": name,
            "metric": metric,
            "op": op,
            "threshold": threshold,
            "value": value,
            "outcome": "pass" if ok else "fail",
            "required": required,
            "message": f"{metric} = {value:.3f} {'meets' if ok else 'breaks'} {op} {threshold}",
        }

    checks = [
        check("sync_c_min", "sync_c", ">=", 3.0),
        check("sync_d_max", "sync_d", "<=", 9.5),
        check("identity_mean_min", "identity_mean", ">=", 0.6),
        check("identity_min_min", "identity_min", ">=", 0.3, required=False),
        check("fps_exact", "fps", "==", 25.0),
    ]
    reasons = [f"{c['name']}: {c['message']}" for c in checks if c["required"] and c["outcome"] != "pass"]
    decision = "released" if not reasons else "quarantined"
    exit_code = 0 if decision == "released" else (3 if any(c["outcome"] == "not_measured" for c in checks) else 1)
    final_dir = "released" if decision == "released" else "quarantine"

    keyframes = _keyframes(seed)
    policy_content = {
        "name": "default",
        "checks": {c["name"]: {"metric": c["metric"], "op": c["op"], "threshold": c["threshold"]} for c in checks},
    }
    return {
        "schema_version": "1.0",
        "run_id": run_id,
        "created_at": created.isoformat(),
        "mode": "generate",
        "decision": decision,
        "exit_code": exit_code,
        "reasons": reasons,
        "inputs": {
            "portrait": {
                "path": "inputs/hallo3_0001.jpg",
                "sha256": _sha("portrait"),
                "size": 61234,
                "media_type": "image/jpeg",
            },
            "audio": {
                "path": "inputs/hallo3_0001.wav",
                "sha256": _sha("audio"),
                "size": 1728044,
                "media_type": "audio/wav",
            },
            "prompt": "A little girl talking around a campfire <b>&amp;</b>",
        },
        "output": {
            "path": f"out/{final_dir}/{run_id}.mp4",
            "staging_path": f"out/staging/{run_id}.mp4",
            "sha256": _sha(run_id),
            "size": 2_345_678,
            "media_type": "video/mp4",
            "width": 512,
            "height": 512,
            "fps": FPS,
            "frames": N_FRAMES,
            "duration_s": N_FRAMES / FPS,
        },
        "generator": {
            "backend": model,
            "model_name": f"{model}-tiny",
            "config": {"steps": 20, "cfg_audio": 3.5, "cfg_text": 3.5, "resolution": [512, 512], "fps": FPS},
            "seed": 1234 + seed,
            "model_sha256": _sha(model),
            "weight_hashes": {"transformer": _sha("transformer"), "vae": _sha("vae")},
        },
        "weights": [
            {
                "name": "syncnet_v2",
                "path": "~/.cache/hallo3-gate/syncnet_v2.model",
                "sha256": "961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442",
                "size": 54_573_114,
                "licence": "MIT",
                "source": "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
            },
        ],
        "measurements": measurements,
        "checks": checks,
        "watermark": {
            "method": "rivaGan-32 (invisible-watermark 0.2.0)",
            "payload": payload,
            "payload_bits": 32,
            "decoded_payload": payload,
            "match": True,
            "confidence": 0.97,
            "bit_accuracy": 1.0,
            "bit_accuracy_per_frame": {"label": "bit accuracy", "values": bit_acc, "stride": 4, "fps": FPS},
            "frames_embedded": N_FRAMES,
            "frames_decoded": len(bit_acc),
        },
        "provenance": {
            "manifest_state": "Trusted",
            "failures": [],
            "manifest_label": f"urn:c2pa:{run_id}",
            "claim_generator": "hallo3-gate/0.1.0 c2pa-rs/0.91.3",
            "signer_subject": "CN=hallo3-gate dev signer,O=hallo3-gate",
            "signer_issuer": "CN=hallo3-gate dev intermediate,O=hallo3-gate",
            "signed_at": created.isoformat(),
            "signing_alg": "ES256",
            "assertions": ["c2pa.actions.v2", "c2pa.hash.bmff.v3", "c2pa.soft-binding", "org.hallo3-gate.results"],
            "ingredients": ["hallo3_0001.jpg", "hallo3_0001.wav"],
            "soft_binding_alg": "org.hallo3-gate.rivagan32",
            "soft_binding_payload": payload,
            "watermark_agrees": True,
            "verified": True,
        },
        "policy": {
            "name": "default",
            "path": "gate/default_policy.toml",
            "sha256": _sha("policy"),
            "content": policy_content,
        },
        "timings": {
            "generate": 812.4,
            "watermark": 148.9,
            "encode": 3.2,
            "measure": 41.7,
            "sign": 0.03,
            "verify": 12.5,
        },
        "environment": _environment(),
        "ledger": {"seq": 7 + seed, "row_hash": _sha(f"row{seed}"), "prev_hash": _sha(f"row{seed - 1}")},
        "keyframes": keyframes,
    }


@pytest.fixture(scope="session")
def make_record() -> Callable[..., GateRecord]:
    def factory(variant: str = "released", **kw: Any) -> GateRecord:
        return GateRecord.model_validate(build_record_dict(variant, **kw))

    return factory


@pytest.fixture(scope="session")
def record_dict() -> Callable[..., dict]:
    """The raw dictionary behind ``make_record``, to corrupt in negative tests."""
    return build_record_dict


_URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "xlink:href", "background", "manifest"}
_CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])([^"')]+)""", re.IGNORECASE)


class _References(HTMLParser):
    """Collects every resource reference of a document: URL attributes, CSS url()/@import in style elements and
    style attributes. Text content is not a reference (an escaped URL in a message fetches nothing)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name == "srcset":
                self.refs.extend(v.split()[0] for v in value.split(",") if v.strip())
            elif name in _URL_ATTRS:
                self.refs.append(value.strip())
            elif name == "style":
                self.refs.extend(_CSS_URL.findall(value))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.refs.extend(_CSS_URL.findall(data))


def find_external_references(html: str) -> list[str]:
    """Every resource reference that is not an inline data: URI or a fragment."""
    parser = _References()
    parser.feed(html)
    parser.close()
    return [r for r in parser.refs if not r.startswith(("data:", "#"))]


@pytest.fixture(scope="session")
def external_references() -> Callable[[str], list[str]]:
    return find_external_references
