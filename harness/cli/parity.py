"""`python -m harness parity` and `python -m harness inspect`: the commands that build models in
this process (parity: the reference, the other backend and a float64 oracle; inspect: one backend's
graphs), as opposed to the timing commands, which measure in worker processes."""

from __future__ import annotations

from backends import REFERENCE, create_backend, parity_partners
from harness.cli.arguments import add_model_args, add_pair_args, add_threads, choices, epilog, subcommand
from harness.cli.options import check_memory, check_output_file, note_unchanged, pair_source, say, write_json
from harness.cli.time import spec_source
from harness.errors import BackendUnavailable
from harness.model.spec import PRESETS, resolve_spec
from harness.model.synthetic import synthetic_batch
from harness.model.variants import parse_variants, variant_arms
from harness.parity.checks import check_variant
from harness.ported.api import check_ported
from harness.results.records import InspectRecord
from harness.suite.suites import SUITES


def cmd_parity(args) -> int:
    if args.torch or args.keras:
        return _parity_of_pair(args)
    specs = [resolve_spec(args.model, args.spec)] if args.model or args.spec else list(PRESETS.values())
    variants = parse_variants(args.variant or SUITES["default"].parity_variants)
    check_output_file(args.json, "--json")
    for spec in specs:  # four models at once: each framework in float32 (1x) and float64 (2x)
        check_memory(args.spec or f"--model {spec.name}", variant_arms(spec, variants), models=6)
    reference = create_backend(REFERENCE, threads=args.threads)  # created first: see backends/__init__.py
    partners = []
    for name in [args.against] if args.against else parity_partners():
        try:
            partners.append(create_backend(name, threads=args.threads))
        except BackendUnavailable as exc:
            if args.against:
                raise
            say(f"skipped: {name}: {exc}")
    if not partners:
        raise BackendUnavailable(f"parity: no backend to compare with {REFERENCE} is available here")
    records = []
    for other in partners:
        for spec in specs:
            for variant in variants:
                say(f"parity {REFERENCE}-{other.name} {spec.name} [{variant.label}] ...")
                records += check_variant(reference, other, spec, variant)
    _print_records(records)
    failed = [r for r in records if not r.passed]
    info = sum(r.info for r in records)
    if info:
        print(f"({info} 'info' rows: stock optimizers compared for information, not checks; see README)")
    print(f"{len(records) - len(failed) - info} passed, {len(failed)} failed")
    write_json(args.json, records)
    return 1 if failed else 0


def _print_records(records) -> None:
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
    _print_records(result.records)
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
    p = subcommand(sub, "parity", cmd_parity, help="check that PyTorch and TensorFlow compute the same numbers",
                   description="Load the same weights into both frameworks and compare outputs, losses, gradients, "
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
    add_threads(p)
    add_pair_args(p)

    p = subcommand(sub, "inspect", cmd_inspect, help="count the graph nodes one training step executes",
                   description="torch: autograd nodes of one step, the torch.compile (dynamo) graph and the AOT "
                               "forward/backward graphs. tensorflow: ops of the traced tf.function step.",
                   **epilog("inspect --backend torch --variant dropout=absent --variant dropout=0",
                            "inspect --backend tensorflow --model cnn --variant l2=absent --variant l2=0"))
    add_model_args(p)
    p.add_argument("--backend", required=True, choices=backends, help="the framework to inspect (required)")
    p.add_argument("--variant", action="append", required=True, metavar="V", help="repeatable (at least one)")
    add_threads(p)
    p.add_argument("--json", metavar="FILE", help="write one record per variant and graph (default: none)")
