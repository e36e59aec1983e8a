"""The ``zoo`` command line.

Only click is imported at module level, so ``zoo --help`` is instant; each
command imports the registry, store or runtimes it needs. Every error is one
``error: ...`` line on stderr: exit code 1 for a ``ZooError`` (the request cannot be
done), 2 for a usage error (an unknown option, a bad value), as click's own codes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .errors import InvalidInput, ZooError


class ZooGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _registry(ctx):
    from .registry.catalog import Registry
    from .store.home import resolve_home

    obj = ctx.ensure_object(dict)
    if "registry" not in obj:
        obj["registry"] = Registry(resolve_home(obj.get("home"), obj.get("registry_url")))
    return obj["registry"]


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), envvar="ZOO_HOME",
              help="Zoo home directory (default: $ZOO_HOME, else nearest upward dir with "
                   "registry.db, else the per-user data dir).")
@click.option("--registry-url", envvar="ZOO_REGISTRY_URL",
              help="SQLAlchemy URL of the registry (default: sqlite in the home), e.g. postgresql://...")
@click.version_option(package_name="zoo")
@click.pass_context
def cli(ctx, home, registry_url):
    """zoo: a managed model zoo for text-embedding models."""
    ctx.ensure_object(dict).update(home=home, registry_url=registry_url)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.pass_context
def init(ctx, directory):
    """Create a zoo home in DIRECTORY (default: --home/$ZOO_HOME, else the current directory)."""
    from .store.home import resolve_home
    from .registry.catalog import Registry

    target = directory or ctx.obj.get("home") or "."
    existed = (Path(target) / "registry.db").exists()
    reg = Registry(resolve_home(target, ctx.obj.get("registry_url")))
    verb = "already initialised" if existed else "initialised"
    click.echo(f"{verb} zoo home {reg.home.root} (registry {reg.home.registry_url})")


@cli.command()
@click.argument("name")
@click.argument("source")
@click.option("--revision", help="Branch, tag or commit for hf:// sources (default: main).")
@click.option("--force", is_flag=True, help="Replace an existing model of this name.")
@click.option("--trust-remote-code", is_flag=True,
              help="Run the model's own code (config.json auto_map, custom modules): read it first. Each code "
                   "file's sha256 is recorded and checked before every load; the torch targets serve it.")
@click.option("--kind", type=click.Choice(["embedding", "reranker"]), default=None,
              help="The kind of model you expect (read from the folder: a CrossEncoder or ...ForSequenceClassification "
                   "folder is a reranker); refused if the folder says otherwise.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON on stdout).")
@click.pass_context
def register(ctx, name, source, revision, force, trust_remote_code, kind, as_json):
    """Register SOURCE as NAME: hf://ORG/NAME, pkg://PACKAGE/SUBDIR, a local directory, or a hub id
    already in the Hugging Face cache (offline). An embedding model or a reranker (cross-encoder)."""
    reg = _registry(ctx)
    r = reg.register(name, source, revision=revision, force=force, trust_remote_code=trust_remote_code, kind=kind)
    art = r.revision.artifacts[0]
    if as_json:
        _emit({"name": r.model.name, "source": r.model.source, "revision": r.revision.resolved_id,
               "files": len(r.revision.manifest), "size_bytes": art.size_bytes, "dim": r.model.dim,
               "pooling": r.model.pooling, "normalize": r.model.normalize,
               "max_seq_length": r.model.max_seq_length, "artifact_id": art.id,
               "trusted_code": r.model.trusted_code, "kind": r.model.kind, "activation": r.model.activation})
        return
    if r.model.kind == "reranker":
        click.echo(f"registered {r.model.name} (reranker): {r.model.source} @ {r.revision.resolved_id} "
                   f"({len(r.revision.manifest)} files, {_mb(art.size_bytes)}); {r.model.dim} label(s), "
                   f"{r.model.activation} activation, max_seq_length {r.model.max_seq_length}")
        return
    click.echo(f"registered {r.model.name}: {r.model.source} @ {r.revision.resolved_id} "
               f"({len(r.revision.manifest)} files, {_mb(art.size_bytes)}); dim {r.model.dim}, "
               f"{r.model.pooling} pooling, normalize={r.model.normalize}, "
               f"max_seq_length {r.model.max_seq_length}")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_(ctx, as_json):
    """List registered models."""
    from .registry.catalog import DEFAULT_MODEL

    models = _registry(ctx).list_models()
    rows = [{"name": m.name, "kind": m.kind or "embedding", "source": m.source, "dim": m.dim,
             "revision": m.current_revision.resolved_id if m.current_revision else None,
             "artifacts": {a.target: a.status.value for a in (m.current_revision.artifacts
                                                               if m.current_revision else [])}}
            for m in models]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no models registered yet; the default model {DEFAULT_MODEL} registers itself "
                   "on first use (`zoo embed \"hello\"`)")
        return
    click.echo(f"{'NAME':<28} {'KIND':<9} {'DIM':>5}  {'REVISION':<20} {'READY ARTIFACTS':<30} SOURCE")
    for r in rows:
        ready = ",".join(t for t, s in r["artifacts"].items() if s == "ready") or "-"
        click.echo(f"{r['name']:<28} {r['kind']:<9} {r['dim']:>5}  {(r['revision'] or '-')[:20]:<20} {ready:<30} "
                   f"{r['source']}")


# the names are zoo.engine.precision.PRECISIONS, checked there; spelled out so `zoo --help` imports no numpy
PRECISION_HELP = ("float32, float16, int8, uint8, binary or ubinary; int8/uint8 from the artifact's stored "
                  "calibration ranges, binary/ubinary one bit per dimension, packed (as sentence-transformers).")


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx, name, as_json):
    """Show a model: source, revisions, artifacts with status, size and fidelity, and what each measured here."""
    from .core.hardware import detect
    from .selection.figures import latest_figures

    reg = _registry(ctx)
    d = reg.describe(name)
    here = latest_figures(reg, [a["id"] for r in d["revisions"] for a in r["artifacts"]], detect().fingerprint)
    for r in d["revisions"]:  # this machine's figures (`zoo bench`): speed and the peak RSS selection weighs
        for a in r["artifacts"]:
            a["measured_here"] = here.get(a["id"])
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{d['name']}  ({d['kind']} model, {d['task']}, license {d['license'] or 'unknown'})")
    if d["kind"] == "reranker":
        click.echo(f"  scores          {d['dim']} label(s), {d['activation']} activation    "
                   f"max_seq_length {d['max_seq_length']} (query and document together)")
    click.echo(f"  source          {d['source']}")
    if d["kind"] == "embedding":
        click.echo(f"  dim             {d['dim']}    max_seq_length {d['max_seq_length']}")
        click.echo(f"  pooling         {d['pooling']}    normalize {d['normalize']}")
        click.echo(f"  prompts         query={d['query_prompt']!r} document={d['document_prompt']!r}")
    dims = d.get("matryoshka_dims")
    if d["kind"] == "embedding":
        click.echo("  matryoshka      " + ("not declared: `dimensions` below the width cuts vectors of a model not "
                                     "trained for it (served, with X-Zoo-Matryoshka: not-declared)" if dims is None
                                         else "declared" + (f", widths {', '.join(map(str, dims))}" if dims else
                                                            " (widths not listed)")))
    if d.get("image_preprocessing"):
        pre = d["image_preprocessing"]
        click.echo(f"  modalities      {', '.join(d['modalities'])}    images: size {pre.get('size')}, crop "
                   f"{pre.get('crop_size') if pre.get('do_center_crop') else 'none'}, mean {pre.get('image_mean')}, "
                   f"std {pre.get('image_std')}, resample {pre.get('resample')}")
    if d.get("trusted_code"):
        click.echo("  own code        trusted (--trust-remote-code); checked by sha256 before every load:")
        for path, digest in sorted(d["trusted_code"].items()):
            click.echo(f"                  {path}  sha256:{digest}")
    if d["aliases"]:
        click.echo("  aliases         " + ", ".join(f"{a['name']} -> {a['revision'][:16]}" for a in d["aliases"]))
    for r in d["revisions"]:
        mark = "*" if r["resolved_id"] == d["current_revision"] else " "
        ref = f" (requested {r['requested_ref']})" if r["requested_ref"] else ""
        click.echo(f"{mark} revision {r['resolved_id']}{ref}: {r['files']} files, {_mb(r['size_bytes'])}")
        for a in r["artifacts"]:
            click.echo(f"    [{a['id']}] {a['target']:<24} {a['status']:<9} {_mb(a['size_bytes']):>10}  "
                       f"{_fidelity_line(a['fidelity'])}" + (f"  ({a['error']})" if a["error"] else ""))
            if a["status"] == "ready" and d["kind"] == "embedding":
                click.echo("         " + _precision_line(a.get("precision_ranges")))
            if f := a.get("measured_here"):
                click.echo(f"         measured here: {_num(f.get('throughput'), '.0f')} {f.get('unit', 'texts')}/s at batch "
                           f"{f.get('batch_size', '-')}, p50 {_num(f.get('latency_p50_ms'), '.1f')} ms, "
                           f"peak RSS {_num(f.get('peak_rss_mb'), '.0f')} MB")
            if search := (a["provenance"] or {}).get("search"):
                _search_lines(search)


def _precision_line(record: dict | None) -> str:
    """What int8 and binary output keep of float32's retrieval, from the artifact's stored calibration."""
    if not record:
        return "compact precisions: ranges not computed yet (the first int8/uint8 request computes and stores them)"
    fig = record["figures"]

    def kept(p: str) -> str:
        f = fig[p]
        return f"{p} {f['top10_agreement']:.2f} ({f['rescored_top10_agreement']:.2f} rescored)"

    widths = ", ".join(sorted(record["normalized"], key=int, reverse=True))
    return (f"compact precisions: top-10 agreement with float32 {kept('int8')}, {kept('binary')}; "
            f"recall@10 int8 {fig['int8']['recall_at_10']:.2f}, binary {fig['binary']['recall_at_10']:.2f} "
            f"(float32 {fig['float32']['recall_at_10']:.2f}); ranges from {record['texts']} {record['source']} "
            f"texts, widths {widths}")


def _search_lines(search: dict) -> None:
    """The quantization search behind an artifact: what it kept in float, and every attempt."""
    kept = search["kept_in_float"]
    click.echo(f"         search: {search['recipe']}, {len(kept)} of {search['candidates']} products in float "
               f"({search['float_flops_share']:.0%} of their work), {len(search['attempts'])} attempts, "
               f"{search['seconds']:.0f} s + {search['sensitivity_seconds']:.0f} s sensitivity"
               + (f"; {search['stopped']}" if search.get("stopped") else ""))
    for t in search["attempts"]:
        f = t["figures"]
        judged = (f"query spearman {f.get('mean_query_spearman', float('nan')):.4f}  "
                  f"top3 {f.get('top_k_agreement', float('nan')):.2f}  max |diff| {f.get('max_score_diff', float('nan')):.4f}"
                  if "mean_query_spearman" in f else
                  f"mean cos {f.get('mean_cosine', float('nan')):.5f}  min cos {f.get('min_cosine', float('nan')):.5f}")
        click.echo(f"           {'pass' if t['passed'] else 'fail'}  {t['recipe']:<18} float {t['kept_in_float']:>3}  "
                   f"{judged}  {t['seconds']:.0f} s")
    if kept:
        click.echo("           kept in float: " + ", ".join(kept))


@cli.command()
@click.argument("name")
@click.pass_context
def rm(ctx, name):
    """Remove a model (its revisions and artifacts) or an alias. Run `zoo gc` to free disk."""
    what = _registry(ctx).remove(name)
    click.echo(f"removed {what} {name}" + ("; run `zoo gc` to free its files" if what == "model" else ""))


@cli.command()
@click.argument("alias")
@click.argument("model")
@click.pass_context
def alias(ctx, alias, model):
    """Point ALIAS at MODEL's current revision (re-pointing an existing alias)."""
    r = _registry(ctx).add_alias(alias, model)
    click.echo(f"alias {alias} -> {r.model.name} @ {r.revision.resolved_id}")


