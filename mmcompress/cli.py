"""Command line: parse, call the package, map errors to the documented exit codes (docs/cli.md)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mmcompress.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_STAGE_FAILED, EXIT_USAGE, MMCompressError, RecipeError

EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


def _fail(err: MMCompressError) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(err.exit_code)


def _internal(e: Exception, run_dir: Path | None = None) -> None:
    """An exception nobody expected (a bug, or a library failing in a new way): exit 3, traceback kept."""
    import traceback

    text = traceback.format_exc()
    where = ""
    if run_dir is not None and run_dir.is_dir():
        try:
            (run_dir / "error.log").write_text(text)
            where = str(run_dir / "error.log")
        except OSError:
            pass
    where = where or _internal_log(text)
    if not where:  # nowhere to keep it: the user still needs it for a bug report
        click.echo(text, err=True)
        where = "above"
    click.echo(f"error: internal error: {type(e).__name__}: {e}\n(traceback in {where}; please report it)", err=True)
    sys.exit(EXIT_STAGE_FAILED)


def _load(recipe_path: str, overrides: tuple[str, ...] = ()):
    from mmcompress import preflight, recipe

    r = recipe.load(recipe_path, list(overrides))
    preflight.check(r, recipe_path)
    return r


SET_HELP = ("Override a recipe key: --set teacher.hf=/models/clip --set export.variants[1].quantize=dynamic. "
            "Values are YAML; validated like the file.")


class _Guarded(click.Group):
    """One error path for every command (docs/cli.md): MMCompressError -> its exit code and message; a full disk
    or unwritable folder -> the path and the free space; Ctrl-C -> 130; anything else -> 3 with the traceback in
    error.log (or on stderr), never as the last thing the user reads."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors: exit 2 with its message
        except MMCompressError as e:
            _fail(e)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:
            from mmcompress.errors import os_problem

            disk = os_problem(e)
            if disk is not None:
                _fail(disk)
            _internal(e)


def _internal_log(text: str) -> str:
    """Where a traceback goes when there is no run directory: a file in the temp folder (its path is shown)."""
    import tempfile

    try:
        fd, path = tempfile.mkstemp(prefix="mmcompress-error-", suffix=".log")
        with open(fd, "w") as f:
            f.write(text)
        return path
    except OSError:
        return ""


