"""Export of an AnswerBundle to a folder: bundle.json, layers.geojson, map.png, report.md.

The report is for people who were not at the keyboard: what was asked, the answer with its
citations, each piece of evidence with its source, what was run and what it cost. All text
that came from tools (titles, names, error messages) is escaped, so that no HTML, link or
image from a STAC item or an OSM tag can reach a Markdown renderer.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.schemas import AnswerBundle, Evidence
from render.imagery import ImagerySource
from render.layers import bundle_layers_geojson
from render.mapping import render_map
from tools.access import AccessPolicy
from tools.base import Quantity
from tools.provenance import SceneSource

log = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
LAYERS_FILE = "layers.geojson"
MAP_FILE = "map.png"
REPORT_FILE = "report.md"


def write_bundle(
    bundle: AnswerBundle,
    out_dir: Path,
    *,
    scene_hrefs: Sequence[str | Path | ImagerySource] | None = None,
    policy: AccessPolicy | None = None,
) -> dict[str, Path]:
    """Write the bundle's files into ``out_dir`` (created); return {"bundle", "layers",
    "map" (when a map was drawn), "report"} -> path. Each file is replaced atomically; a
    map left from an earlier answer is removed when this one has none. The map's imagery is
    opened under ``policy`` (default: the settings' access policy)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    failed: dict[str, str] = {}

    def write(key: str, name: str, make: Any) -> None:
        # Each file on its own: one that does not fit (a full disk) does not cost the others.
        try:
            written[key] = _atomic_write(out_dir / name, make())
        except OSError as exc:
            log.warning("%s not written: %s", name, exc)
            failed[name] = f"{type(exc).__name__}: {exc.strerror or exc}"

    write("bundle", BUNDLE_FILE, lambda: (bundle.model_dump_json(indent=2) + "\n").encode())
    write(
        "layers",
        LAYERS_FILE,
        lambda: (json.dumps(bundle_layers_geojson(bundle), ensure_ascii=False) + "\n").encode(),
    )

    map_path = out_dir / MAP_FILE
    map_note: str | None = None
    drawn = False
    if bundle.refused or bundle.clarification is not None:
        map_note = None
    else:
        try:
            drawn = render_map(bundle, map_path, scene_hrefs=scene_hrefs, policy=policy) is not None
            if not drawn:
                map_note = "No map: no evidence item has a location."
        except OSError as exc:  # no room for the picture: said, and the rest is written
            log.warning("map.png not written: %s", exc)
            failed[MAP_FILE] = f"{type(exc).__name__}: {exc.strerror or exc}"
            map_note = "The map could not be written."
        except Exception:  # a drawing bug must not cost the person the rest of the report
            log.exception("the map could not be drawn")
            map_note = "The map could not be drawn; the details are in the log."
    if drawn:
        written["map"] = map_path
    elif map_path.exists():
        map_path.unlink()  # a stale map of another answer would mislead

    text = report_markdown(bundle, map_file=MAP_FILE if drawn else None, map_note=map_note)
    write("report", REPORT_FILE, text.encode)
    if failed:
        raise BundleWriteError(out_dir, written, failed)
    return written


class BundleWriteError(OSError):
    """Some files of the bundle could not be written; ``written`` holds those that were."""

    def __init__(self, out_dir: Path, written: dict[str, Path], failed: dict[str, str]) -> None:
        self.written = written
        self.failed = failed
        listed = "; ".join(f"{name} ({why})" for name, why in failed.items())
        super().__init__(f"not written in {out_dir}: {listed}")


def _atomic_write(path: Path, data: bytes) -> Path:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are files to share
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# --------------------------------------------------------------------------- Markdown

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Characters that start Markdown markup inline; < > & become HTML entities instead.
# Brackets are escaped, so parentheses and "!" can no longer form a link or an image.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")
_SCHEMES = re.compile(r"\b(javascript|vbscript|data|file):", re.I)
_CITATION = re.compile(r"(\[E\d+(?:\s*[,;]\s*E\d+)*\])")
_BLOCK_START = re.compile(r"^(\s*)(?:([-+])|(\d+)([.)]))(?=\s)")


def _unblock(m: re.Match[str]) -> str:
    """Escape a list marker at the start of a line: '- x' -> '\\- x', '1. x' -> '1\\. x'."""
    if m.group(2):
        return f"{m.group(1)}\\{m.group(2)}"
    return f"{m.group(1)}{m.group(3)}\\{m.group(4)}"


def md_escape(text: object, limit: int | None = 300) -> str:
    """One line of untrusted text, shown literally by any Markdown renderer.

    No raw HTML (< > & become entities), no links or images (brackets are escaped), no
    emphasis, code, table breaks or headings; script-like URL schemes lose
    their colon's meaning. Long text is cut at ``limit`` characters.
    """
    s = _CONTROL.sub(" ", str(text))
    s = re.sub(r"\s+", " ", s).strip()
    if limit is not None and len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return _escape_inline(s, line_start=True)


def _escape_inline(s: str, line_start: bool) -> str:
    s = html.escape(s, quote=False)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _SCHEMES.sub(lambda m: f"{m.group(1)}\\:", s)
    if line_start:
        s = _BLOCK_START.sub(_unblock, s)
    return s


def md_answer(text: str) -> str:
    """The answer text escaped like tool text, keeping [E#] citations and "- " bullets."""
    lines_out = []
    for raw in _CONTROL.sub(" ", text).splitlines():
        line = raw.rstrip()
        bullet = ""
        m = re.match(r"^(\s*)([-*])\s+", line)
        if m:
            bullet, line = f"{m.group(1)}- ", line[m.end() :]
        parts = _CITATION.split(line)
        escaped = [
            re.sub(r"\s+", " ", p) if _CITATION.fullmatch(p) else _escape_inline(p, False)
            for p in parts
        ]
        body = "".join(escaped)
        if not bullet:
            body = _BLOCK_START.sub(_unblock, body)
        lines_out.append(bullet + body)
    return "\n".join(lines_out).strip()


def _cell(text: object, limit: int = 200) -> str:
    return md_escape(text, limit) or "-"


def fmt_number(x: float) -> str:
    """Readable figures: integers with separators, others with 3-4 significant digits."""
    if not math.isfinite(x):
        return "unknown"
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}" if ax >= 1 else f"{x:.3g}"