@cli.command()
@click.argument("name", required=False)
@click.option("--repair", is_flag=True, help="Restore what is damaged: re-read checkpoints from their pinned "
                                             "source, rebuild converted artifacts, relink trees.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON on stdout).")
@click.pass_context
def verify(ctx, name, repair, as_json):
    """Re-hash stored artifact files (of NAME, or all) and report corruption."""
    if repair:
        from .conversion.repair import repair as run_repair

        rep = run_repair(_registry(ctx), name, progress=lambda line: click.echo(f"  .. {line}", err=True))
        if as_json:
            _emit({"restored": list(rep.refetched), "rebuilt": list(rep.rebuilt), "relinked": rep.relinked,
                   "unrepairable": list(rep.unrepairable),
                   "still_damaged": sorted({p.digest for p in rep.remaining})})
        for label in rep.refetched:
            click.echo(f"restored {label} from its pinned source")
        for label in rep.rebuilt:
            click.echo(f"rebuilt  {label}")
        for line in rep.unrepairable:
            click.echo(f"cannot repair {line}")
        if rep.remaining or rep.unrepairable:
            raise ZooError(f"{len({p.digest for p in rep.remaining})} artifact(s) still damaged; see above")
        click.echo(f"repaired: {len(rep.refetched)} restored, {len(rep.rebuilt)} rebuilt, "
                   f"{rep.relinked} tree(s) relinked; all files match their sha256")
        return
    artifacts, problems = _registry(ctx).verify(name)
    bad = {p.digest for p in problems}
    if as_json:
        _emit({"artifacts": [{"model": a.revision.model.name, "target": a.target, "id": a.id,
                              "digest": a.store_digest, "ok": a.store_digest not in bad} for a in artifacts],
               "problems": [{"digest": p.digest, "path": p.path, "issue": p.issue} for p in problems]})
        if problems:
            raise ZooError(f"{len(bad)} artifact(s) corrupt; run `zoo verify --repair` to restore them")
        return
    for a in artifacts:
        state = "CORRUPT" if a.store_digest in bad else "ok"
        click.echo(f"{state:<8} {a.revision.model.name} {a.target} (id {a.id}, {a.store_digest[:12]})")
    for p in problems:
        click.echo(f"  {p.digest[:12]} {p.path or '(manifest)'}: {p.issue}")
    if problems:
        raise ZooError(f"{len(bad)} artifact(s) corrupt; run `zoo verify --repair` to restore them")
    click.echo(f"verified {len(artifacts)} artifact(s): all files match their sha256")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.pass_context
