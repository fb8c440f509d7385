"""What the run folders under RUNS_DIR say about themselves, read (never written) and cached.

A run folder is a direct child of RUNS_DIR holding a ``config.yaml``. Its summary comes from
``config.yaml`` (model, method, objective, data), ``results.json`` (the key metric before ->
after, with the interval and paired test ``lmforge.evaluate.report.write_report`` stored) and
``status.json`` (phase, step, ETA, heartbeat; see :mod:`lmforge.status`). Parsed files are
cached by (mtime, size), so a page over hundreds of runs costs a few ``stat`` calls per run;
the state (running / finished / failed / resumable) is derived afresh on every read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lmforge import status as run_status
from lmforge.errors import UserError
from lmforge.ui.paths import config_file

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class RunSummary:
    """One row of the runs page."""

    name: str
    path: Path
    state: str  # running | finished | failed | resumable
    model: str = "?"
    method: str = "?"
    objective: str = "?"
    data: str = "?"
    metric: str | None = None
    before: float | None = None
    after: float | None = None
    low: float | None = None  # the after value's interval
    high: float | None = None
    change: dict | None = None  # paired before -> after test: difference, low, high, p_value, within_noise
    wall_s: float | None = None
    status: dict = field(default_factory=dict)
    has_report: bool = False
    has_checkpoint: bool = False
    error: str | None = None  # why a failed run failed (its status, else the last line of train.log)

    @property
    def running(self) -> bool:
        return self.state == "running"


class FileCache:
    """Parsed files keyed by path, re-read only when (mtime_ns, size) changes. Thread-safe."""

    def __init__(self) -> None:
        self.entries: dict[tuple[Path, str], tuple[tuple[int, int], Any]] = {}
        self.lock = threading.Lock()

    def get(self, path: Path, parse) -> Any:
        """``parse(bytes)`` of ``path`` (cached per parse function), or None when the file is
        missing or unparsable."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key, slot = (st.st_mtime_ns, st.st_size), (path, parse.__name__)
        with self.lock:
            hit = self.entries.get(slot)
        if hit and hit[0] == key:
            return hit[1]
        try:
            value = parse(path.read_bytes())
        except (OSError, ValueError, TypeError, yaml.YAMLError, UserError):
            value = None
        with self.lock:
            self.entries[slot] = (key, value)
        return value


def _json(data: bytes) -> Any:
    return json.loads(data)


def _yaml(data: bytes) -> Any:
    return yaml.load(data, Loader=_Loader)


_FACT_SECTIONS = ("model", "data", "method", "objective")


