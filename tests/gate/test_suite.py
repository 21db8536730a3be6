"""gate.suite: a suite file is read completely and every bad key is refused naming ``<file>: <key>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.suite import Case, Suite
from reports.errors import InputError, UsageError

POLICIES = Path(__file__).resolve().parents[2] / "gate" / "policies"


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for name in ("faces/a.png", "faces/b.png", "speech/a.wav", "speech/b.wav", "outs/c1.mp4", "outs/c2.mp4"):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path


def write(tree: Path, text: str, name: str = "suite.toml") -> Path:
    p = tree / name
    p.write_text(text, encoding="utf-8")
    return p


CASES = """
[[cases]]
id = "c1"
portrait = "faces/a.png"
audio = "speech/a.wav"
[[cases]]
id = "c2"
portrait = "faces/b.png"
audio = "speech/b.wav"
prompt = "a person talking"
seed = 7
"""


def test_full_suite(tree: Path) -> None:
    path = write(
        tree,
        f"""
name = "demo"
policy = "offline"
[models.puppet]
backend = "puppet"
description = "positive control"
[models.tiny]
backend = "hallo3-tiny"
steps = 2
[models.elsewhere]
videos = "outs/*.mp4"
{CASES}
[regression]
identity_mean = 0.02
sync_c = 0.3
""",
    )
    suite = Suite.load(path)
    assert suite.name == "demo"
    assert suite.policy_path == POLICIES / "offline.toml"
    assert list(suite.models) == ["puppet", "tiny", "elsewhere"]
    assert suite.models["puppet"].backend == "puppet"
    assert suite.models["puppet"].description == "positive control"
    assert suite.models["tiny"].args == {"steps": 2}
    assert suite.models["elsewhere"].mode == "review"
    assert suite.models["elsewhere"].videos == {"c1": tree / "outs/c1.mp4", "c2": tree / "outs/c2.mp4"}
    assert suite.cases == [
        Case("c1", tree / "faces/a.png", tree / "speech/a.wav", "", 0),
        Case("c2", tree / "faces/b.png", tree / "speech/b.wav", "a person talking", 7),
    ]
    assert suite.regression == {"identity_mean": 0.02, "sync_c": 0.3}
    assert [(m.name, c.id) for m, c in suite.pairs()][:3] == [("puppet", "c1"), ("puppet", "c2"), ("tiny", "c1")]


def test_default_policy_and_policy_path(tree: Path) -> None:
    base = f'[models.s]\nbackend = "still"\n{CASES}'
    assert Suite.load(write(tree, f'name = "x"\n{base}')).policy_path is None
    assert Suite.load(write(tree, f'name = "x"\npolicy = "default"\n{base}')).policy_path is None
    (tree / "mine.toml").write_text("# policy\n")
    assert Suite.load(write(tree, f'name = "x"\npolicy = "mine.toml"\n{base}')).policy_path == tree / "mine.toml"


def test_cases_from_csv(tree: Path) -> None:
    (tree / "cases").mkdir()
    (tree / "cases" / "list.csv").write_text(
        "id,portrait,audio,prompt,seed\nk1,../faces/a.png,../speech/a.wav,,3\nk2,../faces/b.png,../speech/b.wav,hi,\n"
    )
    suite = Suite.load(write(tree, 'name = "x"\ncases_csv = "cases/list.csv"\n[models.s]\nbackend = "still"\n'))
    assert suite.cases == [
        Case("k1", tree / "cases/../faces/a.png", tree / "cases/../speech/a.wav", "", 3),
        Case("k2", tree / "cases/../faces/b.png", tree / "cases/../speech/b.wav", "hi", 0),
    ]


@pytest.mark.parametrize(
    ("text", "key", "rule"),
    [
        ('[models.s]\nbackend = "still"\n' + CASES, "name", "is required"),
        ('name = "x"\nbogus = 1\n[models.s]\nbackend = "still"\n' + CASES, "bogus", "is not a suite key"),
        ('name = "x"\n' + CASES, "models", "at least one"),
        ('name = "x"\n[models.s]\nbackend = "nope"\n' + CASES, "models.s.backend", "must be one of"),
        ('name = "x"\n[models.s]\nbackend = "still"\nvideos = "*.mp4"\n' + CASES, "models.s", "exactly one"),
        ('name = "x"\n[models."a b"]\nbackend = "still"\n' + CASES, "models.a b", "model name"),
        (
            'name = "x"\n[models.s]\nbackend = "still"\nsampler = "official"\n' + CASES,
            "models.s.sampler",
            "applies only",
        ),
        ('name = "x"\n[models.s]\nbackend = "still"\nsteps = 2\n' + CASES, "models.s.steps", "applies only"),
        ('name = "x"\n[models.s]\nbackend = "hallo3"\n' + CASES, "models.s.model_dir", "is required"),
        ('name = "x"\n[models.s]\nbackend = "hallo3-tiny"\nsteps = 0\n' + CASES, "models.s.steps", "integer >= 1"),
        ('name = "x"\n[models.s]\nbackend = "still"\nweights = 1\n' + CASES, "models.s.weights", "not a model key"),
        ('name = "x"\n[models.s]\nbackend = "still"\n', "cases", "at least one case"),
        (
            'name = "x"\n[models.s]\nbackend = "still"\n' + CASES + '[[cases]]\nid = "c1"\nportrait = "faces/a.png"\n'
            'audio = "speech/a.wav"\n',
            "cases",
            "unique",
        ),
        (
            'name = "x"\n[models.s]\nbackend = "still"\n[[cases]]\nid = "a/b"\nportrait = "faces/a.png"\n'
            'audio = "speech/a.wav"\n',
            "cases[0].id",
            "letters, digits",
        ),
        (
            'name = "x"\n[models.s]\nbackend = "still"\n[[cases]]\nid = ".c"\nportrait = "faces/a.png"\n'
            'audio = "speech/a.wav"\n',
            "cases[0].id",
            "first a letter or digit",
        ),
        (
            'name = "x"\n[models.s]\nbackend = "still"\n[[cases]]\nid = "c"\nportrait = "faces/a.png"\n',
            "cases[0].audio",
            "is required",
        ),
        (
            'name = "x"\n[models.s]\nbackend = "still"\n[[cases]]\nid = "c"\nportrait = "faces/a.png"\n'
            'audio = "speech/a.wav"\nseed = -1\n',
            "cases[0].seed",
            "integer >= 0",
        ),
        (
            'name = "x"\n[models.s]\nbackend = "still"\n' + CASES + "[regression]\nnope = 1\n",
            "regression.nope",
            "known",
        ),
        ('name = "x"\n[models.s]\nbackend = "still"\n' + CASES + "[regression]\nfps = 1\n", "regression.fps", "direct"),
        (
            'name = "x"\n[models.s]\nbackend = "still"\n' + CASES + "[regression]\nsync_c = -0.1\n",
            "regression.sync_c",
            ">= 0",
        ),
        ('name = "x"\npolicy = "nosuch"\n[models.s]\nbackend = "still"\n' + CASES, None, None),
    ],
)
def test_bad_keys_name_the_file_and_key(tree: Path, text: str, key: str | None, rule: str | None) -> None:
    path = write(tree, text)
    if key is None:  # a policy path that does not exist: an input file, exit 4
        with pytest.raises(InputError) as info:
            Suite.load(path)
        assert "policy must be an existing file" in info.value.rule
        return
    with pytest.raises(UsageError) as info:
        Suite.load(path)
    assert info.value.subject == f"{path}: {key}"
    assert rule in info.value.rule
    assert info.value.exit_code == 2


def test_missing_case_file_is_bad_input(tree: Path) -> None:
    path = write(
        tree, 'name = "x"\n[models.s]\nbackend = "still"\n[[cases]]\nid = "c"\nportrait = "no.png"\naudio = "x.wav"\n'
    )
    with pytest.raises(InputError) as info:
        Suite.load(path)
    assert info.value.subject == str(tree / "no.png")
    assert f"{path}: cases[0].portrait" in info.value.rule
    assert info.value.exit_code == 4


def test_videos_must_match_every_case_once(tree: Path) -> None:
    (tree / "outs" / "c2.mp4").unlink()
    path = write(tree, f'name = "x"\n[models.e]\nvideos = "outs/*.mp4"\n{CASES}')
    with pytest.raises(InputError) as info:
        Suite.load(path)
    assert "case 'c2'" in info.value.rule


def test_not_toml_and_not_found(tree: Path) -> None:
    with pytest.raises(UsageError, match="valid TOML"):
        Suite.load(write(tree, "name = \n"))
    with pytest.raises(UsageError, match="must be readable"):
        Suite.load(tree / "absent.toml")