def gc(ctx, dry_run):
    """Remove stored files that no artifact references."""
    rep = _registry(ctx).gc(dry_run=dry_run)
    verb = "would free" if dry_run else "freed"
    click.echo(f"{verb} {rep.bytes_freed} bytes ({_mb(rep.bytes_freed)}): {len(rep.blobs)} blob(s), "
               f"{len(rep.manifests)} manifest(s), {len(rep.trees)} tree(s), {len(rep.staging)} staging item(s), "
               f"{len(rep.compiled)} compiled model(s)")


FLOOR_OPTIONS = [
    click.option("--min-mean-cosine", "mean_cosine", type=float, help="Fidelity floor: mean cosine to the reference."),
    click.option("--min-min-cosine", "min_cosine", type=float, help="Fidelity floor: minimum cosine."),
    click.option("--min-spearman", "spearman", type=float, help="Fidelity floor: pairwise-similarity Spearman."),
    click.option("--max-recall-drop", "recall_at_10_drop", type=float, help="Largest allowed recall@10 drop."),
    click.option("--min-query-spearman", "mean_query_spearman", type=float,
                 help="Reranker floor: mean per-query Spearman of the scores."),
    click.option("--min-worst-query-spearman", "min_query_spearman", type=float,
                 help="Reranker floor: the worst query's Spearman."),
    click.option("--min-top-k-agreement", "top_k_agreement", type=float,
                 help="Reranker floor: share of the reference's top 3 per query kept."),
    click.option("--max-score-diff", "max_score_diff", type=float,
                 help="Reranker floor: largest absolute score difference."),
]


def floor_options(f):
    for option in reversed(FLOOR_OPTIONS):
        f = option(f)
    return f


def _floor(**values) -> dict:
    """The floor values given, checked now (finite, in range), before any work starts."""
    from .core.floor import Floor

    from .core.floor import ScoreFloor

    given = {k: v for k, v in values.items() if v is not None}
    scores = {k: v for k, v in given.items() if k in ScoreFloor.RANGES}
    Floor(**{k: v for k, v in given.items() if k not in scores})
    ScoreFloor(**scores)
    return given


def _fidelity_line(fid: dict | None) -> str:
    if not fid:
        return "-"
    if fid.get("reference"):
        return "reference"
    if fid.get("non_finite"):
        return "non-finite output"
    if "mean_query_spearman" in fid:  # a reranker's scores, judged query by query
        return (f"query spearman mean {fid['mean_query_spearman']:.4f} min {fid['min_query_spearman']:.4f}  "
                f"top{fid.get('top_k', 3)} agree {fid['top_k_agreement']:.2f}  max |diff| {fid['max_score_diff']:.4f}")
    images = (f"  images: mean cos {fid['image_mean_cosine']:.5f}  min cos {fid['image_min_cosine']:.5f}"
              if "image_mean_cosine" in fid else "")
    return (f"mean cos {fid['mean_cosine']:.5f}  min cos {fid['min_cosine']:.5f}  spearman {fid['spearman']:.4f}  "
            f"top1 agree {fid['top1_agreement']:.2f}  R@10 {fid['recall_at_10']:.2f}" + images)


@cli.command()
@click.argument("name", required=False)
@click.option("--to", "targets", multiple=True, metavar="TARGET",
              help="Target to build (repeatable); all-cpu / all-cuda for every target this machine can run.")
@click.option("--list", "list_targets", is_flag=True, help="List targets, what each needs, and whether it runs here.")
@click.option("--rebuild", is_flag=True, help="Build again even if a ready artifact exists.")
@click.option("--calibration", type=str, help="Texts for static int8 calibration (one per line, or .jsonl).")
@click.option("--search-attempts", type=click.IntRange(min=1, max=100), default=None,
              help="Most int8 candidates built per target by the quantization search (default 10).")
@click.option("--search-seconds", type=click.FloatRange(min=1, max=86400), default=None,
              help="Time after which the search starts no new candidate for a target (default 600).")
@floor_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON on stdout).")
@click.pass_context
def convert(ctx, name, targets, list_targets, rebuild, calibration, search_attempts, search_seconds, as_json,
            **floor):
    """Build artifacts of NAME (ONNX, OpenVINO, torch casts), each gated by a fidelity check."""
    from .core.hardware import detect

    if list_targets:
        from converters import all_targets

        hw = detect()
        click.echo(f"{'TARGET':<24} {'FORMAT':<9} {'PREC':<5} {'DEVICE':<6} {'NEEDS':<22} HERE")
        for target, conv in all_targets():
            why = conv.unavailable_reason(target, hw)
            needs = ",".join(target.extras)
            click.echo(f"{target.name:<24} {target.format:<9} {target.precision:<5} {target.device:<6} "
                       f"{needs:<22} {'yes' if why is None else 'no: ' + why}")
        return
    if not name:
        raise InvalidInput("give a model NAME (or --list)")
    from .conversion.pipeline import convert as run_convert

    def progress(step, _fraction):
        click.echo(f"  .. {step}", err=True)

    budget = {k: v for k, v in (("attempts", search_attempts), ("seconds", search_seconds)) if v is not None}
    with _stdout_for_answer_only(as_json):
        outcomes = run_convert(_registry(ctx), name, list(targets), rebuild=rebuild, floor=_floor(**floor),
                               calibration=calibration, progress=progress, search_budget=budget)
    bad = sum(o.status in ("failed", "rejected") for o in outcomes)
    if as_json:
        _emit({"model": name, "outcomes": [_outcome_dict(o) for o in outcomes]})
        outcomes = []
    for o in outcomes:
        size = _mb(o.size_bytes) if o.size_bytes else "-"
        click.echo(f"{o.target:<24} {o.status:<9} {size:>9} {o.seconds:7.1f} s  {_fidelity_line(o.fidelity)}")
        if o.status in ("failed", "rejected"):
            click.echo(f"  {o.status}: {o.error}")
    if bad:
        raise ZooError(f"{bad} target(s) not ready; rejected artifacts are kept with their figures but never served")


@cli.command()
@click.argument("name")
@floor_options
@click.option("--reset", is_flag=True, help="Forget the model's own floor (use the defaults).")
@click.pass_context
def floor(ctx, name, reset, **values):
    """Show or set NAME's own fidelity floor (used by every later `zoo convert`); a reranker's is on its scores."""
    from .core.floor import floor_for

    reg = _registry(ctx)
    current = reg.set_floor(name, None if reset else _floor(**values), reset=reset)
    kind = reg.resolve(name).model.kind
    click.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in floor_for(kind, current).as_dict().items()))


def _figures_table(rows) -> None:
    unit = "PAIRS/S" if any(f.get("unit") == "pairs" for _, f in rows) else "SENT/S"  # a reranker scores pairs
    click.echo(f"{'TARGET':<24} {unit:>8} {'BATCH':>6} {'P50 MS':>7} {'P95 MS':>7} {'LOAD S':>7} {'PEAK MB':>8}  RUNTIME")
    for target, f in rows:
        images = f"  ({f['image_throughput']:.0f} images/s)" if "image_throughput" in f else ""
        click.echo(f"{target:<24} {f['throughput']:8.0f} {f['batch_size']:6d} {f['latency_p50_ms']:7.2f} "
                   f"{f['latency_p95_ms']:7.2f} {_num(f.get('load_s'), '7.2f')} {_num(f.get('peak_rss_mb'), '8.0f')}  "
                   f"{f['backend']}{images}{'  (screened)' if f.get('screened') else ''}")