_UNITS = {"km2": "km²", "m2": "m²", "count": "", "1": "", "pct": "%"}


def fmt_quantity(q: Quantity) -> str:
    unit = _UNITS.get(q.unit, q.unit)
    text = fmt_number(q.value)
    if q.uncertainty is not None:
        text += f" ± {fmt_number(q.uncertainty)}"
    if unit:
        text += unit if unit == "%" else f" {unit}"
    return text


def report_markdown(
    bundle: AnswerBundle, *, map_file: str | None = None, map_note: str | None = None
) -> str:
    """The Markdown report of a bundle (see :func:`write_bundle`)."""
    out: list[str] = ["# GeoScout report", ""]
    out += [f"**Question:** {md_escape(bundle.question, 2000)}", ""]
    meta = [
        f"profile {md_escape(bundle.profile, 40)}",
        f"planner {md_escape(bundle.planner, 80)}",
        f"writer {md_escape(bundle.answer.writer, 80)}",
        f"GeoScout {md_escape(bundle.version, 20)}",
    ]
    if bundle.created:
        meta.insert(0, f"created {md_escape(bundle.created, 40)}")
    out += ["_" + ", ".join(meta) + "_", ""]

    if bundle.refused:
        out += ["## Declined", "", md_escape(bundle.refusal_reason or "No reason given.", 2000), ""]
    elif bundle.clarification is not None:
        out += ["## A question back", "", md_escape(bundle.clarification.question, 1000), ""]
        out += [f"- {md_escape(c, 200)}" for c in bundle.clarification.candidates[:20]]
        out.append("")
    else:
        out += ["## Answer", "", md_answer(bundle.answer.text) or "_No answer text._", ""]
        if bundle.answer.citations:
            cited = ", ".join(md_escape(c, 12) for c in bundle.answer.citations)
            out += [f"Cited evidence: {cited}", ""]

    if map_file:
        out += ["## Map", "", f"![Map of the evidence layers]({map_file})", ""]
        out += [
            f"Layers as GeoJSON: [{LAYERS_FILE}]({LAYERS_FILE}) · "
            f"full bundle: [{BUNDLE_FILE}]({BUNDLE_FILE})",
            "",
        ]
    elif map_note:
        out += ["## Map", "", md_escape(map_note), ""]

    if bundle.evidence:
        out += _evidence_section(bundle.evidence)
    out += _caveats_section(bundle)
    if bundle.plan:
        out += _plan_section(bundle)
    if bundle.trace:
        out += _trace_section(bundle)
    out += _cost_section(bundle)
    if bundle.guardrails:
        out += ["## Guardrails", "", "| Check | Result | Detail |", "|---|---|---|"]
        for g in bundle.guardrails:
            result = "passed" if g.passed else "**failed**"
            out.append(f"| {_cell(g.name, 60)} | {result} | {_cell(g.detail, 300)} |")
        out.append("")
    attributions = _all_attributions(bundle.evidence)
    if attributions:
        out += ["## Attribution", ""]
        out += [f"- {md_escape(a, 300)}" for a in attributions]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _evidence_section(evidence: list[Evidence]) -> list[str]:
    out = [
        "## Evidence",
        "",
        "| Id | Kind | What | Values | Source | Model | Attribution |",
        "|---|---|---|---|---|---|---|",
    ]
    for ev in evidence:
        values = [f"{k}: {fmt_quantity(q)}" for k, q in list(ev.values.items())[:8]]
        if len(ev.values) > 8:
            values.append(f"(+{len(ev.values) - 8} more in bundle.json)")
        out.append(
            "| "
            + " | ".join(
                [
                    _cell(ev.id, 12),
                    _cell(ev.kind, 20),
                    _cell(ev.title, 200),
                    "; ".join(md_escape(v, 120) for v in values) or "-",
                    _cell(_source_text(ev), 300),
                    _cell(model_text(ev), 200),
                    _cell(attribution_text(ev), 200),
                ]
            )
            + " |"
        )
    out.append("")
    return out


