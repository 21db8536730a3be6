"""The compliance matrix: which legal and standards obligations one video meets, and on what evidence.

One row per requirement of ``../shared/specs/compliance.md`` §6. ``REQUIREMENTS`` is the one table of rows (id, the
requirement in one line, its source); the evaluation of each row from what the gate verified on the final file lives
below it. A status comes from evidence read from the file (its manifest, its watermark, its metadata, its frames), from
the gate's own records of it, or from the configuration in force only where the obligation is about the operator
(retention) — never from a policy's wish alone.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Requirement:
    id: str
    requirement: str  # one line
    source: str


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "eu-ai-act-50-2",
        "Synthetic video is marked in a machine-readable, detectable way (signed, time-stamped metadata layer)",
        "EU AI Act Art. 50(2); Code of Practice Measure 1.1.1; Commission Guidelines C(2026)5054 points 69-70",
    ),
    Requirement(
        "eu-code-1-1-2-watermark",
        "An imperceptible watermark is a second marking layer, robust to compression and cropping",
        "EU Code of Practice Measure 1.1.2",
    ),
    Requirement(
        "rfc3161-timestamp",
        "The manifest signature carries an RFC 3161 time-stamp from a time-stamping authority",
        "EU Code of Practice Measure 1.1.1 (digitally signed and time-stamped)",
    ),
    Requirement(
        "ca-sb942-latent",
        "Latent disclosure: provider, system name and version, creation time and a unique id, detectable and durable",
        "California SB 942 as amended by AB 853, Bus. & Prof. Code §22757.3(b)",
    ),
    Requirement(
        "ca-sb942-detection",
        "The provider's detection tool finds the disclosure and says what its answer rests on",
        "California SB 942 §22757.2; EU Code of Practice Commitment 2 and Measure 3.4",
    ),
    Requirement(
        "eu-ai-act-50-4-label",
        "Deep fakes are disclosed clearly at the first exposure (visible label, top-right suggested)",
        "EU AI Act Art. 50(4); Code of Practice Section 2; SB 942 §22757.3(a) (visible disclosure option)",
    ),
    Requirement(
        "cn-gb45438-explicit",
        "A visible AI-generated notice on the opening frames for at least 2 s, text at least 5 % of the short side",
        "China Labelling Measures Art. 4; GB 45438-2025",
    ),
    Requirement(
        "cn-gb45438-implicit",
        "The file carries the AIGC implicit-label metadata (Label, ContentProducer, ProduceID, ContentPropagator, "
        "PropagateID)",
        "China Labelling Measures Art. 5; GB 45438-2025 Annex E; TC260 practice guide (28 Aug 2025)",
    ),
    Requirement(
        "c2pa-watermark-action",
        "The manifest's actions record the watermark, and a soft-binding assertion names it with timespan blocks",
        "C2PA 2.2 §18.10 (c2pa.watermarked), C2PA Implementation Guidance (c2pa.watermarked.bound)",
    ),
    Requirement(
        "c2pa-soft-binding",
        "The soft-binding algorithm is on the C2PA soft-binding algorithm list",
        "C2PA 2.2 §18.10; c2pa-org/softbinding-algorithm-list",
    ),
    Requirement(
        "c2pa-manifest-recovery",
        "A manifest-stripped copy is traced back to its record by its watermark",
        "C2PA 2.2 §18.10.5.1 (soft-binding resolution)",
    ),
    Requirement(
        "cawg-identity",
        "A CAWG identity assertion (X.509, cawg.x509.cose) names the signing organisation",
        "CAWG identity assertion 1.2 (ratified 15 Dec 2025)",
    ),
    Requirement(
        "cawg-training-mining",
        "The manifest states whether AI training and data mining are allowed",
        "CAWG training-and-data-mining assertion; C2PA c2pa.training-mining",
    ),
    Requirement(
        "cn-art9-retention",
        "Logs of generated content are kept at least 6 months, with documented deletion",
        "China Labelling Measures Art. 9; EU Code of Practice Measure 1.1.3",
    ),
    Requirement(
        "consent",
        "The depicted person consented: an active, unexpired, unrevoked consent record matches their face",
        "GDPR Art. 9; Tennessee ELVIS Act; China Deep Synthesis Provisions (separate consent)",
    ),
)
ROW_IDS: tuple[str, ...] = tuple(r.id for r in REQUIREMENTS)
STATUSES = ("met", "not_met", "not_applicable", "not_checked")


def requirement(row_id: str) -> Requirement:
    for r in REQUIREMENTS:
        if r.id == row_id:
            return r
    raise KeyError(row_id)