def _num(value, fmt: str) -> str:
    return format(value, fmt) if value is not None else format("-", ">" + fmt.split(".")[0])


def _progress(step, _fraction):
    click.echo(f"  .. {step}", err=True)


def _stdout_for_answer_only(as_json: bool):
    """While a --json command works, what libraries print (progress bars, notices) goes to stderr, so
    stdout holds the one JSON answer."""
    import contextlib
    import sys

    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def _emit(obj) -> None:
    """A command's --json answer: one JSON document on stdout (progress and warnings stay on stderr)."""
    click.echo(json.dumps(obj, indent=2, default=str))


def _outcome_dict(o) -> dict:
    return {"target": o.target, "status": o.status, "artifact_id": o.artifact_id, "seconds": round(o.seconds, 2),
            "size_bytes": o.size_bytes, "fidelity": o.fidelity, "error": o.error,
            "search": (o.provenance or {}).get("search")}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(as_json):
    """The hardware profile, the runtimes installed, and what each can use here."""
    from .core.hardware import detect, runtimes

    from .core.hardware import doctor_warnings

    hw, rt = detect(), runtimes()
    warnings = doctor_warnings(hw, rt)
    if as_json:
        click.echo(json.dumps({"hardware": hw.as_dict(), "runtimes": rt, "warnings": warnings}, indent=2, default=str))
        return
    click.echo(f"machine      {hw.cpu_model or 'unknown CPU'} ({hw.cpu_vendor or '?'}, {hw.arch}), {hw.physical_cores} physical / "
               f"{hw.logical_cores} logical cores, {hw.memory_mb / 1024:.1f} GiB")
    click.echo(f"instructions {' '.join(sorted(hw.flags)) or '-'}")
    for g in hw.gpus:
        click.echo(f"gpu          {g.name}, compute {g.compute_capability}, {g.memory_mb} MiB, driver {g.driver}")
    if not hw.gpus:
        click.echo("gpu          none")
    click.echo(f"fingerprint  {hw.fingerprint}")
    for name, info in rt.items():
        if info is None:
            click.echo(f"{name:<12} not installed")
        elif name == "torch":
            click.echo(f"{name:<12} {info['version']}, CUDA {'yes: ' + ', '.join(info['devices']) if info['cuda'] else 'no'}")
        elif name == "onnxruntime":
            click.echo(f"{name:<12} {info['version']} ({info['package']}), providers {', '.join(info['providers'])}")
        else:
            click.echo(f"{name:<12} {info['version'].split('-')[0]}, devices {', '.join(info['devices'])}")
    for w in warnings:
        click.echo(f"WARNING: {w}", err=True)


@cli.command()
@click.argument("name")
@click.option("--artifact", "artifacts", multiple=True, help="Only these artifacts (target name or id); repeatable.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--texts", default=256, show_default=True, type=click.IntRange(min=16))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON on stdout).")
@click.pass_context
def bench(ctx, name, artifacts, rounds, texts, as_json):
    """Measure ready artifacts of NAME on this machine and store the figures."""
    from .selection.benchmark import BenchConfig, bench_artifact
    from .core.hardware import detect
    from .selection.select import pick_artifact

    reg = _registry(ctx)
    revision = reg.resolve(name).revision
    chosen = ([pick_artifact(revision.artifacts, a) for a in artifacts] if artifacts
              else [a for a in revision.artifacts if a.status.value == "ready"])
    hw, config = detect(), BenchConfig(texts=texts, rounds=rounds)
    rows = [(a.target, bench_artifact(reg, name, a, hw, config, _progress)) for a in chosen]
    if as_json:
        _emit({"model": name, "hardware_fingerprint": hw.fingerprint,
               "figures": [{"target": t, **f} for t, f in rows]})
        return
    _figures_table(rows)
    click.echo(f"stored under hardware fingerprint {hw.fingerprint}")


def _selection_options(f):
    f = click.option("--objective", type=click.Choice(["throughput", "latency", "images"]), default="throughput",
                     show_default=True, help="What the measured pick optimises.")(f)
    f = click.option("--min-fidelity", type=float, help="Minimum mean cosine to the reference.")(f)
    f = click.option("--exact", is_flag=True, help="Only fp32-exact formats.")(f)
    f = click.option("--max-memory", "max_memory", type=float, metavar="MB",
                     help="Pass over artifacts whose peak RSS measured here (zoo bench) exceeds this many MB.")(f)
    return f


