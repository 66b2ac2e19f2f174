"""Combine trained models into one: `python -m ml.ensemble runs/a runs/b --out models/emnist47x2`.

Networks trained apart make different mistakes, so the mean of their logits reads better than
any one of them (README, "The models"); the result is an ordinary model folder, evaluated on
the test part of its members' split like a freshly trained one.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from ml.artifact import LoadedModel, ModelSpec, load_model, save_model
from ml.data import DEFAULT_DATA_DIR, load_split
from ml.evaluate import evaluate, write_report
from ml.model import ARCHITECTURE, CharCNN, Ensemble

SAME_INPUT = ("height", "width", "orientation", "ink", "scale")


def combine(members: list[LoadedModel], name: str) -> tuple[Ensemble, ModelSpec]:
    """One ensemble network and its spec; the first member's normalization becomes the input's."""
    first = members[0].spec
    for member in members:
        if not isinstance(member.network, CharCNN):
            raise ValueError(f"{member.path} is itself an ensemble; give its members instead")
        if member.spec.labels != first.labels:
            raise ValueError(f"{member.path}: labels differ from {members[0].path}'s")
        own = member.spec.input
        differing = [key for key in SAME_INPUT if getattr(own, key) != getattr(first.input, key)]
        if differing:
            raise ValueError(f"{member.path}: input {', '.join(differing)} differ from the first's")
    ensemble = Ensemble(first.num_classes, len(members))
    for i, member in enumerate(members):
        ensemble.members[i].load_state_dict(member.network.state_dict())
        own = member.spec.input
        ensemble.input_scale[i] = first.input.std / own.std
        ensemble.input_shift[i] = (first.input.mean - own.mean) / own.std
    spec = ModelSpec(
        name=name,
        architecture=ARCHITECTURE,
        members=len(members),
        labels=first.labels,
        input=first.input,
        training={
            "split": first.training.get("split"),
            "files": {k: v for m in members for k, v in m.spec.training.get("files", {}).items()},
            "members": [{**m.spec.training, "metrics": m.spec.metrics} for m in members],
        },
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return ensemble.eval(), spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="+", type=Path, help="model folders trained apart")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    if len(args.members) < 2:
        parser.error("an ensemble needs at least two members")
    try:
        network, spec = combine([load_model(path) for path in args.members], args.out.name)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    save_model(args.out, network, spec)
    report = evaluate(args.out, load_split(args.data_dir, str(spec.training["split"]), "test"))
    write_report(args.out, report, args.out / "report.json")
    print(
        f"{args.out}: {spec.members} members; accuracy {report['accuracy']:.4f}, "
        f"macro accuracy {report['macro_accuracy']:.4f} on {report['split']} test"
    )


if __name__ == "__main__":
    main()
