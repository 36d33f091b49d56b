"""Load a workflow from a YAML/JSON spec (safely) or a WfCommons WfFormat file.

Spec format (YAML shown; JSON is the same structure)::

    name: dg2                 # optional
    stages: [[T0], [T1, T2]]  # optional stage order; default: DAG levels
    sets:                     # a list of sets, or a mapping name -> fields
      - name: T0
        n: 96                 # tasks in the set (default 1)
        kernel: sleep         # registry name or module:function (default noop)
        args: [385]           # kernel arguments (same for all tasks)
        kwargs: {}
        cores: 16             # request of one task (defaults 1 core, 0 GPUs, 1 rank)
        gpus: 1
        ranks: 1
        duration: 385         # estimate, s (default: sleep/spin argument, else 0)
        after: [T_prev]       # all-to-all dependencies
        after_each: [T_sim]   # one-to-one dependencies (same n)
        retries: 0
        timeout: 60
        isolate: false
        inputs: false         # pass the parents' return values as inputs=[...]
    edges:                    # optional task-level edges
      - [T0[3], T1[0]]

Unknown fields are errors (a typo must not silently change a run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .errors import SpecError
from .workflow import Workflow

SET_FIELDS = {"name", "n", "kernel", "args", "kwargs", "ranks", "cores", "gpus",
              "duration", "duration_dist", "stage", "retries", "timeout", "isolate",
              "inputs", "after", "after_each", "description"}
TOP_FIELDS = {"name", "description", "sets", "stages", "edges", "version"}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _DuplicateKey(ValueError):
    """A JSON object names a key twice (the key is the argument)."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object hook: a dict, or _DuplicateKey for a key given twice."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


_LOADER: Any = None