@click.group(cls=_Guarded, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mmcompress")
def cli() -> None:
    """Compress a teacher model for the edge and check the result against it.

    Exit codes: 0 all budgets met; 1 a budget missed; 2 recipe or usage error; 3 a stage failed;
    4 a backend the recipe needs is missing.
    """


@cli.command()
@click.argument("recipe_path", metavar="RECIPE.yaml")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Where artifacts go (default: runs/<name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout instead of the table.")
def run(recipe_path: str, run_dir: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Run every stage of RECIPE.yaml, check the artifacts against the teacher, write the report."""
    from mmcompress import pipeline
    from mmcompress.progress import console

    try:
        r = _load(recipe_path, overrides)
        report = pipeline.execute(r, Path(recipe_path), Path(run_dir) if run_dir else None)
    except MMCompressError as e:
        _fail(e)
    except KeyboardInterrupt:
        click.echo("interrupted: finished stages are kept and the next run reuses them", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if report is None:  # a torchrun rank other than 0: its part (training) is done; rank 0 reports
        sys.exit(EXIT_OK)
    try:
        _show(report, as_json)
        console.print(f"report: {Path(report['run_dir']) / 'report.json'}  ({report['seconds']:.0f} s)")
    except Exception as e:  # report.json is written; showing it failed
        _internal(e, Path(report["run_dir"]))
    sys.exit(_verdict(report))


def _show(report: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console

    from mmcompress.progress import console
    from mmcompress.report.table import render

    Console(width=max(200, console.width)).print(render(report))


def _verdict(report: dict) -> int:
    """0 all budgets met; 1 a budget missed; 3 a variant's runtime crashed or its stage failed (the others are
    reported as usual)."""
    failed = report.get("failed") or {}
    for line in report["failures"]:
        if line.split(":", 1)[0] not in failed:
            click.echo(f"budget missed: {line}", err=True)
    for name, f in failed.items():
        click.echo(f"error: {f['error']}", err=True)
    if failed:
        return EXIT_STAGE_FAILED
    return EXIT_OK if report["passed"] else EXIT_CHECK_FAILED


@cli.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the report itself.")
def inspect(path: str, as_json: bool) -> None:
    """Show the result table of a finished run (PATH: its run directory or report.json); exit code as `run`."""
    p = Path(path)
    p = p / "report.json" if p.is_dir() else p
    try:
        report = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        click.echo(f"error: {p}: not a readable report.json ({e}); pass a run directory or its report.json", err=True)
        sys.exit(EXIT_USAGE)
    from mmcompress.report import SCHEMA_VERSION

    if report.get("schema_version") != SCHEMA_VERSION:
        click.echo(f"error: {p}: report schema {report.get('schema_version')} is not {SCHEMA_VERSION}; use the "
                   f"mmcompress that wrote it", err=True)
        sys.exit(EXIT_USAGE)
    _show(report, as_json)
    sys.exit(_verdict(report))


@cli.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--batch", "batches", multiple=True, type=click.IntRange(min=1), default=(1, 16), show_default=True,
              help="Batch size (repeatable).")
@click.option("--threads", type=click.IntRange(min=1), help="Threads (default: the cores this process may use).")
@click.option("--seq-len", type=click.IntRange(min=1), default=16, show_default=True, help="Text length in tokens.")
@click.option("--max-seconds", type=click.FloatRange(min=1), default=20, show_default=True,
              help="Time budget per (group, batch); rounds stop earlier once every interval is narrow.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
def bench(path: str, batches: tuple[int, ...], threads: int | None, seq_len: int, max_seconds: float,
          as_json: bool) -> None:
    """Latency and throughput of PATH (a .onnx file, a run directory, or a Jetson bundle's built engines) on
    this machine, interleaved."""
    from mmcompress import bench as bench_mod
    from mmcompress.machine import usable_cores

    try:
        if (Path(path) / "bundle.json").is_file():
            result = bench_mod.run_bundle(Path(path), list(batches), threads or usable_cores(), max_seconds)
        else:
            result = bench_mod.run(Path(path), list(batches), threads or usable_cores(), seq_len, max_seconds)
    except MMCompressError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console

    Console(width=max(160, Console().width)).print(bench_mod.table(result))


@cli.command("check")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--onnxruntime", "use_ort", is_flag=True,
              help="Run the bundle's ONNX graphs on ONNX Runtime's CPU instead of its engines (a check of the "
                   "bundle before it goes to the board).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (--onnxruntime).")
@click.option("--rounds", type=click.IntRange(min=5), default=20, show_default=True, help="Timing rounds.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check_cmd(bundle: str, use_ort: bool, threads: int | None, rounds: int, as_json: bool) -> None:
    """Check a Jetson bundle's built engines on this board: accuracy and cosine to the teacher on the shipped
    eval sample, latency, DLA fallback. Exit 1 when a budget is missed."""
    from mmcompress.checks import bundle as checks_bundle
    from mmcompress.machine import usable_cores

    try:
        result = checks_bundle.check(Path(bundle), use_ort, threads or usable_cores(), rounds)
    except MMCompressError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console

        Console(width=max(160, Console().width)).print(checks_bundle.table(result))
    sys.exit(EXIT_OK if result["passed"] else EXIT_CHECK_FAILED)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--baseline", type=click.Path(), help="The accepted run: a baseline folder or run directory.")
@click.option("--update-baseline", "update", type=click.Path(file_okay=False),
              help="Write this run as the baseline folder (report.json + its graphs), atomically, and exit.")
@click.option("--threshold", type=click.FloatRange(min=0.001), default=0.10, show_default=True,
              help="Latency regression threshold (0.10: 10%% slower).")
@click.option("--force", is_flag=True, help="Compare against a baseline from another machine (speedup ratios only).")
@click.option("--max-seconds", type=click.FloatRange(min=1), default=20, show_default=True,
              help="Time budget per latency comparison.")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write a JUnit XML file (one case per check).")
@click.option("--summary", type=click.Path(dir_okay=False), help="Write a Markdown summary (for a PR comment).")
def gate(run_dir: str, baseline: str | None, update: str | None, threshold: float, force: bool, max_seconds: float,
         junit: str | None, summary: str | None) -> None:
    """Compare RUN_DIR with a baseline run: accuracy, fidelity, size, and latency re-measured here; exit 1 on a
    regression."""
    from mmcompress import regression

    try:
        if update:
            click.echo(f"baseline written: {regression.update_baseline(Path(run_dir), Path(update))}")
            return
        if not baseline:
            raise RecipeError("gate: give --baseline DIR (or --update-baseline DIR to write one)")
        result = regression.compare(Path(run_dir), Path(baseline), threshold=threshold, force=force,
                                    max_seconds=max_seconds)
    except MMCompressError as e:
        _fail(e)
    if junit:
        Path(junit).write_text(regression.junit(result))
    if summary:
        Path(summary).write_text(regression.markdown(result))
    for c in result["checks"]:
        click.echo(f"{'ok  ' if c.passed else 'FAIL'}  {c.name}: {c.message}")
    sys.exit(EXIT_OK if result["passed"] else EXIT_CHECK_FAILED)


@cli.command("fingerprint")
@click.argument("path", required=False, type=click.Path(exists=True))
@click.option("--key", "as_key", is_flag=True, help="Print one cache-key-safe word instead of JSON.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads the runs use (default: the usable cores).")
def fingerprint_cmd(path: str | None, as_key: bool, threads: int | None) -> None:
    """The machine fingerprint latency baselines are tied to (CPU model, int8 kind, threads, ONNX Runtime): this
    machine's, or PATH's (a run directory, baseline folder or report.json). CI caches baselines under --key."""
    from mmcompress import regression

    try:
        fp = regression.fingerprint(regression.read(Path(path))[1]) if path else regression.here(threads)
    except MMCompressError as e:
        _fail(e)
    click.echo(regression.key(fp) if as_key else json.dumps(fp, indent=2))


@cli.command()
@click.argument("recipe_path", metavar="RECIPE.yaml")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def validate(recipe_path: str, overrides: tuple[str, ...]) -> None:
    """Check RECIPE.yaml without running anything: keys, types, choices, cross-field rules, backends, the
    teacher's directory or module, every line of the data files and every image header."""
    try:
        r = _load(recipe_path, overrides)
    except MMCompressError as e:
        _fail(e)
    kind = r.teacher.kind
    click.echo(f"{recipe_path}: ok ({r.name}: {len(r.export.variants)} variants, teacher "
               f"{kind}:{getattr(r.teacher, kind)}, data {r.data.source})")


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
def examples(folder: str) -> None:
    """Write tiny models (CLIP, SigLIP, ViT, BERT, sentence-transformers) and data sets (JSONL, image folder)
    into FOLDER, for the bring-your-own recipes in recipes/ (they expect recipes/examples)."""
    from mmcompress import examples as ex

    for name, path in ex.write_all(Path(folder)).items():
        click.echo(f"{name:<26} {path}")


@cli.group()
def zoo() -> None:
    """Built-in teachers."""


@zoo.command("list")
def zoo_list() -> None:
    """Built-in teachers, and whether each is already trained in the cache."""
    from mmcompress.models import zoo as z

    for name, entry in z.REGISTRY.items():
        state = (f"built: {z.cache_dir(entry)}" if z.is_built(entry) else
                 "not built (installed from the copy the package ships on first use)" if z.shipped_matches(entry)
                 else "not built (trains on first use)")
        click.echo(f"{name:<18} {entry.description}\n{'':<18} {state}")


@zoo.command("build")
@click.argument("name")
@click.option("--force", is_flag=True, help="Retrain even if a cached or shipped copy exists.")
@click.option("--ship", is_flag=True, help="Then copy it into the package (mmcompress/models/shipped/NAME, fp16 "
                                           "weights) so that fresh installs skip training. For maintainers.")
def zoo_build(name: str, force: bool, ship: bool) -> None:
    """Train (or reuse) the zoo teacher NAME and print its directory."""
    from mmcompress.models import zoo as z
    from mmcompress.progress import bar

    if name not in z.REGISTRY:
        click.echo(f"error: {name!r} is not a zoo teacher; choose one of {', '.join(z.REGISTRY)}", err=True)
        sys.exit(EXIT_USAGE)
    with bar(f"training {name}") as update:
        path = z.build(name, lambda s, n, loss: update(s, n, f"loss {loss:.3f}"), force=force)
    click.echo(str(path))
    if ship:
        from mmcompress.machine import fingerprint

        fp = fingerprint()
        facts = {"command": f"mmcompress zoo build {name} --force --ship", "cpu": fp["cpu"], "isa": fp["isa"],
                 "versions": fp["versions"]}
        try:
            click.echo(str(z.ship(name, facts)))
        except RuntimeError as e:  # the cached copy was itself installed from the package: nothing new to ship
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)


@cli.command("list")
def list_backends() -> None:
    """Backends available on this machine, and the machine's int8 instruction sets."""
    from mmcompress import preflight
    from mmcompress.machine import fingerprint

    fp = fingerprint()
    click.echo(f"cpu: {fp['cpu']} ({fp['cores']} cores); int8: {fp['int8_path']}; isa: {', '.join(fp['isa'])}")
    for mod, ok in preflight.available().items():
        click.echo(f"{mod:<14} {'installed' if ok else 'missing'}")


def main() -> None:
    cli(prog_name="mmcompress")


if __name__ == "__main__":
    main()
