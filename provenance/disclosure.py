"""The latent disclosure of an output: who made it, with what, when, under which id (C2PA assertion + GB 45438 JSON).

Two machine-readable forms of the same facts, both written BEFORE the file is signed, so the C2PA hard binding covers
them (an edit of either makes the manifest Invalid):

* ``Disclosure`` -> the manifest assertion ``org.hallo3-gate.disclosure`` (``DISCLOSURE_LABEL``). It carries the
  fields California SB 942 §22757.3(b) asks of a latent disclosure (provider name; system name and version; time and
  date of creation; a unique identifier) and that the EU AI Act Art. 50(2) marking needs to be meaningful (who
  generated it, with which system). Fields:

  - ``provider``: the name of the provider that generated the content (SB 942 §22757.3(b)(1), EU AI Act Art. 50(2)
    "provider"). Always from configuration (``$HALLO3_GATE_PROVIDER``, the policy, the config file), never a default.
  - ``system``: the generative AI system's name (SB 942 §22757.3(b)(2)): the generator model and the tool that
    released it, e.g. ``"hallo3 (Hallo3 official) / hallo3-gate"``.
  - ``version``: that system's version (SB 942 §22757.3(b)(2)): the generator weights' hash prefix and the
    hallo3-gate version, e.g. ``"model 3f2a9c01b4de; hallo3-gate 0.9.0"`` (``model n/a`` when no weights were
    hashed, e.g. a stamped existing video).
  - ``created``: the time and date of creation, UTC ISO 8601 ending in ``Z`` (SB 942 §22757.3(b)(3)).
  - ``id``: a unique identifier of this output (SB 942 §22757.3(b)(4)); the gate uses its run id.
  - ``model_sha256``: the full sha256 of the generator weights (None when not known), ``weights``: weight file name ->
    sha256, for an auditor who wants more than the prefix in ``version``.
  - ``visible_label``: the visible-label specification burned into the frames (an opaque JSON object from the gate's
    label module, or None when no label was burned), so ``verify`` of any copy can re-check the label.

* ``AigcLabel`` -> the ``AIGC`` container metadata tag of the MP4 (China's Labelling Measures Art. 5, GB 45438-2025
  Annex E): ``{"Label", "ContentProducer", "ProduceID", "ReservedCode1", "ContentPropagator", "PropagateID",
  "ReservedCode2"}``. What the gate puts in each:

  - ``Label``: "1" (AI-generated; "2" possibly, "3" suspected are accepted when read);
  - ``ContentProducer``: the provider name (the same as ``Disclosure.provider``);
  - ``ProduceID``: the output's unique id (``Disclosure.id``);
  - ``ReservedCode1``: the producer's protection information: the invisible watermark payload in hex, which ties the
    metadata label to the mark in the frames (a stripped copy is still traced by that payload);
  - ``ContentPropagator``: who publishes the file; the gate releases it, so by default the provider again;
  - ``PropagateID``: the propagation id, by default the output id again (first and only release by the gate);
  - ``ReservedCode2``: the propagator's protection information: the disclosure id, which names the C2PA manifest's
    disclosure assertion this label belongs to.

  Nothing personal: no name of the depicted person, no consent data, no embedding. TC260's practice guide (28 Aug
  2025) makes Label, ContentProducer, ProduceID, ContentPropagator and PropagateID mandatory; ``parse_aigc`` enforces
  that and the set of keys.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

DISCLOSURE_LABEL = "org.hallo3-gate.disclosure"
AIGC_KEY = "AIGC"
AIGC_LABELS = ("1", "2", "3")  # GB 45438 Annex E: 1 AI-generated, 2 possibly AI-generated, 3 suspected
# (JSON key, attribute, mandatory per TC260's practice guide)
AIGC_FIELDS = (
    ("Label", "label", True),
    ("ContentProducer", "content_producer", True),
    ("ProduceID", "produce_id", True),
    ("ReservedCode1", "reserved_code1", False),
    ("ContentPropagator", "content_propagator", True),
    ("PropagateID", "propagate_id", True),
    ("ReservedCode2", "reserved_code2", False),
)
DISCLOSURE_FIELDS = ("provider", "system", "version", "created", "id")
_CREATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def utc_now() -> str:
    """The current time as the disclosure writes it: UTC, seconds, ``Z``."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(where: str, value: Any, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a string (got {type(value).__name__})")
    if required and not value.strip():
        raise ValueError(f"{where}: must be a non-empty string (got {value!r})")
    if _CONTROL.search(value):
        raise ValueError(f"{where}: must not contain control characters (got {value!r})")
    return value


