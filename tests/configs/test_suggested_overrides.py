"""Every override that a message of the package suggests (``set cipher.block_size=16``,
``use cipher=pre_encrypted key=none``...) is accepted by Hydra on the command line of one of
the apps, and a renamed key fails in one line that names its new name.

The messages are read from the source (every string literal outside docstrings), so a new
message that suggests a key no app has fails here without a hand-kept list.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from tests.helpers.hydra import composed
from vitlearnenc.runs.config import RENAMED_KEYS, check_renamed_keys, validate_config
from vitlearnenc.runs.errors import ConfigError
from vitlearnenc.utils.paths import CONF_DIR, PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "vitlearnenc"
APPS = ("train", "attack", "eval", "predict")
#: a placeholder for an f-string field in a reconstructed message
FIELD = "\x00"
#: ``key=value`` where key is a (dotted) config path; not inside a word, a flag or a path
TOKEN = re.compile(r"(?<![\w.+/-])((?:[a-z_]+\.)*[a-z_]+)=([^\s,;:)'\"`]*)")
#: ``img_size=`` stays the keyword of the network constructors (timm's name), which messages of
#: models/ may suggest to Python callers; config-facing code must never suggest a renamed key
NETWORK_KEYWORDS = {"img_size"}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _text(node: ast.AST) -> str | None:
    """A string literal, f-string fields replaced by :data:`FIELD`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) else FIELD for part in node.values
        )
    return None


def messages() -> Iterator[tuple[str, str]]:
    """(``file:line``, text) of every non-docstring string literal of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _docstrings(tree)
        inside_fstring = {
            id(part)
            for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr)
            for part in node.values
        }
        for node in ast.walk(tree):
            if id(node) in skip or id(node) in inside_fstring:
                continue
            text = _text(node)
            if text and "=" in text:
                yield f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}", text


def _groups() -> set[str]:
    return {path.name for path in CONF_DIR.iterdir() if path.is_dir()}


def _roots() -> set[str]:
    """Top-level keys of the apps' primary configs and the config groups."""
    import yaml

    roots = _groups()
    for app in APPS:
        roots |= set(yaml.safe_load((CONF_DIR / f"{app}.yaml").read_text()))
    return roots


def suggested_overrides() -> list[tuple[str, str, str]]:
    """(where, key, value) of every suggested override whose key starts with a config root."""
    roots = _roots()
    found = []
    for where, text in messages():
        for key, value in TOKEN.findall(text):
            if key.split(".")[0] in roots and value:
                found.append((where, key, value))
    return found


