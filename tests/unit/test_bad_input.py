"""Bad input: a catalogue of malformed specs and a property-based fuzz of the loader.

Every malformed spec gives exactly one line naming the problem on stderr and exit
status 2, never a traceback or a hang.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpiwf.cli import _printable
from mpiwf.errors import SpecError
from mpiwf.spec import from_dict, load
from mpiwf.workflow import Workflow

HERE = os.path.dirname(os.path.abspath(__file__))
CATALOGUE = sorted(glob.glob(os.path.join(HERE, "bad_specs", "*")))

#: What the one line must mention, per catalogue entry (the problem, named).
EXPECT = {
    "yaml_syntax": "YAML syntax error", "wrong_type_n": "sets.a.n", "negative_n": "sets.a.n",
    "absurd_n": "sets.a.n", "bool_n": "sets.a.n", "unsatisfiable_cores": "cores",
    "unsatisfiable_gpus": "gpu", "cycle": "cycle", "self_cycle": "a",
    "missing_kernel": "no_such_kernel", "missing_module": "no_such_module_xyz",
    "missing_function": "no_such_fn", "empty_sets": "sets", "empty_file": "top level",
    "top_level_list": "top level", "unknown_field": "colour", "unknown_parent": "nosuch",
    "duplicate_name": "a", "negative_timeout": "timeout", "negative_retries": "retries",
    "absurd_retries": "retries", "nan_duration": "duration", "inf_duration": "duration",
    "odd_unicode_name": "sets", "not_utf8": "UTF-8", "python_tag": "YAML",
    "deep_nesting": "nesting too deep", "json_syntax": "JSON syntax error",
    "wfformat_tasks_not_list": "tasks",
    "wfformat_missing_fields": "tasks[0]", "wfformat_cycle": "cycle",
    "duplicate_key": "line 6 column 5: duplicate key 'n'",
    "duplicate_key_json": "duplicate key 'n'",
}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    p = subprocess.run([sys.executable, os.path.join(HERE, "_cli_driver.py"), *CATALOGUE],
                       capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads(p.stdout.strip().splitlines()[-1])
    return {os.path.splitext(os.path.basename(r["spec"]))[0]: r for r in rows}


def test_catalogue_is_complete() -> None:
    names = {os.path.splitext(os.path.basename(p))[0] for p in CATALOGUE}
    assert names == set(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_bad_spec_one_line_exit_2(outcomes: dict[str, dict], name: str) -> None:
    r = outcomes[name]
    lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
    assert r["rc"] == 2, r
    assert len(lines) == 1, r["stderr"]
    assert lines[0].startswith("mpiwf run: error: "), lines
    assert "Traceback" not in r["stderr"]
    assert EXPECT[name].lower() in lines[0].lower(), lines[0]
    assert lines[0].isprintable(), repr(lines[0])  # no NUL, no bidi override on a terminal


def test_python_tag_is_never_executed(outcomes: dict[str, dict]) -> None:
    assert "pwned" not in outcomes["python_tag"]["stderr"]
    with pytest.raises(SpecError):
        load(os.path.join(HERE, "bad_specs", "python_tag.yaml"))


def test_a_merge_may_override_keys_it_brings_in(tmp_path) -> None:
    """Only a key written twice is refused: a YAML merge (``<<``) brings keys in for
    the mapping's own to override, as YAML means it."""
    p = tmp_path / "merge.yaml"
    p.write_text("name: w\nsets:\n  - &b {name: a, n: 2, kernel: noop}\n"
                 "  - {<<: *b, name: c, n: 3}\n", encoding="utf-8")
    wf = load(str(p))
    assert [(ts.name, ts.n, ts.kernel) for ts in wf.sets] == [("a", 2, "noop"), ("c", 3, "noop")]