@dataclass(frozen=True)
class Disclosure:
    """The latent disclosure fields of one output (see the module docstring for what each field holds and why)."""

    provider: str
    system: str
    version: str
    created: str
    id: str
    model_sha256: str | None = None
    weights: dict[str, str] = field(default_factory=dict)
    visible_label: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in DISCLOSURE_FIELDS:
            _text(f"disclosure.{name}", getattr(self, name))
        if not _CREATED.match(self.created):
            raise ValueError(f"disclosure.created: must be UTC ISO 8601 ending in Z (got {self.created!r})")
        try:
            dt.datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"disclosure.created: must be a real date and time (got {self.created!r})") from None
        if self.model_sha256 is not None and not (
            isinstance(self.model_sha256, str) and _SHA256.match(self.model_sha256)
        ):
            raise ValueError(
                f"disclosure.model_sha256: must be 64 lowercase hex digits or null (got {self.model_sha256!r})"
            )
        if not isinstance(self.weights, dict):
            raise ValueError(
                f"disclosure.weights: must be an object of name -> sha256 (got {type(self.weights).__name__})"
            )
        for name, digest in self.weights.items():
            _text("disclosure.weights (a name)", name)
            if not (isinstance(digest, str) and _SHA256.match(digest)):
                raise ValueError(f"disclosure.weights.{name}: must be 64 lowercase hex digits (got {digest!r})")
        if self.visible_label is not None and not isinstance(self.visible_label, dict):
            raise ValueError(
                f"disclosure.visible_label: must be an object or null (got {type(self.visible_label).__name__})"
            )

    @classmethod
    def new(
        cls,
        *,
        provider: str,
        generator: str,
        tool_version: str,
        model_sha256: str | None = None,
        weights: dict[str, str] | None = None,
        id: str | None = None,
        created: str | None = None,
        visible_label: dict[str, Any] | None = None,
    ) -> Disclosure:
        """A disclosure in the gate's format: ``system`` = "<generator> / hallo3-gate", ``version`` = "model <first 12
        hex of model_sha256, or n/a>; hallo3-gate <tool_version>", ``created`` = now, ``id`` = a new UUID unless given.
        """
        model = model_sha256[:12] if model_sha256 else "n/a"
        return cls(
            provider=provider,
            system=f"{generator} / hallo3-gate",
            version=f"model {model}; hallo3-gate {tool_version}",
            created=created or utc_now(),
            id=id or f"urn:uuid:{uuid.uuid4()}",
            model_sha256=model_sha256,
            weights=dict(weights or {}),
            visible_label=visible_label,
        )

    def to_dict(self) -> dict[str, str]:
        """The five fields a verifier shows (``verify --json`` ``disclosure``)."""
        return {name: getattr(self, name) for name in DISCLOSURE_FIELDS}

    def to_assertion(self) -> dict[str, Any]:
        """The data of the ``org.hallo3-gate.disclosure`` assertion."""
        return {
            **self.to_dict(),
            "model_sha256": self.model_sha256,
            "weights": dict(self.weights),
            "visible_label": self.visible_label,
        }

    @classmethod
    def from_assertion(cls, data: Any) -> Disclosure:
        """Read the assertion back; a missing or malformed field is a ``ValueError`` naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"disclosure: must be an object (got {type(data).__name__})")
        for name in DISCLOSURE_FIELDS:
            if name not in data:
                raise ValueError(f"disclosure.{name}: is missing")
        weights = data.get("weights")
        return cls(
            provider=data["provider"],
            system=data["system"],
            version=data["version"],
            created=data["created"],
            id=data["id"],
            model_sha256=data.get("model_sha256"),
            weights={} if weights is None else weights,
            visible_label=data.get("visible_label"),
        )


@dataclass(frozen=True)
class AigcLabel:
    """The GB 45438-2025 Annex E implicit label (see the module docstring for what the gate writes in each field)."""

    label: str
    content_producer: str
    produce_id: str
    reserved_code1: str
    content_propagator: str
    propagate_id: str
    reserved_code2: str

    def __post_init__(self) -> None:
        for key, attr, mandatory in AIGC_FIELDS:
            _text(f"{AIGC_KEY}.{key}", getattr(self, attr), required=mandatory)
        if self.label not in AIGC_LABELS:
            raise ValueError(f"{AIGC_KEY}.Label: must be one of {', '.join(AIGC_LABELS)} (got {self.label!r})")

    @classmethod
    def for_output(
        cls,
        disclosure: Disclosure,
        *,
        watermark_payload_hex: str,
        propagator: str | None = None,
        propagate_id: str | None = None,
    ) -> AigcLabel:
        """The label the gate writes for an output it generated and releases (Label "1")."""
        return cls(
            label="1",
            content_producer=disclosure.provider,
            produce_id=disclosure.id,
            reserved_code1=watermark_payload_hex,
            content_propagator=propagator or disclosure.provider,
            propagate_id=propagate_id or disclosure.id,
            reserved_code2=disclosure.id,
        )

    def to_dict(self) -> dict[str, str]:
        return {key: getattr(self, attr) for key, attr, _ in AIGC_FIELDS}

    def to_json(self) -> str:
        """Compact UTF-8 JSON in the Annex E key order (no spaces, non-ASCII kept as is)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def parse_aigc(text: str) -> AigcLabel:
    """Parse and validate an ``AIGC`` metadata value: a JSON object with exactly the seven Annex E keys, every value a
    string, ``Label`` in 1/2/3, the five TC260-mandatory fields non-empty. ``ValueError`` names the field and rule."""
    if not isinstance(text, str):
        raise ValueError(f"{AIGC_KEY}: must be a JSON string (got {type(text).__name__})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{AIGC_KEY}: must be valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{AIGC_KEY}: must be a JSON object (got {type(data).__name__})")
    known = [key for key, _, _ in AIGC_FIELDS]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{AIGC_KEY}.{unknown[0]}: is not a GB 45438 Annex E field (allowed: {', '.join(known)})")
    for key in known:
        if key not in data:
            raise ValueError(f"{AIGC_KEY}.{key}: is missing")
    return AigcLabel(**{attr: data[key] for key, attr, _ in AIGC_FIELDS})