def _unique_key_loader() -> Any:
    """yaml.SafeLoader refusing a mapping that names a key twice (PyYAML keeps the last
    one silently: two sets ``a:`` would be one). Keys a merge (``<<``) brings in may
    be overridden, as YAML means them to be."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class UniqueKeyLoader(yaml.SafeLoader):
            def flatten_mapping(self, node: Any) -> None:
                # checked as written, once: flatten_mapping rewrites node.value in
                # place (merged keys beside its own), also for a mapping merged into
                # another before its own construction comes
                checked = self.__dict__.setdefault("_unique_checked", set())
                if isinstance(node, yaml.MappingNode) and node not in checked:
                    checked.add(node)
                    self._check_unique(node)
                super().flatten_mapping(node)

            def _check_unique(self, node: Any) -> None:
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    if key_node.tag == "tag:yaml.org,2002:value":
                        # a plain '=': the base class reads it as the string
                        key = self.construct_scalar(key_node)
                    else:
                        key = self.construct_object(key_node, deep=True)
                    try:
                        dup = key in seen
                    except TypeError:  # unhashable: the base class says so
                        continue
                    if dup:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (a later one would "
                            "silently replace the first)", key_node.start_mark)
                    seen.add(key)

        _LOADER = UniqueKeyLoader
    return _LOADER


def read_document(path: str) -> Any:
    """Parse a YAML or JSON file into plain Python data (safe loaders only).

    Raises:
        SpecError: missing file, unreadable bytes, or a syntax error (with position).
    """
    if not os.path.exists(path):
        raise SpecError(path, "no such file")
    if os.path.isdir(path):
        raise SpecError(path, "is a directory, not a spec file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(path, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SpecError(path, f"cannot read ({exc.strerror})") from None
    if path.endswith(".json"):
        try:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        except _DuplicateKey as exc:
            raise SpecError(path, f"duplicate key {exc.args[0]!r} (a later one would "
                            "silently replace the first)") from None
        except json.JSONDecodeError as exc:
            raise SpecError(path, f"JSON syntax error at line {exc.lineno} column "
                            f"{exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise SpecError(path, "JSON nesting too deep") from None
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        kind = "YAML" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax"
        raise SpecError(path, f"{kind} error{where}: {_one_line(problem)}") from None
    except RecursionError:
        raise SpecError(path, "YAML nesting too deep") from None


def is_wfformat(doc: Any) -> bool:
    """Whether parsed data looks like a WfCommons WfFormat instance."""
    return isinstance(doc, Mapping) and isinstance(doc.get("workflow"), Mapping) \
        and ("schemaVersion" in doc or "specification" in doc["workflow"]
             or "tasks" in doc["workflow"])


def load(path: str, fmt: str = "auto", **wf_options: Any) -> Workflow:
    """Load a workflow file.

    Args:
        path: YAML or JSON spec, or WfFormat JSON.
        fmt: ``auto`` (detect), ``spec`` or ``wfformat``.
        wf_options: passed to the WfFormat importer (e.g. ``time_scale``).

    Returns:
        The workflow (structure checked; call :meth:`Workflow.validate` with the
        machine's capacity before running).

    Raises:
        SpecError: the file is not a valid workflow; the message names the field.
    """
    if fmt not in ("auto", "spec", "wfformat"):
        raise SpecError("format", f"unknown format {fmt!r} (auto, spec or wfformat)")
    doc = read_document(path)
    if fmt == "wfformat" or (fmt == "auto" and is_wfformat(doc)):
        from .wfformat import from_wfformat

        return from_wfformat(doc, source=path, **wf_options)
    return from_dict(doc, default_name=os.path.splitext(os.path.basename(path))[0])


def from_dict(doc: Any, default_name: str = "workflow") -> Workflow:
    """Build a workflow from parsed spec data (see the module docstring).

    Raises:
        SpecError: naming the field path of the first problem.
    """
    if not isinstance(doc, Mapping):
        raise SpecError("spec", f"the top level must be a mapping with 'sets', got "
                        f"{type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in TOP_FIELDS)
    if unknown:
        raise SpecError(str(unknown[0]), f"unknown top-level field (known: "
                        f"{', '.join(sorted(TOP_FIELDS))})")
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise SpecError("name", f"must be a non-empty string, got {name!r}")
    wf = Workflow(name)
    sets = doc.get("sets")
    if sets is None:
        raise SpecError("sets", "missing: a workflow needs at least one task set")
    items: list[tuple[str, Any]]
    if isinstance(sets, Mapping):
        items = []
        for k, v in sets.items():
            if v is None:
                v = {}
            if not isinstance(v, Mapping):
                raise SpecError(f"sets.{k}", f"must be a mapping of fields, got "
                                f"{type(v).__name__}")
            if "name" in v and v["name"] != k:
                raise SpecError(f"sets.{k}.name", "differs from its key")
            items.append((f"sets.{k}", {**v, "name": k}))
    elif isinstance(sets, list):
        items = [(f"sets[{i}]", v) for i, v in enumerate(sets)]
    else:
        raise SpecError("sets", f"must be a list or a mapping, got {type(sets).__name__}")
    if not items:
        raise SpecError("sets", "empty: a workflow needs at least one task set")
    for path, entry in items:
        if not isinstance(entry, Mapping):
            raise SpecError(path, f"must be a mapping of fields, got {type(entry).__name__}")
        bad = sorted(str(k) for k in entry if k not in SET_FIELDS)
        if bad:
            raise SpecError(f"{path}.{bad[0]}", f"unknown field (known: "
                            f"{', '.join(sorted(SET_FIELDS - {'description'}))})")
        if "name" not in entry:
            raise SpecError(f"{path}.name", "missing")
        fields = {k: v for k, v in entry.items() if k != "description"}
        for key in ("after", "after_each"):
            if key in fields:
                v = fields[key]
                if isinstance(v, str):
                    fields[key] = [v]
                elif not isinstance(v, list):
                    raise SpecError(f"{path}.{key}", f"must be a set name or a list of "
                                    f"them, got {v!r}")
        if "args" in fields and not isinstance(fields["args"], list):
            fields["args"] = [fields["args"]]
        if "name" in fields and isinstance(fields["name"], (int, float)) \
                and not isinstance(fields["name"], bool):
            fields["name"] = str(fields["name"])
        wf.add_set(**fields, path=path)
    stages = doc.get("stages")
    if stages is not None:
        if not isinstance(stages, list) or not all(
                isinstance(s, list) and all(isinstance(x, str) for x in s) for s in stages):
            raise SpecError("stages", "must be a list of lists of set names")
        wf.set_stage_order(stages)
    edges = doc.get("edges")
    if edges is not None:
        if not isinstance(edges, list):
            raise SpecError("edges", "must be a list of [parent, child] pairs")
        for i, e in enumerate(edges):
            if isinstance(e, Mapping) and set(e) == {"after", "task"}:
                e = [e["after"], e["task"]]
            if not isinstance(e, list) or len(e) != 2:
                raise SpecError(f"edges[{i}]", f"must be a [parent, child] pair, got {e!r}")
            try:
                wf.add_edge(e[0], e[1])
            except SpecError as exc:
                raise SpecError(f"edges[{i}]", exc.problem) from None
    wf.validate(check_kernels=False)
    return wf