def test_a_merged_mapping_that_overrides_its_own_merge_loads(tmp_path) -> None:
    """A mapping that overrides a key its own merge brings in is no duplicate, also
    when another mapping merges it before its own turn comes (PyYAML flattens a merged
    mapping in place: its keys and the ones merged into it then stand side by side)."""
    from mpiwf.spec import read_document

    p = tmp_path / "nested.yaml"
    p.write_text("x:\n  deep:\n    b: &b\n      <<: {p: 1, q: 1}\n      p: 2\n"
                 "y:\n  <<: *b\n  q: 3\n", encoding="utf-8")
    doc = read_document(str(p))
    assert doc["x"]["deep"]["b"] == {"p": 2, "q": 1}
    # a key the mapping itself writes twice is still refused, merged or not
    p.write_text("x:\n  deep:\n    b: &b\n      <<: {p: 1}\n      q: 2\n      q: 3\n"
                 "y:\n  <<: *b\n", encoding="utf-8")
    with pytest.raises(SpecError, match="duplicate key 'q'"):
        read_document(str(p))


def test_a_yaml_value_key_still_loads(tmp_path) -> None:
    """A plain ``=`` key (YAML 1.1's value tag, which the safe loader reads as the
    string '=') loads as it did before duplicate keys were refused."""
    from mpiwf.spec import read_document

    p = tmp_path / "eq.yaml"
    p.write_text("kwargs:\n  =: 1\n  x: 2\n", encoding="utf-8")
    assert read_document(str(p)) == yaml.safe_load(p.read_text()) == \
        {"kwargs": {"=": 1, "x": 2}}
    p.write_text("kwargs:\n  =: 1\n  '=': 2\n", encoding="utf-8")
    with pytest.raises(SpecError, match="duplicate key '='"):
        read_document(str(p))


@pytest.mark.parametrize("name", ["café", "Ωmega", "a\u00a0b"])
def test_non_ascii_set_name_says_ascii(name: str) -> None:
    with pytest.raises(SpecError) as info:
        from_dict({"sets": [{"name": name, "kernel": "noop"}]})
    assert info.value.path == "sets[0].name"
    assert f"invalid set name {name!r} (ASCII letters, digits, " in info.value.problem


def test_deeply_nested_json_is_one_spec_error(tmp_path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000)
    with pytest.raises(SpecError, match="JSON nesting too deep"):
        load(str(path))


# ------------------------------------------------------------------ fuzz
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**15, 10**15),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
_data = st.recursive(_scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=12)
_fields = st.sampled_from(["name", "n", "kernel", "args", "kwargs", "ranks", "cores", "gpus",
                           "duration", "stage", "retries", "timeout", "isolate", "inputs",
                           "after", "after_each", "bogus"])
_set = st.dictionaries(_fields, _data, max_size=5)
_spec = st.fixed_dictionaries(
    {"sets": st.one_of(st.lists(_set, max_size=4),
                       st.dictionaries(st.sampled_from(["a", "b", "c"]), _set, max_size=3),
                       _data)},
    optional={"stages": _data, "edges": _data, "name": _data, "extra": _data})


def _one_line_spec_error(exc: SpecError) -> None:
    """What the command line prints for it is one non-empty, printable line."""
    line = _printable(str(exc))
    assert line.strip() and line.isprintable(), repr(line)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.one_of(_spec, _data))
@example(doc={"\n": 1})  # found by this fuzz: a key with a newline
@example(doc={"sets": {"a\u202e": {"n": 1}}})
def test_fuzz_from_dict_gives_workflow_or_spec_error(doc: object) -> None:
    try:
        wf = from_dict(doc)
    except SpecError as exc:
        _one_line_spec_error(exc)
    else:
        assert isinstance(wf, Workflow) and wf.ntasks >= 1


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzz_yaml_text_gives_workflow_or_spec_error(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fz") / "s.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        wf = load(str(path))
    except SpecError as exc:
        _one_line_spec_error(exc)
    else:
        assert isinstance(wf, Workflow)


@settings(max_examples=150, deadline=None)
@given(doc=_spec)
def test_fuzz_dumped_yaml_round_trip(tmp_path_factory, doc: object) -> None:
    path = tmp_path_factory.mktemp("fy") / "s.yaml"
    try:
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    except (UnicodeEncodeError, yaml.YAMLError):
        return
    try:
        load(str(path))
    except SpecError as exc:
        _one_line_spec_error(exc)