def _date(value: Any) -> str:
    return str(value)[:10] if value and str(value).lower() != "unknown" else "date unknown"


def _scene_text(scene: SceneSource, facts: dict[str, str]) -> str:
    text = scene.stac_item_id
    if scene.collection:
        text += f" ({scene.collection})"
    text += ", " + _date(scene.datetime or facts.get("acquired") or facts.get("datetime"))
    if scene.gsd is not None:
        text += f", {fmt_number(scene.gsd)} m GSD"
    return text


def _source_text(ev: Evidence) -> str:
    prov = ev.provenance
    if prov.scene is not None:
        text = _scene_text(prov.scene, ev.facts)
        return text if ev.kind == "scene" else "scene " + text
    if ev.kind == "features":
        names = [
            f"{s.name} (data as of {s.timestamp or 'unknown'})"
            if s.server is None
            else f"{s.server} (retrieved {s.retrieved or 'unknown'})"
            for s in prov.sources[:5]
        ]
        return "; ".join(names) if names else ev.facts.get("sources") or "unknown"
    if ev.kind == "figure" and prov.derived_from:
        return "derived from " + ", ".join(prov.derived_from)
    src = prov.source or ev.facts.get("source")
    if src:
        return f"{src}" + (f" ({prov.license})" if prov.license else "")
    return "unknown"


