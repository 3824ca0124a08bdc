"""`python -m harness parity` and `python -m harness inspect`: the commands that build models in
this process (parity: the reference, the other backend and a float64 oracle; inspect: one backend's
graphs), as opposed to the timing commands, which measure in worker processes. `parity` without
--against checks every partner, each in a `parity --against NAME` process of its own (a process
holds one Keras engine)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from backends import REFERENCE, create_backend, parity_partners
from harness.cli.arguments import add_model_args, add_pair_args, add_threads, choices, epilog, subcommand
from harness.cli.native_log import quiet_native_logs
from harness.cli.options import check_memory, check_output_file, note_unchanged, pair_source, say, write_json
from harness.cli.time import spec_source
from harness.errors import EXIT_SKIPPED, BackendUnavailable
from harness.model.spec import PRESETS, resolve_spec
from harness.model.synthetic import synthetic_batch
from harness.model.variants import parse_variants, variant_arms
from harness.parity.checks import check_variant
from harness.ported.api import check_ported
from harness.results.records import InspectRecord, ParityRecord, from_dict
from harness.running.worker import launch, raise_for_exit, read_records, stderr_tail
from harness.suite.suites import SUITES


def cmd_parity(args) -> int:
    if args.torch or args.keras:
        return _parity_of_pair(args)
    specs = [resolve_spec(args.model, args.spec)] if args.model or args.spec else list(PRESETS.values())
    variants = parse_variants(args.variant or SUITES["default"].parity_variants)
    check_output_file(args.json, "--json")
    for spec in specs:  # four models at once: each framework in float32 (1x) and float64 (2x)
        check_memory(args.spec or f"--model {spec.name}", variant_arms(spec, variants), models=6)
    if args.against:
        records = _check_against(args.against, specs, variants, args.threads)
    else:
        records = _check_every_partner(args)
    _print_records(records, args.table)
    failed = [r for r in records if not r.passed]
    info = sum(r.info for r in records)
    if info:
        print(f"({info} 'info' rows: stock optimizers compared for information, not checks; see README)")
    print(f"{len(records) - len(failed) - info} passed, {len(failed)} failed")
    write_json(args.json, records)
    return 1 if failed else 0


def _check_against(name: str, specs, variants, threads: int) -> list[ParityRecord]:
    """Parity of one partner, in this process (BackendUnavailable when it cannot be had here)."""
    reference = create_backend(REFERENCE, threads=threads)  # created first: see backends/__init__.py
    other = create_backend(name, threads=threads)
    records = []
    for spec in specs:
        for variant in variants:
            say(f"parity {REFERENCE}-{other.name} {spec.name} [{variant.label}] ...")
            records += check_variant(reference, other, spec, variant)
    return records


def _check_every_partner(args) -> list[ParityRecord]:
    """Parity of every partner, each in a process of its own (`parity --against NAME`): a process
    holds one Keras engine (backends/_keras_engine.py), so Keras on TensorFlow, torch and JAX never
    meet. A partner that cannot be had here is skipped, with its reason."""
    records, checked = [], 0
    with tempfile.TemporaryDirectory(prefix="harness-parity-") as tmp:
        for name in parity_partners():
            out_path, err_path = Path(tmp) / f"{name}.json", Path(tmp) / f"{name}.stderr"
            argv = [sys.executable, "-m", "harness", "parity", "--against", name, *_model_args(args),
                    *(arg for variant in args.variant or () for arg in ("--variant", variant)),
                    "--threads", str(args.threads), *(("--oversubscribe",) if args.oversubscribe else ()),
                    "--json", str(out_path)]
            say(f"parity {REFERENCE}-{name}: in a process of its own ...")
            with open(os.devnull, "wb") as out, open(err_path, "wb") as err:
                returncode, _ = launch(argv, out, err)
            sys.stderr.write(err_path.read_text(encoding="utf-8", errors="replace"))  # its progress and notes
            if returncode == EXIT_SKIPPED:
                continue  # its last line said why: "skipped: --backend NAME: not available: <reason>"
            if returncode not in (0, 1):  # 1: a check failed, its records written
                raise_for_exit(returncode, stderr_tail(err_path), f"parity against {name}")
            records += [from_dict(record) for record in read_records(out_path)]
            checked += 1
    if not checked:
        raise BackendUnavailable(f"parity: no backend to compare with {REFERENCE} is available here")
    return records


def _model_args(args) -> list[str]:
    if args.spec:
        return ["--spec", args.spec]
    return ["--model", args.model] if args.model else []


def _print_records(records, table: bool = False) -> None:
    """Every check's row with --table; otherwise a summary: a line per check kind (how many passed,
    failed or are information, and the largest relative error against its tolerance), then the
    rows that failed. --json keeps every record either way."""
    if table:
        _print_rows(records)
        return
    kinds: dict[str, list] = {}
    for r in records:
        kinds.setdefault(r.check.split("[")[0], []).append(r)
    width = max((len(kind) for kind in kinds), default=5)
    print(f"{'check kind':{width}} {'checks':>6} {'passed':>6} {'failed':>6} {'info':>5}  worst max_rel (tol)")
    for kind, rows in kinds.items():
        worst = max(rows, key=lambda r: r.max_rel_err / r.tol if r.tol else r.max_rel_err)
        passed = sum(r.passed and not r.info for r in rows)
        failed = sum(not r.passed and not r.info for r in rows)
        print(f"{kind:{width}} {len(rows):6d} {passed:6d} {failed:6d} {sum(r.info for r in rows):5d}  "
              f"{worst.max_rel_err:.1e} ({worst.tol:.0e})")
    failed = [r for r in records if not r.passed and not r.info]
    if failed:
        print("failed checks:")
        _print_rows(failed)
    print(f"(a summary of {len(records)} checks: --table prints every row; --json writes every record)")


def _print_rows(records) -> None:
    print(f"{'backends':22} {'model':12} {'variant':34} {'check':34} {'max_abs':>9} {'max_rel':>9} {'tol':>9}  verdict")
    for r in records:
        print(f"{'-'.join(r.backends):22} {r.model:12} {r.variant:34} {r.check:34} {r.max_abs_err:9.1e} "
              f"{r.max_rel_err:9.1e} {r.tol:9.1e}  {'info' if r.info else 'pass' if r.passed else 'FAIL'}")


def _parity_of_pair(args) -> int:
    """parity --torch MODULE:FUNCTION --keras MODULE:FUNCTION: a user's own model and its port."""
    source = pair_source(args, {"--model": args.model, "--spec": args.spec, "--variant": args.variant,
                                "--against": args.against})
    check_output_file(args.json, "--json")
    pair = source.load()
    result = check_ported(pair, progress=lambda m: say(f"parity {pair.name}: {m}"))
    _print_records(result.records, args.table)
    print(result.summary())
    write_json(args.json, result.records)
    return 0 if result.passed else 1


