"""The ``bmc`` command line: one entry point, one subcommand per job.

    bmc bench               BMC loss / decomposition throughput (prints a table)
    bmc limits [FILE]       show the default limits, or a saved limits file
    bmc synth               render a synthetic domain (FreiHAND layout + prepared caches)
    bmc prepare-freihand    convert a FreiHAND-layout folder into a prepared cache
    bmc train               train the 2.5D network (presets tiny / cpu / gpu; torchrun for DDP)
    bmc evaluate            evaluate a trained run on a 3D-labelled cache (writes metrics.json)
    bmc experiment          the synthetic benchmark: all runs x seeds, then the table and figure
    bmc tables              rebuild every table and its figure from results/runs/*/metrics.json
    bmc reproduce           synthetic data + every notebook through papermill (make reproduce)
    bmc prepare-rhd         convert RHD into a prepared cache
    bmc prepare-ho3d        convert HO-3D into a prepared cache
    bmc eval-freihand       score FreiHAND-format predictions like the official benchmark
    bmc fit-limits          fit BMC limits to 3D data (a prepared cache or a .npy), with a figure
    bmc audit               plausibility audit of predictions against BMC limits
    bmc regime              the regime map: where BMC can turn 2D into depth (keypoints, resumable)
    bmc balance             the 2D-loss / BMC pull on the keypoints, measured on a source validation split
    bmc verify-cache        check prepared caches: file sizes, checksums of annotations and image bytes, labels
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _limits(argv: list[str]) -> int:
    from .limits import BMCLimits

    p = argparse.ArgumentParser(prog="bmc limits", description="Show BMC limits as a table.")
    p.add_argument("file", nargs="?", help="a limits JSON written by BMCLimits.save (default: literature limits)")
    p.add_argument("--save", metavar="PATH", help="also write the shown limits to PATH (versioned JSON)")
    a = p.parse_args(argv)
    try:
        limits = BMCLimits.load(a.file) if a.file else BMCLimits.default()
    except (OSError, ValueError) as e:
        print(f"bmc limits: {e}", file=sys.stderr)
        return 2
    print(limits.summary())
    if a.save:
        print(f"wrote {limits.save(a.save)}")
    return 0


def _synth(argv: list[str]) -> int:
    from .data.synth import DOMAINS, PRESETS, generate_dataset

    p = argparse.ArgumentParser(prog="bmc synth", description="Render synthetic hands of one domain into the "
                                "FreiHAND v2 layout and convert them to prepared caches (DIR/cache/{training,evaluation}).")
    p.add_argument("--domain", required=True, choices=sorted(DOMAINS))
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                   help="data size: " + ", ".join(f"{k} = {v[0]} + {v[1]}" for k, v in PRESETS.items()))
    p.add_argument("--num", type=int, help="training samples (overrides the preset)")
    p.add_argument("--num-eval", type=int, help="evaluation samples (overrides the preset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="image side in pixels (a multiple of 8)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default=None, help="render on this torch device (e.g. cuda)")
    p.add_argument("--no-cache", action="store_true", help="write the FreiHAND layout only")
    p.add_argument("--force", action="store_true", help="replace an existing data set in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    n_train, n_eval = PRESETS[a.preset]
    n_train = a.num if a.num is not None else n_train
    n_eval = a.num_eval if a.num_eval is not None else n_eval
    try:
        summary = generate_dataset(a.out, a.domain, n_train, n_eval, a.seed, a.size, a.device,
                                   make_cache=not a.no_cache, progress=not a.quiet, overwrite=a.force)
    except (ValueError, FileExistsError) as e:
        print(f"bmc synth: {e}", file=sys.stderr)
        return 2
    print(f"{a.domain}: {summary['splits']} in {summary['total_s']:.1f} s "
          f"({summary['images_per_s']:.0f} images/s, rendering and writing included) -> {a.out}")
    return 0


def _prepare_freihand(argv: list[str]) -> int:
    from .data.freihand import freihand_to_cache

    p = argparse.ArgumentParser(prog="bmc prepare-freihand",
                                description="Convert a FreiHAND-layout folder (real or synthetic) into a prepared cache.")
    p.add_argument("root", help="folder with training_xyz.json, training/rgb/, ...")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.add_argument("--split", default="training", choices=["training", "evaluation"])
    p.add_argument("--labels", default="3d", choices=["3d", "2d"], help="2d: keep 2D labels only (weak supervision)")
    p.add_argument("--versions", type=int, nargs="+", help="image versions to include (default all)")
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    try:
        out = freihand_to_cache(a.root, a.out, a.split, a.labels, a.versions, overwrite=a.force)
    except (OSError, ValueError) as e:
        print(f"bmc prepare-freihand: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _train(argv: list[str]) -> int:
    from .train import PRESETS, load_config, preset, train

    p = argparse.ArgumentParser(prog="bmc train", description="Train the 2.5D hand pose network.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--config", help="YAML / JSON config file (its keys override the preset)")
    p.add_argument("--source", help="3D-labelled prepared cache")
    p.add_argument("--weak", help="2D-only prepared cache (weak supervision)")
    p.add_argument("--name", help="run name (folder under --out)")
    p.add_argument("--bmc", action="store_true", help="add the biomechanical losses")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="runs folder (default data/runs)")
    p.add_argument("--device")
    a = p.parse_args(argv)
    over = {k: v for k, v in (("source", a.source), ("weak", a.weak), ("name", a.name), ("steps", a.steps),
                              ("seed", a.seed), ("out", a.out)) if v is not None}
    if a.bmc:
        over["use_bmc"] = True
    try:
        cfg = load_config(a.config, **over) if a.config else preset(a.preset, **over)
        run = train(cfg, device=a.device)
    except (OSError, ValueError, FloatingPointError) as e:
        print(f"bmc train: {e}", file=sys.stderr)
        return 2
    print(f"trained {run}")
    return 0


def _evaluate(argv: list[str]) -> int:
    from .evaluate import evaluate_run
    from .limits import BMCLimits

    p = argparse.ArgumentParser(prog="bmc evaluate", description="Evaluate a run on a 3D-labelled prepared cache.")
    p.add_argument("run", help="run folder (with checkpoint.pt)")
    p.add_argument("--cache", required=True, help="evaluation cache with 3D labels")
    p.add_argument("--limits", help="limits JSON for the plausibility metric (default: literature)")
    p.add_argument("--results", default="results/runs", help="where metrics.json goes")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    try:
        m = evaluate_run(a.run, a.cache, a.results, BMCLimits.load(a.limits) if a.limits else None, a.device)
    except (OSError, ValueError) as e:
        print(f"bmc evaluate: {e}", file=sys.stderr)
        return 2
    print(json.dumps(m, indent=1))
    return 0


def _experiment(argv: list[str]) -> int:
    from .experiment import RUNS, run_experiment

    p = argparse.ArgumentParser(prog="bmc experiment", description="The synthetic benchmark (see bmclib.experiment).")
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "gpu"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--runs", nargs="+", help=f"runs to do (default: all of the benchmark's; v1: {', '.join(RUNS)})")
    p.add_argument("--benchmark", help="a pre-registered benchmark file, e.g. results/benchmark_v2.yaml "
                                       "(default: benchmark v1, the runs of bmclib.experiment)")
    p.add_argument("--data", default="data/synth")
    p.add_argument("--runs-dir", default="data/runs")
    p.add_argument("--results", default="results")
    p.add_argument("--device")
    p.add_argument("--force", action="store_true", help="redo finished runs")
    p.add_argument("--jobs", type=int, default=1,
                   help="train this many runs at once on the CPU, cores/jobs threads each (2 on 2 cores: 1.4x the images/s, bmc bench jobs)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="re-evaluate the runs trained to the end (e.g. after a metric was added); train nothing")
    a = p.parse_args(argv)
    try:
        table = run_experiment(a.preset, a.seeds, a.runs, a.data, a.runs_dir, a.results, a.force, device=a.device,
                               jobs=a.jobs, evaluate_only=a.evaluate_only, benchmark=a.benchmark)
    except (ValueError, FileNotFoundError) as e:
        print(f"bmc experiment: {e}", file=sys.stderr)
        return 2
    print(Path(table).read_text())
    return 0


def _prepare_rhd(argv: list[str]) -> int:
    from .data.rhd import rhd_to_cache

    p = argparse.ArgumentParser(prog="bmc prepare-rhd", description="RHD -> prepared cache (right-hand crops).")
    p.add_argument("root", help="unpacked RHD folder (with training/ and evaluation/)")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="training", choices=["training", "evaluation"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--labels", default="3d", choices=["3d", "2d"])
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    try:
        print(f"wrote {rhd_to_cache(a.root, a.out, a.split, a.size, a.labels, a.force)}")
    except (OSError, ValueError) as e:
        print(f"bmc prepare-rhd: {e}", file=sys.stderr)
        return 2
    return 0


def _prepare_ho3d(argv: list[str]) -> int:
    from .data.ho3d import ho3d_to_cache

    p = argparse.ArgumentParser(prog="bmc prepare-ho3d", description="HO-3D v2/v3 -> prepared cache.")
    p.add_argument("root", help="HO-3D folder (with train.txt, evaluation.txt, train/, evaluation/)")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train", choices=["train", "evaluation"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    try:
        print(f"wrote {ho3d_to_cache(a.root, a.out, a.split, a.size, a.force)}")
    except (OSError, ValueError) as e:
        print(f"bmc prepare-ho3d: {e}", file=sys.stderr)
        return 2
    return 0


def _eval_freihand(argv: list[str]) -> int:
    import numpy as np

    from .data.freihand import read_split
    from .evaluate import freihand_keypoint_scores, read_pred_json, write_freihand_report

    p = argparse.ArgumentParser(prog="bmc eval-freihand", description="Score pred.json like the FreiHAND benchmark "
                                "(keypoints; means in cm, AUC over 0-5 cm).")
    p.add_argument("root", help="FreiHAND-layout folder with {split}_xyz.json")
    p.add_argument("pred", help="pred.json ([xyz_list, verts_list]); 'zero' scores the zero predictor")
    p.add_argument("--split", default="evaluation", choices=["training", "evaluation"])
    p.add_argument("--out", default=".", help="folder for scores.txt and pck.png")
    a = p.parse_args(argv)
    try:
        gt = read_split(a.root, a.split)["xyz"]
        if gt is None:
            raise ValueError(f"{a.root}: no {a.split}_xyz.json (FreiHAND's 2022 evaluation archive has it)")
        pred = np.zeros_like(gt) if a.pred == "zero" else read_pred_json(a.pred)[0]
        if pred.shape != gt.shape:
            raise ValueError(f"{a.pred}: field 'xyz_list': {len(pred)} predictions for {len(gt)} ground-truth "
                             f"samples of {a.root} ({a.split})")
        scores = freihand_keypoint_scores(gt, pred, return_curves=True)
        zero = freihand_keypoint_scores(gt, np.zeros_like(gt), return_curves=True)
        path = write_freihand_report(scores, a.out, "prediction" if a.pred != "zero" else "zero", zero)
    except (OSError, ValueError) as e:
        print(f"bmc eval-freihand: {e}", file=sys.stderr)
        return 2
    for k in ("xyz_mean3d", "xyz_auc3d", "xyz_al_mean3d", "xyz_al_auc3d"):
        print(f"{k}: {scores[k]:.4f}   (zero predictor: {zero[k]:.4f})")
    print(f"wrote {path} and {Path(a.out) / 'pck.png'}")
    return 0


def _fit_limits(argv: list[str]) -> int:
    import numpy as np

    from .audit import plot_limits
    from .limits import BMCLimits

    p = argparse.ArgumentParser(prog="bmc fit-limits", description="Fit BMC limits to 3D poses.")
    p.add_argument("data", help="a prepared cache folder (its 3D-labelled samples) or a .npy of (N, 21, 3) joints")
    p.add_argument("--out", required=True, help="limits JSON to write")
    p.add_argument("--coverage", type=float, default=0.999)
    p.add_argument("--margin", type=float, default=0.0, help="dilate polygons by this many radians")
    p.add_argument("--figure", help="hull figure path (default: next to --out, .png)")
    a = p.parse_args(argv)
    try:
        path = Path(a.data)
        if path.is_dir():
            from .data.cache import PreparedCache

            c = PreparedCache(path)
            joints = c.annotations["xyz"][c.annotations["has_3d"]].astype(np.float64)
            if len(joints) == 0:
                raise ValueError(f"{path}: no 3D-labelled samples")
        else:
            if not path.is_file():
                raise FileNotFoundError(f"no such file or folder: {path}")
            joints = np.load(path, allow_pickle=False)
        limits = BMCLimits.fit(joints, coverage=a.coverage, margin=a.margin, source=str(path))
        out = limits.save(a.out)
        fig = plot_limits(limits, joints, a.figure or Path(a.out).with_suffix(".png"))
    except (OSError, ValueError) as e:
        print(f"bmc fit-limits: {a.data}: {e}", file=sys.stderr)
        return 2
    print(limits.summary())
    print(f"wrote {out} and {fig}")
    return 0


def _audit(argv: list[str]) -> int:
    from .audit import audit, load_predictions, write_audit
    from .limits import BMCLimits

    p = argparse.ArgumentParser(prog="bmc audit", description="How many predicted poses break the BMC limits?")
    p.add_argument("pred", help="FreiHAND pred.json, predictions.npz or .npy of (N, 21, 3) joints (right hands)")
    p.add_argument("--limits", help="limits JSON (default: literature limits)")
    p.add_argument("--out", default="audit", help="folder for audit.md and audit.csv")
    p.add_argument("--worst", type=int, default=10)
    a = p.parse_args(argv)
    try:
        result = audit(load_predictions(a.pred), BMCLimits.load(a.limits) if a.limits else None)
        path = write_audit(result, a.out, Path(a.pred).name, a.worst)
    except (OSError, ValueError) as e:
        print(f"bmc audit: {e}", file=sys.stderr)
        return 2
    print(f"{result['n']} poses: {100 * result['implausible_poses']:.1f}% implausible, "
          f"{100 * result['implausible_joints']:.1f}% of joint-angle terms outside; wrote {path}")
    return 0


def _verify_cache(argv: list[str]) -> int:
    from .data.cache import PreparedCache

    p = argparse.ArgumentParser(prog="bmc verify-cache", description="Check prepared caches: the image file's "
                                "length, the checksums of annotations.npz and of the image bytes, and the labels "
                                "(finite, valid intrinsics, points in front of the camera).")
    p.add_argument("caches", nargs="+", help="prepared cache folders")
    a = p.parse_args(argv)
    status = 0
    for path in a.caches:
        try:
            c = PreparedCache(path, verify=True)
            images = c.verify_images()
        except (OSError, ValueError) as e:
            print(f"bmc verify-cache: {e}", file=sys.stderr)
            status = 2
            continue
        note = "image bytes match their checksum" if images else \
            "no image checksum (written by an older bmclib; convert again to add one)"
        print(f"ok {path}: {len(c)} samples of {c.size} px, {int(c.annotations['has_3d'].sum())} with 3D labels; "
              f"annotations and labels valid; {note}")
    return status


def _tables(argv: list[str]) -> int:
    from .tables import build_all

    p = argparse.ArgumentParser(prog="bmc tables", description="Rebuild every table from results/runs/*/metrics.json.")
    p.add_argument("--results", default="results")
    a = p.parse_args(argv)
    try:
        for path in build_all(a.results):
            print(f"wrote {path}")
    except ValueError as e:
        print(f"bmc tables: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"bench": None, "limits": _limits, "synth": _synth, "prepare-freihand": _prepare_freihand,
                "train": _train, "evaluate": _evaluate, "experiment": _experiment, "prepare-rhd": _prepare_rhd,
                "prepare-ho3d": _prepare_ho3d, "eval-freihand": _eval_freihand, "fit-limits": _fit_limits,
                "audit": _audit, "reproduce": None, "tables": _tables, "regime": None, "balance": None,
                "verify-cache": _verify_cache}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nbmc: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    if argv[0] == "bench":
        from .bench import main as bench_main

        return bench_main(argv[1:])
    if argv[0] == "regime":
        from .regime import main as regime_main

        return regime_main(argv[1:])
    if argv[0] == "balance":
        from .balance import main as balance_main

        return balance_main(argv[1:])
    if argv[0] == "reproduce":
        from .reproduce import main as reproduce_main

        return reproduce_main(argv[1:])
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