def _compose_candidates(key: str) -> list[list[str]]:
    """Group selections under which ``key`` may exist: none, then every option of the
    longest config group that is a prefix of ``key`` (``data.native_size`` ->
    ``data=synthetic``..., ``hydra.launcher.tasks_per_node`` -> ``hydra/launcher=slurm``...)."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        group = CONF_DIR.joinpath(*parts[:cut])
        if group.is_dir():
            name = "/".join(parts[:cut])
            return [[]] + [[f"{name}={p.stem}"] for p in sorted(group.glob("*.yaml"))]
    return [[]]


def _accepted(overrides: list[str], tmp_path: Path) -> bool:
    for app in APPS:
        try:
            with composed(app, overrides, tmp_path / app, keep_hydra=True):
                return True
        except (HydraException, OmegaConfBaseException):
            continue
    return False


SUGGESTED = suggested_overrides()


def _to_check() -> dict[str, list[str]]:
    """override to compose -> where it is suggested; a computed or placeholder group option
    (``cipher={name}``, ``cipher=NAME``) only needs its group, a computed or placeholder value
    a sample."""
    checks: dict[str, list[str]] = {}
    for where, key, value in SUGGESTED:
        # an f-string field, a %s, or a placeholder in capitals (cipher=NAME, key.path=KEY)
        computed = FIELD in value or "%" in value or bool(re.fullmatch(r"[A-Z_]+", value))
        if computed and key in _groups():
            continue
        sample = value if re.fullmatch(r"[\w./-]+", value) and not computed else "1"
        checks.setdefault(f"{key}={sample}", []).append(where)
    return checks


CHECKS = _to_check()


def test_the_scan_finds_the_known_suggestions() -> None:
    """The scan itself works: it sees suggestions of runs/ and data/ ..."""
    keys = {key for _, key, _ in SUGGESTED}
    assert {"cipher.block_size", "image_size", "key.path", "cipher", "data.root"} <= keys


def test_a_key_no_app_has_is_not_accepted(tmp_path: Path) -> None:
    """... and the check can fail."""
    assert not any(
        _accepted([*selection, "cipher.blok_size=4"], tmp_path / str(i))
        for i, selection in enumerate(_compose_candidates("cipher.blok_size"))
    )


@pytest.mark.parametrize("override", sorted(CHECKS))
def test_every_suggested_override_composes(override: str, tmp_path: Path) -> None:
    key = override.partition("=")[0]
    assert any(
        _accepted([*selection, override], tmp_path / str(i))
        for i, selection in enumerate(_compose_candidates(key))
    ), f"{CHECKS[override]} suggest {override}, which no app's config accepts"


def test_no_config_facing_message_suggests_a_renamed_key() -> None:
    for where, text in messages():
        for key, _ in TOKEN.findall(text):
            if key in NETWORK_KEYWORDS and where.startswith("vitlearnenc/models/"):
                continue
            assert key not in RENAMED_KEYS, f"{where} suggests the old key {key}="


@pytest.mark.parametrize("old", sorted(RENAMED_KEYS))
@pytest.mark.parametrize(
    ("module", "prog"),
    [
        ("train", "vitlearnenc-train"),
        ("attack", "vitlearnenc-attack"),
        ("evaluate", "vitlearnenc-eval"),
        ("predict", "vitlearnenc-predict"),
    ],
)
def test_an_old_override_fails_in_one_line_naming_the_new_key(
    old: str, module: str, prog: str, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    import importlib

    app = importlib.import_module(f"vitlearnenc.cli.{module}")
    new = RENAMED_KEYS[old]
    monkeypatch.setattr(sys, "argv", [prog, "key=seed", f"{old}=8"])
    with pytest.raises(SystemExit) as exited:
        app.main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error: {old} is now {new}"), err
    # the override the message suggests is accepted
    suggested = re.search(r"say (\S+)$", err.strip()).group(1)
    assert suggested == f"{new}=8"
    assert _accepted([suggested], tmp_path)


@pytest.mark.parametrize("prefix", ["+", "++", ""])
def test_old_overrides_in_any_form_and_in_sweeps_are_caught(prefix: str) -> None:
    from vitlearnenc.runs.config import check_renamed_overrides

    with pytest.raises(ConfigError, match="say image_size=32,64"):
        check_renamed_overrides(["-m", "key=seed", f"{prefix}img_size=32,64"])
    check_renamed_overrides(["-m", "image_size=32,64", "attack.classifier.img_size=16"])


def test_hydra_itself_no_longer_knows_the_old_key(tmp_path: Path) -> None:
    with (
        pytest.raises(HydraException, match="img_size"),
        composed("train", ["img_size=32"], tmp_path),
    ):
        pass


@pytest.mark.parametrize(("old", "value"), [("img_size", 32), ("model.adapt_block_size", 4)])
def test_a_config_file_that_sets_an_old_key_is_refused(
    old: str, value: int, tmp_path: Path
) -> None:
    """An experiment or local file may add keys freely (Hydra merges them), so an old key
    there would be read by nothing: ``validate_config`` refuses it."""
    with composed("train", [f"++{old}={value}"], tmp_path) as cfg:
        with pytest.raises(ConfigError, match=f"sets {old}, which is now {RENAMED_KEYS[old]}"):
            check_renamed_keys(cfg)
        with pytest.raises(ConfigError):
            validate_config(cfg)