def model_text(ev: Evidence) -> str:
    """The model behind an evidence item: name, version, license, weights hash; "-" if none."""
    model = ev.provenance.model
    if model is None:
        return ev.facts.get("model") or "-"
    text = model.name
    if model.version:
        text += f" {model.version}"
    if model.license:
        text += f", license {model.license}"
    if model.weights_sha256:
        text += f", weights sha256 {model.weights_sha256[:12]}…"
    return text


def attribution_text(ev: Evidence) -> str:
    """The credit an evidence item's data asks for ("; "-separated), a scene's license, or
    "-" when there is none."""
    prov = ev.provenance
    # The item's own credit, else its sources' (an OSM extract, an Overpass server).
    text = prov.attribution or "; ".join(s.attribution for s in prov.sources if s.attribution)
    text = text or ev.facts.get("attribution") or ""
    if text.strip():
        return text
    if ev.kind == "scene":
        lic = prov.license or ev.facts.get("license")
        if prov.scene is not None:
            lic = lic or prov.scene.license
        if lic and lic != "unknown":
            return f"license {lic}"
    return "-"


def _all_attributions(evidence: list[Evidence]) -> list[str]:
    found: list[str] = []
    for ev in evidence:
        text = attribution_text(ev)
        if text != "-":
            found.extend(t.strip() for t in text.split(";") if t.strip())
    return list(dict.fromkeys(found))


def _caveats_section(bundle: AnswerBundle) -> list[str]:
    general = list(dict.fromkeys(bundle.answer.caveats))
    per_ev = [(ev.id, c) for ev in bundle.evidence for c in dict.fromkeys(ev.caveats)]
    if not general and not per_ev:
        return []
    out = ["## Caveats", ""]
    out += [f"- {md_escape(c, 600)}" for c in general]
    out += [f"- {md_escape(eid, 12)}: {md_escape(c, 600)}" for eid, c in per_ev]
    out.append("")
    return out


def _plan_section(bundle: AnswerBundle) -> list[str]:
    out = [
        f"## Plan (planner: {md_escape(bundle.planner, 80)})",
        "",
        "| Step | Tool | Needs | Arguments | Why |",
        "|---|---|---|---|---|",
    ]
    for step in bundle.plan:
        args = json.dumps(step.args, ensure_ascii=False, default=str, sort_keys=True)
        out.append(
            f"| {_cell(step.id, 8)} | {_cell(step.tool, 40)} | "
            f"{_cell(', '.join(step.needs), 60)} | {_cell(args, 240)} | {_cell(step.why, 160)} |"
        )
    out.append("")
    return out


def _trace_section(bundle: AnswerBundle) -> list[str]:
    out = [
        "## Trace",
        "",
        "| Step | Tool | Status | Seconds | Note |",
        "|---|---|---|---|---|",
    ]
    for t in bundle.trace:
        note = t.summary
        if t.status != "ok":
            bits = [b for b in (t.error_code, t.error, t.hint and f"hint: {t.hint}") if b]
            note = "; ".join(str(b) for b in bits) or note
        out.append(
            f"| {_cell(t.step, 8)} | {_cell(t.tool, 40)} | {_cell(t.status, 12)} | "
            f"{t.seconds:.2f} | {_cell(note, 300)} |"
        )
    out.append("")
    return out


def _cost_section(bundle: AnswerBundle) -> list[str]:
    c = bundle.cost
    llm = c.llm
    out = [
        "## Cost",
        "",
        f"- Wall time: {c.seconds:.2f} s",
        f"- Language model: {md_escape(llm.model, 80)}, {llm.prompt_tokens:,} prompt tokens, "
        f"{llm.completion_tokens:,} completion tokens",
        f"- Energy: {fmt_number(c.energy_wh)} Wh; emissions: {fmt_number(c.co2e_g)} g CO2e",
        f"- Method: {md_escape(c.method or 'not stated', 600)}",
    ]
    if c.steps:
        steps = ", ".join(f"{md_escape(k, 40)} {v:.2f} s" for k, v in c.steps.items())
        out.append(f"- Per step: {steps}")
    out.append("")
    return out