def cmd_inspect(args) -> int:
    spec = resolve_spec(args.model, args.spec)
    arms = variant_arms(spec, parse_variants(args.variant))
    check_output_file(args.json, "--json")
    note_unchanged(spec, arms)
    check_memory(spec_source(args), arms, models=2)  # the model and its compiled graph's buffers
    backend = create_backend(args.backend, threads=args.threads)
    records = []
    for arm in arms:
        say(f"inspect {args.backend} {spec.name} [{arm.label}] ...")
        x, y = synthetic_batch(arm.spec)
        for count in backend.build(arm.spec).graph_counts(x, y):
            records.append(InspectRecord(args.backend, spec.name, arm.label, count.graph, count.node_count,
                                         count.op_counts))
    print(f"{'variant':34} {'graph':14} {'nodes':>6}")
    for r in records:
        print(f"{r.variant:34} {r.graph:14} {r.node_count:6d}")
    write_json(args.json, records)
    return 0


def add_parsers(sub) -> None:
    backends, _, _ = choices()
    p = subcommand(sub, "parity", quiet_native_logs(cmd_parity),
                   help="check that PyTorch and every other backend compute the same numbers",
                   description="Load the same weights into PyTorch (the reference) and another backend (--against; "
                               "default: each in a process of its own) and compare outputs, losses, gradients, "
                               "optimizer steps and BatchNorm statistics. Exit 0 only if every check passes.",
                   **epilog("parity", "parity --model cnn --variant 'dropout=0,bn=before'",
                            "parity --spec my.toml --json parity.json",
                            "parity --torch examples.residual_cnn:make_torch --keras examples.residual_cnn:make_keras "
                            "--input-shape 3,32,32 --classes 10"))
    add_model_args(p, default_all=True)
    p.add_argument("--against", choices=parity_partners(),
                   help=f"the backend compared with {REFERENCE} (default: every one available here)")
    p.add_argument("--variant", action="append", metavar="V",
                   help="repeatable (default: every value of every variant axis, 12 variants)")
    p.add_argument("--json", metavar="FILE", help="write one record per check (default: none)")
    p.add_argument("--table", action="store_true",
                   help="print every check's row (default: a line per check kind, then the failed checks)")
    add_threads(p)
    add_pair_args(p)

    p = subcommand(sub, "inspect", cmd_inspect, help="count the graph nodes one training step executes",
                   description="torch: autograd nodes of one step, the torch.compile (dynamo) graph and the AOT "
                               "forward/backward graphs. tensorflow: ops of the traced tf.function step. jax and "
                               "keras_jax: the step's jaxpr (top level and inlined) and XLA's optimized HLO. "
                               "keras_torch: autograd nodes of one step.",
                   **epilog("inspect --backend torch --variant dropout=absent --variant dropout=0",
                            "inspect --backend tensorflow --model cnn --variant l2=absent --variant l2=0"))
    add_model_args(p)
    p.add_argument("--backend", required=True, choices=backends, help="the framework to inspect (required)")
    p.add_argument("--variant", action="append", required=True, metavar="V", help="repeatable (at least one)")
    add_threads(p)
    p.add_argument("--json", metavar="FILE", help="write one record per variant and graph (default: none)")