def top_sections(text: str, keys: tuple[str, ...]) -> dict | None:
    """The top-level sections ``keys`` of a block-style YAML mapping, parsed alone (a resolved
    config is ~170 lines; the runs page needs ~30 of them). None when the text is not a plain
    block mapping (a flow mapping, several documents ...): the caller parses it whole."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if current is None:
                return None
            current.append(line)
            continue
        key, sep, _ = line.partition(":")
        if not sep or line.startswith(("-", "{", "[", "%", "?", "'", '"')) or " " in key:
            return None
        current = blocks[key] = [line] if key in keys else []
    parsed = yaml.load("\n".join(l for k in keys for l in blocks.get(k, [])), Loader=_Loader) or {}
    return parsed if isinstance(parsed, dict) else None


def _config_facts(data: bytes) -> dict:
    """model / method / objective / data of a config.yaml (what the runs page shows)."""
    cfg = top_sections(data.decode("utf-8"), _FACT_SECTIONS)
    if cfg is None:
        cfg = _yaml(data)
    cfg = cfg if isinstance(cfg, dict) else {}
    return {"model": _get(cfg, "model", "name"), "method": _get(cfg, "method", "name"),
            "objective": objective_of(cfg), "data": data_text(cfg)}


def _result_facts(data: bytes) -> dict:
    """The key-metric fields of a results.json (what the runs page shows)."""
    results = _json(data)
    if not isinstance(results, dict):
        return {}
    row = RunSummary("", Path("."), "")
    _key_metric(row, results)
    return {"model": results.get("model"), "method": results.get("method"), "objective": results.get("objective"),
            "metric": row.metric, "before": row.before, "after": row.after, "low": row.low, "high": row.high,
            "change": row.change}


class RunIndex:
    """Reads run folders under ``runs_dir`` (see module doc)."""

    def __init__(self, runs_dir: str | Path):
        self.root = Path(runs_dir).resolve()
        self.cache = FileCache()

    def names(self) -> list[str]:
        """Run folder names (folders holding a config.yaml or launch.yaml), newest first."""
        found = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if entry.is_symlink() and Path(entry.path).resolve().parent != self.root:
                continue  # a link leading out of RUNS_DIR (lmforge.ui.paths.inside refuses it too)
            for config in ("config.yaml", "launch.yaml"):
                try:
                    found.append((os.stat(Path(entry.path) / config).st_mtime_ns, entry.name))
                    break
                except OSError:
                    continue
        return [name for _, name in sorted(found, reverse=True)]

    def config(self, run_dir: Path) -> dict:
        raw = self.cache.get(config_file(run_dir), _yaml)
        return raw if isinstance(raw, dict) else {}

    def results(self, run_dir: Path) -> dict:
        raw = self.cache.get(run_dir / "results.json", _json)
        return raw if isinstance(raw, dict) else {}

    def summaries(self) -> list[RunSummary]:
        return [self.summary(self.root / name) for name in self.names()]

    def summary(self, run_dir: Path) -> RunSummary:
        """The runs-page row of one run folder."""
        cfg = self.cache.get(config_file(run_dir), _config_facts) or {}
        results = self.cache.get(run_dir / "results.json", _result_facts) or {}
        status = self.cache.get(run_dir / run_status.STATUS_FILE, _json)
        status = status if isinstance(status, dict) else {}
        state = run_status.run_state(run_dir, status or None)
        row = RunSummary(name=run_dir.name, path=run_dir, state=state, status=status,
                         has_report=(run_dir / "report.html").is_file(),
                         has_checkpoint=(run_dir / "checkpoints" / "last").is_dir())
        row.model = str(cfg.get("model") or results.get("model") or "?")
        row.method = str(results.get("method") or cfg.get("method") or "?")
        row.objective = str(results.get("objective") or cfg.get("objective") or "?")
        row.data = str(cfg.get("data") or "?")
        for key in ("metric", "before", "after", "low", "high", "change"):
            setattr(row, key, results.get(key))
        if state == "failed" and not status.get("error"):
            row.error = last_log_line(run_dir)
        else:
            row.error = status.get("error")
        if status.get("started"):
            end = status.get("finished") or (status.get("updated") if state != "running" else time.time())
            row.wall_s = max(0.0, float(end or status["started"]) - float(status["started"]))
        return row


def last_log_line(run_dir: Path) -> str | None:
    """The last non-empty line of <run>/train.log (a launched run's output), or None."""
    try:
        with open(run_dir / "train.log", "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
            lines = [line.strip() for line in fh.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _get(d: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def objective_of(cfg: dict) -> str:
    """The objective a saved config trains with (its default follows the data format)."""
    from lmforge.config import parse_config

    name = _get(cfg, "objective", "name")
    if name:
        return str(name)
    try:
        return parse_config(cfg).objective_name
    except (UserError, TypeError, ValueError):
        return "?"


def data_text(cfg: dict) -> str:
    """``format: file names`` of a saved config's training data (``N tasks`` for multi-task)."""
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    if data.get("tasks"):
        return f"{data.get('format', '?')}: {len(data['tasks'])} tasks"
    sources = data.get("train")
    sources = sources if isinstance(sources, list) else [sources] if sources else []
    names = []
    for src in sources:
        path = src.get("path") if isinstance(src, dict) else src
        names.append(Path(str(path)).name if path else "?")
    return f"{data.get('format', '?')}: {', '.join(names) or '-'}"


def _key_metric(row: RunSummary, results: dict) -> None:
    """The run's selection metric before -> after, with the after interval and the paired test."""
    after, before = results.get("after") or {}, results.get("before") or {}
    metric = _get(results, "train", "best_metric") or "eval_loss"
    if metric not in after:
        metric = next((k for k, v in after.items() if isinstance(v, (int, float)) and k != "eval_examples"), None)
    if metric is None:
        return
    row.metric = metric
    row.after = _num(after.get(metric))
    row.before = _num(before.get(metric))
    interval = (after.get("intervals") or {}).get(metric)  # stored by evaluate.report.complete_report
    if isinstance(interval, dict):
        row.low, row.high = _num(interval.get("low")), _num(interval.get("high"))
    test = (results.get("changes") or {}).get(metric)
    if isinstance(test, dict):
        row.change = {k: test.get(k) for k in ("difference", "low", "high", "p_value", "within_noise")}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class MetricsTail:
    """Incremental reader of each run's ``metrics.jsonl``: only appended bytes are parsed; a file
    that shrank (a resumed run rewrites it) is read again from the start."""

    def __init__(self) -> None:
        self.files: dict[Path, tuple[int, list[dict]]] = {}
        self.lock = threading.Lock()

    def records(self, run_dir: Path) -> list[dict]:
        path = run_dir / "metrics.jsonl"
        try:
            size = os.stat(path).st_size
        except OSError:
            return []
        with self.lock:
            offset, rows = self.files.get(path, (0, []))
            if size < offset:
                offset, rows = 0, []
            if size > offset:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(size - offset)
                complete = chunk.rfind(b"\n") + 1  # a torn last line waits for its newline
                rows = rows + [_record(line) for line in chunk[:complete].splitlines() if line.strip()]
                rows = [r for r in rows if r is not None]
                offset += complete
            self.files[path] = (offset, rows)
            return rows


def _record(line: bytes) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("step"), (int, float)) else None


def curves(records: list[dict]) -> tuple[dict[str, list], dict[str, list]]:
    """(train series, eval series) from metrics.jsonl records: {"loss": [(step, value)]} and one
    series per numeric eval metric (counters and perplexity left out)."""
    train: dict[str, list] = {"loss": []}
    evals: dict[str, list] = {}
    for r in records:
        if r.get("event") == "eval":
            for k, v in r.items():
                if k not in ("step", "event", "eval_examples", "perplexity") and _num(v) is not None:
                    evals.setdefault(k, []).append((r["step"], float(v)))
        elif _num(r.get("loss")) is not None:
            train["loss"].append((r["step"], float(r["loss"])))
    return train, evals