@cli.command("select")
@click.argument("name")
@_selection_options
@click.option("--device", help="cpu, cuda or cuda:N.")
@click.option("--explain", is_flag=True, help="Show the ranking with figures and reasons.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def select_(ctx, name, objective, min_fidelity, exact, max_memory, device, explain, as_json):
    """Which artifact of NAME serves on this machine, and why."""
    from .api import choose

    _, hw, _, sel = choose(_registry(ctx), name, objective=objective, min_fidelity=min_fidelity, exact=exact,
                           device=device, max_memory_mb=max_memory)
    if as_json:
        click.echo(json.dumps({**sel.as_dict(), "hardware_fingerprint": hw.fingerprint}, indent=2, default=str))
    elif explain:
        click.echo(sel.explain())
    else:
        click.echo(f"{sel.chosen.target}: {sel.reason}")


@cli.command()
@click.argument("name", required=False)
@click.option("--objective", type=click.Choice(["throughput", "latency", "images"]), default="throughput",
              show_default=True)
@click.option("--rebuild", is_flag=True, help="Rebuild and re-measure everything.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON on stdout).")
@click.pass_context
def optimize(ctx, name, objective, rebuild, as_json):
    """Convert every candidate for this machine, gate, benchmark and select (resumable)."""
    from .selection.optimize import optimize as run_optimize
    from .registry.catalog import DEFAULT_MODEL

    name = name or DEFAULT_MODEL
    with _stdout_for_answer_only(as_json):
        report = run_optimize(_registry(ctx), name, objective=objective, rebuild=rebuild, progress=_progress,
                              warn=lambda line: click.echo(f"warning: {line}", err=True))
    if as_json:
        by_id = {a.id: a.target for a in _registry(ctx).resolve(name).revision.artifacts}
        _emit({"model": name, "selected": report.selection.chosen.target, "reason": report.selection.reason,
               "built": [_outcome_dict(o) for o in report.built],
               "figures": {by_id.get(i, str(i)): f for i, f in report.measured.items()},
               "seconds": report.seconds, "benchmarked_while_busy": report.busy})
        return
    for o in report.built:
        if o.status in ("failed", "rejected"):
            click.echo(f"{o.target}: {o.status}: {o.error}")
    revision = _registry(ctx).resolve(name).revision
    by_id = {a.id: a.target for a in revision.artifacts}
    rows = sorted(((by_id[i], f) for i, f in report.measured.items() if i in by_id),
                  key=lambda r: -r[1]["throughput"])
    _figures_table(rows)
    click.echo(f"selected for {name}: {report.selection.chosen.target} ({report.selection.reason}); "
               f"took {report.seconds['total']:.0f} s (convert {report.seconds['convert']:.0f} s, "
               f"benchmark {report.seconds['bench']:.0f} s)")


def _write_output(path: str, texts: list[str], vectors) -> None:
    import os
    import tempfile

    import numpy as np

    out = Path(path)
    if out.suffix not in (".npy", ".jsonl"):
        raise InvalidInput(f"--output {path}: use a .npy or .jsonl file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent if str(out.parent) else ".")
    except OSError as exc:
        raise InvalidInput(f"cannot write --output {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if out.suffix == ".npy":
                np.save(f, vectors)
            else:
                for t, v in zip(texts, vectors):
                    f.write((json.dumps({"text": t, "embedding": v.tolist()}) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@cli.command()
@click.argument("name")
@click.option("--query", help="Text prepended to queries (embed_query); '' removes it.")
@click.option("--document", help="Text prepended to documents (embed_documents); '' removes it.")
@click.option("--clear", is_flag=True, help="Remove both prompts.")
@click.pass_context
def prompt(ctx, name, query, document, clear):
    """Show or set NAME's query and document prompts (read from the model's config at registration)."""
    prompts = _registry(ctx).set_prompts(name, query=query, document=document, clear=clear)
    for kind, text in prompts.items():
        click.echo(f"{kind}: {'-' if text is None else repr(text)}")


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--model", "-m", "model_name", default=None, help="Model name or alias (default: all-minilm-l6-v2).")
@click.option("--input", "-i", "input_path", help="File of texts: one per line, or .jsonl; '-' for stdin.")
@click.option("--output", "-o", "output_path", help="Write vectors to a .npy or .jsonl file.")
@click.option("--json", "as_json", is_flag=True, help="Print model, revision, artifact and vectors as JSON.")
@click.option("--artifact", help="Use this artifact (target name such as torch-fp32, or id).")
@click.option("--device", help="Run on this device (cpu, cuda, cuda:1).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Default: the best batch measured here, else 32.")
@click.option("--prompt-name", type=click.Choice(["query", "document"]), help="Prepend the model's prompt of this kind.")
@click.option("--prompt", "prompt_text", help="Prepend this text to every input.")
@click.option("--dimensions", type=click.IntRange(min=1), help="Keep the first N components (Matryoshka), re-normalised.")
@click.option("--normalize/--no-normalize", default=None, help="L2-normalise (default: as the model does).")
@click.option("--truncate/--no-truncate", default=True, show_default=True,
              help="Cut inputs longer than the model's max length (--no-truncate: fail instead).")
@click.option("--no-cache", is_flag=True, help="Bypass the vector cache.")
@click.option("--precision", default="float32", show_default=True, help=PRECISION_HELP)
@_selection_options
@click.pass_context
def embed(ctx, texts, model_name, input_path, output_path, as_json, artifact, device, batch_size, prompt_name,
          prompt_text, dimensions, normalize, truncate, no_cache, precision, objective, min_fidelity, exact,
          max_memory):
    """Embed TEXT arguments (or --input) with a model, by name."""
    import warnings

    from .api import load
    from .engine.model import TruncationWarning
    from .registry.catalog import DEFAULT_MODEL
    from .core.textfiles import read_texts

    items = list(texts) + (read_texts(input_path, "--input") if input_path else [])
    if not items:
        raise InvalidInput("nothing to embed: give TEXT arguments or --input FILE")
    obj = ctx.ensure_object(dict)
    # lazy: texts all in the vector cache open no runtime; and an unchanged registry is not opened
    # at all (a load plan, see zoo.selection.plans)
    m = load(model_name or DEFAULT_MODEL, artifact=artifact, device=device, objective=objective,
             min_fidelity=min_fidelity, exact=exact, max_memory_mb=max_memory, home=obj.get("home"), registry_url=obj.get("registry_url"),
             cache=not no_cache, lazy_runtime=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        vectors = m.embed(items, batch_size=batch_size, prompt=prompt_text, prompt_name=prompt_name,
                          dimensions=dimensions, normalize=normalize, truncate=truncate, precision=precision)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if output_path:
        _write_output(output_path, items, vectors)
    if as_json:
        click.echo(json.dumps({"model": m.name, "revision": m.info["revision"], "artifact": m.info["artifact"],
                               "dim": vectors.shape[1], "precision": precision, "truncated": list(vectors.truncated),
                               "cache_hits": vectors.cache_hits, "embeddings": vectors.tolist()}))
    elif output_path:
        click.echo(f"wrote {len(items)} x {vectors.shape[1]} embeddings to {output_path} "
                   f"({m.name}, {m.info['artifact']}, {m.info['revision'][:16]})")
    else:
        click.echo(f"{m.name} ({m.info['artifact']} on {m.info['device']}, revision "
                   f"{m.info['revision'][:16]}), dim {vectors.shape[1]}, {vectors.cache_hits} from cache")
        for t, v in zip(items, vectors):
            head = " ".join(f"{x:+.4f}" if v.dtype.kind == "f" else f"{x:+d}" for x in v[:6])
            click.echo(f"  [{head} ...]  {t[:60]!r}")


@cli.command()
@click.argument("query")
@click.argument("documents", nargs=-1)
@click.option("--model", "-m", "model_name", required=True, help="A registered reranker (cross-encoder), by name.")
@click.option("--input", "-i", "input_path", help="File of documents: one per line, or .jsonl; '-' for stdin.")
@click.option("--top-n", type=click.IntRange(min=1), help="Keep the N best documents.")
@click.option("--artifact", help="Use this artifact (target name such as onnx-fp32, or id).")
@click.option("--device", help="Run on this device (cpu, cuda, cuda:1).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Default: the best batch measured here, else 32.")
@click.option("--truncate/--no-truncate", default=True, show_default=True,
              help="Cut pairs longer than the model's max length (with a warning); --no-truncate fails instead.")
@click.option("--no-cache", is_flag=True, help="Bypass the score cache.")
@click.option("--json", "as_json", is_flag=True, help="Print model, artifact and results as JSON.")
@_selection_options
@click.pass_context
def rerank(ctx, query, documents, model_name, input_path, top_n, artifact, device, batch_size, truncate, no_cache,
           as_json, objective, min_fidelity, exact, max_memory):
    """Order DOCUMENTS (or --input) by relevance to QUERY with a reranker, best first."""
    import warnings

    from .api import load
    from .engine.model import TruncationWarning
    from .core.textfiles import read_texts

    docs = list(documents) + (read_texts(input_path, "--input") if input_path else [])
    if not docs:
        raise InvalidInput("nothing to rerank: give DOCUMENT arguments or --input FILE")
    obj = ctx.ensure_object(dict)
    m = load(model_name, artifact=artifact, device=device, objective=objective, min_fidelity=min_fidelity,
             exact=exact, max_memory_mb=max_memory, home=obj.get("home"), registry_url=obj.get("registry_url"),
             cache=not no_cache, lazy_runtime=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        ranking = m.rerank(query, docs, top_n=top_n, batch_size=batch_size, truncate=truncate)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if as_json:
        click.echo(json.dumps({"model": m.name, "revision": m.info["revision"], "artifact": m.info["artifact"],
                               "truncated": list(ranking.truncated), "cache_hits": ranking.cache_hits,
                               "results": [{"index": r.index, "relevance_score": r.score} for r in ranking]}))
        return
    click.echo(f"{m.name} ({m.info['artifact']} on {m.info['device']}, revision {m.info['revision'][:16]}), "
               f"{len(docs)} documents, {ranking.cache_hits} from cache")
    for r in ranking:
        click.echo(f"  {r.score:+.5f}  [{r.index}]  {docs[r.index][:70]!r}")


@cli.command("embed-dataset")
@click.argument("input_path", metavar="INPUT")
@click.argument("output_path", metavar="OUTPUT")
@click.option("--column", default="text", show_default=True, help="The text column.")
@click.option("--id-column", help="The column that identifies rows (default: the global row index, as `id`).")
@click.option("--model", "-m", "model_name", default=None, help="Model name or alias (default: all-minilm-l6-v2).")
@click.option("--artifact", help="Use this artifact (target name or id) on every worker.")
@click.option("--prompt-name", type=click.Choice(["query", "document"]), help="Prepend the model's prompt of this kind.")
@click.option("--prompt", "prompt_text", help="Prepend this text to every input.")
@click.option("--dimensions", type=click.IntRange(min=1), help="Keep the first N components (Matryoshka).")
@click.option("--normalize/--no-normalize", default=None, help="L2-normalise (default: as the model does).")
@click.option("--batch-rows", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Rows per embedding call in a worker (bounds its memory).")
@click.option("--shard-rows", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Rows per output shard: the unit of work, of resume and of retry.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", help="Join this Ray cluster (HOST:PORT, ray://..., auto); default: start a local Ray.")
@click.option("--workers", type=click.IntRange(min=1), help="Ray actors (default: one per CPU of the cluster).")
@click.option("--num-gpus", type=click.FloatRange(min=0), default=0, help="GPUs per Ray actor.")
@click.option("--resume", is_flag=True, help="Finish this job in OUTPUT: only shards not yet written are done.")
@click.option("--skip-invalid", is_flag=True, help="Write rows whose text is null or not a string to OUTPUT/_rejects/.")
@click.option("--per-node-best", is_flag=True, help="Each Ray node serves its own fastest artifact; rows are "
                                                     "stamped with its digest (mixes artifacts in one output).")
@click.option("--no-cache", is_flag=True, help="Bypass the vector cache.")
@click.option("--store-url", envvar="ZOO_STORE_URL", help="Shared artifact store to pull missing artifacts from.")
@click.option("--precision", default="float32", show_default=True,
              help=PRECISION_HELP + " Written as fixed-size lists of that type; ubinary as fixed-size binary.")
@click.option("--json", "as_json", is_flag=True, help="Print the job's summary as JSON.")
@click.pass_context
def embed_dataset(ctx, input_path, output_path, column, id_column, model_name, artifact, prompt_name, prompt_text,
                  dimensions, normalize, batch_rows, shard_rows, engine, ray_address, workers, num_gpus, resume,
                  skip_invalid, per_node_best, no_cache, store_url, precision, as_json):
    """Embed a dataset (Parquet file or folder, JSONL, CSV, text lines) into a folder of Parquet shards."""
    from .datasets.job import embed_dataset as run
    from .registry.catalog import DEFAULT_MODEL

    obj = ctx.ensure_object(dict)
    r = run(input_path, output_path, model=model_name or DEFAULT_MODEL, column=column, id_column=id_column,
            artifact=artifact, prompt_name=prompt_name, prompt=prompt_text, dimensions=dimensions, normalize=normalize,
            batch_rows=batch_rows, shard_rows=shard_rows, engine=engine, ray_address=ray_address, workers=workers,
            num_gpus=num_gpus, resume=resume, skip_invalid=skip_invalid, per_node_best=per_node_best,
            cache=not no_cache, home=obj.get("home"), registry_url=obj.get("registry_url"), store_url=store_url,
            precision=precision)
    if as_json:
        click.echo(json.dumps(r.as_dict(), indent=2))
        return
    ident = r.identity
    served = ", ".join(d[:12] for d in r.digests) or "-"
    click.echo(f"wrote {r.rows} embeddings in {r.shards} shard(s) to {r.output} ({r.shards_skipped} already done) "
               f"with {ident['model']} ({ident['artifact'] or 'per-node best'}, {served}); run {r.run_id}")
    click.echo(f"  {r.rows_per_s:.1f} rows/s over {r.seconds:.1f} s, {r.cache_hits} from cache, "
               f"{r.truncated} truncated, {r.rejected} rejected")
    for worker, rss in sorted(r.workers.items()):
        click.echo(f"  worker {worker}: peak RSS {rss:.0f} MB")


@cli.command()
@click.option("--stale", is_flag=True, help="Only runs whose vectors were made by something other than what serves now.")
@click.option("--model", "-m", "model_name", help="Only this model's runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def runs(ctx, stale, model_name, as_json):
    """List dataset jobs (zoo embed-dataset): input, artifact, output, status, shards, speed."""
    from .datasets.stale import stale_reason
    from .registry.runs import list_runs, run_dict

    reg = _registry(ctx)
    rows, serving = [], {}
    for r in list_runs(reg, model_name):
        d = run_dict(r)
        d["stale"] = stale_reason(reg, r, serving) if r.status.value == "succeeded" or stale else None
        if not stale or d["stale"]:
            rows.append(d)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no stale runs" if stale else "no dataset runs yet (`zoo embed-dataset INPUT OUTPUT`)")
        return
    for d in rows:
        speed = (d["timings"] or {}).get("rows_per_s")
        click.echo(f"{d['id'][:8]}  {d['status']:<11} {d['model']} {d['artifact'] or 'per-node best'} "
                   f"({(d['store_digest'] or '-')[:12]})  {d['rows']} rows, shards {d['shards_done']}/{d['shards_total']}"
                   f"{f', {speed} rows/s' if speed else ''}  {d['input']} -> {d['output']}")
        if d["stale"]:
            click.echo(f"          stale: {d['stale']}")
        if d["error"]:
            click.echo(f"          error: {d['error']}")


@cli.command("import")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing model of this name.")
@click.pass_context
def import_(ctx, name, directory, force):
    """Register DIRECTORY's checkpoint as NAME, then gate its ONNX/OpenVINO exports as artifacts."""
    from .conversion.portable import import_folder

    done = import_folder(_registry(ctx), name, directory, force=force,
                         progress=lambda step, _f: click.echo(f"  .. {step}", err=True))
    click.echo(f"registered {done['model']} @ {done['revision']}")
    for o in done["outcomes"]:
        click.echo(f"{o.status:<9} {o.target:<24} {_fidelity_line(o.fidelity)}" + (f"  {o.error}" if o.error else ""))
    for line in done["skipped"]:
        click.echo(f"skipped   {line}")
    if any(o.status != "ready" for o in done["outcomes"]):
        raise ZooError("some imported artifacts did not pass; they are recorded but never served")


@cli.command("export")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--artifact", "target", required=True, help="The ready artifact to export (target name or id).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (JSON on stdout).")
@click.pass_context
def export_(ctx, name, directory, target, as_json):
    """Write NAME's artifact as a sentence-transformers folder in DIRECTORY (onnx/..., openvino/...)."""
    from .conversion.portable import export_artifact

    done = export_artifact(_registry(ctx), name, target, directory)
    if as_json:
        _emit({"model": name, **done})
        return
    click.echo(f"exported {name} {done['artifact']} to {done['path']} "
               f"({done['file_name'] or 'the checkpoint at the root'}); {_export_hint(done)}")


def _export_hint(done: dict) -> str:
    """How to load an export with each consumer's own API: commands that work as printed (tested)."""
    hint = _load_hint(done)
    if done.get("ranges_file"):
        hint += (f'; int8/uint8 as zoo serves them: quantize_embeddings(vectors, "int8", '
                 f'ranges=numpy.load("{done["path"]}/{done["ranges_file"]}"))')
    return hint


def _load_hint(done: dict) -> str:
    path, file_name = done["path"], done["file_name"]
    cls = "CrossEncoder" if done.get("pooling") == "logits" else "SentenceTransformer"  # a reranker's export
    if file_name is None:
        return f'load it with {cls}("{path}")'
    if done["format"] == "gguf":
        return (f'load it with llama-cpp-python: Llama(model_path="{path}/{file_name}", embedding=True)'
                f'.embed(texts{", normalize=True" if done["normalize"] else ""}); sentence-transformers does '
                "not read GGUF")
    backend = file_name.split("/")[0]
    also = done["default_file_names"]
    hint = (f'load it with {cls}("{path}", backend="{backend}")'
            + (f' (it is also at {", ".join(also)}, where the defaults look)' if also else "")
            + f', or with model_kwargs={{"file_name": "{file_name}"}}')
    if backend == "openvino" and cls == "SentenceTransformer":
        hint += (f'; LlamaIndex: OpenVINOEmbedding("{path}", pooling="{done["pooling"]}")'
                 if done["pooling"] in ("cls", "mean") else
                 f"; LlamaIndex's OpenVINOEmbedding pools by cls or mean only, not {done['pooling']}")
    return hint


@cli.command()
@click.argument("name", required=False)
@click.option("--artifact", "artifacts", multiple=True, help="Only this artifact (target name or id); repeatable.")
@click.option("--store-url", envvar="ZOO_STORE_URL", required=True,
              help="The shared store: file:///path, s3://bucket/prefix, any fsspec URL (default: $ZOO_STORE_URL).")
@click.pass_context
def push(ctx, name, artifacts, store_url):
    """Upload ready artifacts (of NAME's current revision, or of every model) to a shared store."""
    from .errors import ArtifactNotFound
    from .remote import RemoteStore

    reg = _registry(ctx)
    if name is None:
        if artifacts:
            raise InvalidInput("--artifact needs a model NAME")
        chosen = [(m.name, a) for m in reg.list_models() if m.current_revision for a in m.current_revision.artifacts]
    else:
        resolved = reg.resolve(name)
        chosen = [(resolved.model.name, a) for a in resolved.revision.artifacts]
        if artifacts:
            unknown = [x for x in artifacts if not any(x in (a.target, str(a.id)) for _, a in chosen)]
            if unknown:
                raise ArtifactNotFound(f"{name} has no artifact {unknown[0]!r}; its artifacts: "
                                       f"{', '.join(a.target for _, a in chosen)}")
            chosen = [(n, a) for n, a in chosen if a.target in artifacts or str(a.id) in artifacts]
    ready = [(n, a) for n, a in chosen if a.status.value == "ready" and a.store_digest]
    if not ready:
        raise ArtifactNotFound("nothing to push: no ready artifact" + (f" of {name}" if name else ""))
    done = RemoteStore(store_url).push(reg.store, sorted({a.store_digest for _, a in ready}))
    for model_name, a in ready:
        click.echo(f"pushed {model_name} {a.target} ({a.store_digest[:12]})")
    click.echo(f"{done.artifacts} artifact(s) to {store_url}: {done.blobs_sent} blob(s) uploaded "
               f"({_mb(done.bytes_sent)}), {done.blobs_present} already there")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.pass_context
def apply(ctx, config):
    """Register, alias, prompt and convert what the YAML file CONFIG declares (idempotent)."""
    from .service.deploy import apply_deployment, load_deployment

    deployment = load_deployment(config)  # validated whole before anything changes
    actions = apply_deployment(_registry(ctx), deployment, progress=lambda line: click.echo(f"  .. {line}", err=True),
                               convert_progress=_progress)
    click.echo(f"applied {config}: " + ("; ".join(actions) if actions else "nothing to change"))


def _limit(name: str, kind: type = int) -> click.ParamType:
    """The click type of a serve option, from the ranges YAML and ``ServeSettings`` are checked against."""
    from .service.settings import LIMITS

    lo, hi = LIMITS[name]
    return click.IntRange(lo, hi) if kind is int else click.FloatRange(lo, hi)


def _token_encodings() -> click.Choice:
    from .service.token_encodings import TOKEN_ENCODINGS

    return click.Choice(list(TOKEN_ENCODINGS))


def _check_listen(host: str, port: int) -> None:
    """Bind once before uvicorn does, so a host that is not this machine's, or a port in use, is one line
    (uvicorn would print its own error and exit 3)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise ZooError(f"--host {host}: not an IP address or a name this machine can resolve") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            raise ZooError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --host or --port") from None


@cli.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1: this machine only).")
@click.option("--port", type=_limit("port"), default=None, help="Port (default 8000).")
@click.option("--models", help="Comma-separated models to preload and serve (default: all registered, on demand).")
@click.option("--api-key", envvar="ZOO_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1 endpoints.")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="Apply this YAML deployment, then serve it.")
@click.option("--no-cache", is_flag=True, help="Do not use the vector cache.")
@click.option("--max-inputs", type=_limit("max_inputs"), help="Inputs per request (default and most 2048).")
@click.option("--max-input-chars", type=_limit("max_input_chars"), help="Characters per input (default 100000).")
@click.option("--max-queue", "max_queue_texts", type=_limit("max_queue_texts"),
              help="Texts queued per model before answering 429 (default 8192).")
@click.option("--max-queue-tokens", type=_limit("max_queue_tokens"),
              help="Tokens (after truncation) queued per model before answering 429 (default 1048576).")
@click.option("--max-batch-rows", type=_limit("max_batch_rows"), help="Texts coalesced per engine call (default 256).")
@click.option("--max-batch-tokens", type=_limit("max_batch_tokens"), help="Tokens (summed over texts) per coalesced engine call (default 16384).")
@click.option("--max-wait-ms", type=_limit("max_wait_ms", float), help="Wait for a burst to join when idle (default 2).")
@click.option("--header-timeout-s", type=_limit("header_timeout_s", float),
              help="Seconds a client may take to send a request head before its connection closes (default 10).")
@click.option("--max-body-bytes", type=_limit("max_body_bytes"), help="Request body size limit (default 16 MiB): 413 past it.")
@click.option("--max-image-pixels", type=_limit("max_image_pixels"),
              help="Pixels per image input (default 4096x4096), checked from its header before decoding.")
@click.option("--allow-image-host", "allow_image_hosts", multiple=True,
              help="Fetch image URLs from this host (repeatable; exact name; no redirects). Default: none.")
@click.option("--image-fetch-timeout-s", type=_limit("image_fetch_timeout_s", float),
              help="Seconds to fetch all of one request's allowed image URLs, connect to last byte (default 10).")
@click.option("--token-encoding", type=_token_encodings(),
              help="What token-id inputs are: a tiktoken encoding's ids, decoded to text as OpenAI reads them "
                   "(default cl100k_base), or 'model' (the served model's own vocabulary).")
@click.option("--allow-source-dir", "allow_source_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Allow registering local folders under DIR over HTTP (repeatable; default: none).")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="An Origin that may POST and gets CORS headers (repeatable; default: none).")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="A Host header name to serve besides localhost/127.0.0.1/[::1] (repeatable).")
@click.option("--allow-unauthenticated-management", is_flag=True, default=None,
              help="Keep /v1/zoo/... on when listening beyond loopback without --api-key.")
@click.option("--no-docs", "no_docs", is_flag=True, help="Turn off /docs, /redoc and /openapi.json.")
@click.option("--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve(ctx, host, port, models, api_key, config, no_cache, no_docs, log_level, allow_source_dirs, cors_origins,
          allowed_hosts, allow_image_hosts, **limits):
    """Serve embeddings over HTTP: OpenAI-compatible /v1/embeddings, /v1/models, /health, /metrics."""
    from .service.guard import is_loopback
    from .service.server import ServeSettings, serve as run_server

    options: dict = {}
    if config:
        from .service.deploy import apply_deployment, load_deployment

        deployment = load_deployment(config)
        apply_deployment(_registry(ctx), deployment, progress=lambda line: click.echo(f"  .. {line}", err=True),
                         convert_progress=_progress)
        options = dict(deployment.serve)
        options.setdefault("models", [m.name for m in deployment.models])
        options["artifacts"] = {m.name: m.artifact for m in deployment.models if m.artifact}
        options["token_encodings"] = {m.name: m.token_encoding for m in deployment.models if m.token_encoding}
    options["host"] = host or options.get("host", "127.0.0.1")
    port = port if port is not None else options.pop("port", 8000)
    if models:
        options["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if api_key:
        options["api_key"] = api_key
    if no_cache:
        options["cache"] = False
    if no_docs:
        options["docs"] = False
    for key, given in (("allow_source_dirs", allow_source_dirs), ("cors_origins", cors_origins),
                       ("allowed_hosts", allowed_hosts), ("allow_image_hosts", allow_image_hosts)):
        if given:
            options[key] = [*options.get(key, []), *given]
    options.update({k: v for k, v in limits.items() if v is not None})
    settings = ServeSettings(home=ctx.obj.get("home"), registry_url=ctx.obj.get("registry_url"), **options)
    _check_listen(settings.host, port)
    if settings.cache:
        from .engine.cache import cache_disabled_by_env, check_location

        if os.environ.get("ZOO_CACHE") and not cache_disabled_by_env():
            check_location(os.environ["ZOO_CACHE"])  # a typo is refused now, not at the first request
    reg = _registry(ctx)
    for name in settings.models:
        reg.resolve(name)  # an unknown model is an error now, not at the first request
    if not is_loopback(settings.host) and not settings.api_key:
        click.echo(f"warning: listening on {settings.host} without an API key: anyone who can reach this port can "
                   "embed and read the model list. Set --api-key (or $ZOO_API_KEY). Management endpoints "
                   "(/v1/zoo/...) are " + ("ON (--allow-unauthenticated-management)."
                                           if settings.allow_unauthenticated_management else "off."), err=True)
    click.echo(f"zoo serve: http://{settings.host}:{port} (home {reg.home.root}; models: "
               f"{', '.join(settings.models) or 'all registered, loaded on first use'})", err=True)
    run_server(settings, port=port, log_level=log_level)



def _options_from_environment(command: click.Command, prefix: str = "ZOO_") -> click.Command:
    """Each option of ``command`` also read from ``$ZOO_<OPTION>`` (``--max-batch-rows`` from
    ``$ZOO_MAX_BATCH_ROWS``), as containers and process managers configure servers; the command
    line wins. Options with an environment variable of their own keep it (``--api-key``:
    ``$ZOO_API_KEY``). ``--help`` names each variable."""
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar is None and param.name != "help":
            param.envvar = prefix + param.opts[0].lstrip("-").upper().replace("-", "_")
        if isinstance(param, click.Option):
            param.show_envvar = True
    return command


_options_from_environment(serve)

@cli.group(cls=ZooGroup)
@click.option("--cache", "location", envvar="ZOO_CACHE",
              help="Cache location: a SQLite file or redis:// URL (default: $ZOO_CACHE, else the home's cache.db).")
@click.pass_context
def cache(ctx, location):
    """The persistent vector cache: stats, clear, prune."""
    ctx.obj["cache_location"] = location


def _cache(ctx):
    from .engine.cache import cache_disabled_by_env, open_cache

    location = ctx.obj.get("cache_location")
    if location and cache_disabled_by_env():
        location = None  # ZOO_CACHE=off disables use, not administration of the default cache
    return open_cache(location, home=_registry(ctx).home)


def _rate(r) -> str:
    return "-" if r is None else f"{100 * r:.1f} %"


@cache.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def cache_stats(ctx, as_json):
    """Entries, bytes, hits, misses and hit rate, overall and per model."""
    stats = _cache(ctx).stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    cap = stats.get("max_bytes")
    click.echo(f"{stats['backend']} cache {stats['location']}")
    click.echo(f"  entries {stats['entries']}, {_mb(stats['bytes'])} of {_mb(cap) if cap else 'no cap'}, "
               f"hits {stats['hits']}, misses {stats['misses']}, hit rate {_rate(stats['hit_rate'])}")
    for model, f in sorted(stats["models"].items()):
        click.echo(f"  {model:<28} {f['entries']:>9} entries {_mb(f['bytes']):>11}  hits {f['hits']:>9}  "
                   f"misses {f['misses']:>9}  hit rate {_rate(f['hit_rate'])}")


@cache.command("clear")
@click.option("--model", "-m", "model_name", help="Only this model's vectors (default: all).")
@click.pass_context
def cache_clear(ctx, model_name):
    """Delete cached vectors (and their counters); a damaged cache file is replaced by an empty one."""
    from .engine.cache.sqlite import CacheDamaged, discard

    try:
        removed = _cache(ctx).clear(model_name)
    except CacheDamaged as exc:
        if model_name:
            raise ZooError(f"{exc.path} is damaged, so one model's vectors cannot be picked out; "
                           "run `zoo cache clear` without --model to replace the whole file") from None
        gone = discard(exc.path)
        _cache(ctx)  # a fresh, empty cache in its place
        click.echo(f"the cache file was damaged; removed {', '.join(gone)} and created an empty cache at {exc.path}")
        return
    click.echo(f"removed {removed} cached vectors" + (f" of {model_name}" if model_name else ""))


@cache.command("prune")
@click.option("--max-size", required=True, help="Evict least recently used vectors down to this size, e.g. 500MB.")
@click.pass_context
def cache_prune(ctx, max_size):
    """Evict least recently used vectors until the cache holds at most --max-size."""
    from .engine.cache import parse_size

    result = _cache(ctx).prune(parse_size(max_size))
    click.echo(f"removed {result['removed']} cached vectors; {result['entries']} remain ({_mb(result['bytes'])})")


def main(argv: list[str] | None = None) -> None:
    """The entry point: click's usage errors become one ``error:`` line too (exit 2)."""
    import sys

    try:
        code = cli.main(args=argv, obj={}, standalone_mode=False, prog_name="zoo")
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "zoo"
        click.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
