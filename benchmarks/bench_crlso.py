"""CR-LSO measurements (issue 5) on the real NAS-Bench-201 tables.

    python -m benchmarks.bench_crlso all        # everything below, then the report
    python -m benchmarks.bench_crlso latent     # latent size: round trip + ICNN tau
    python -m benchmarks.bench_crlso heads      # ICNN vs MLP tau, PCA with / without regularisation
    python -m benchmarks.bench_crlso study      # where the ICNN loses at the tau study's setting (issue 35)
    python -m benchmarks.bench_crlso report     # benchmarks/results/crlso.{json,md}

The search itself (20 seeds per NB201 protocol at 100 / 150 / 300 queries, beside random search and
regularized evolution in the same run) is measured by `lightning-nas report` (benchmarks/REPORT.md).

Each part is saved under benchmarks/runs/crlso/parts/ as it finishes and skipped when run again
(unless --redo), so the parts can run separately on a busy machine; `report` merges them, over the
committed benchmarks/results/crlso.json, into benchmarks/results/crlso.{json,md,png}.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics.functional.regression import kendall_rank_corrcoef

from benchmarks.report.common import DEFAULT_SHARED, ROOT, add_script_arguments, script_folders, shared_tables

RESULTS = ROOT / "benchmarks" / "results"  # or under --out
OUT_JSON = RESULTS / "crlso.json"
RUNS = ROOT / "benchmarks" / "runs" / "crlso"
PARTS, FITS = RUNS / "parts", RUNS / "fits"  # one file per part: parts may run in parallel

# the CIFAR-10 protocol (configs/protocols/nb201-cifar10.yaml): what the fits here learn from
SHARED, TABLES, TARGET = DEFAULT_SHARED, ["nb201_200ep.csv.gz"], "cifar10_valid_valid_acc"

# the settings of configs/fits/nb201/crlso.yaml
FIT = dict(latent_dim=16, hidden=128, decoder_hidden=128, head_hidden=256, head_layers=3, beta=0.005,
           prediction_weight=0.01, posterior_noise=0.01, semi_epochs=200, semi_batch_size=32, semi_lr=1e-3, lr=1e-3)
FIT_EPOCHS = 4
NUM_LABELLED = 50


# --- helpers -------------------------------------------------------------------------------
def load_part(name: str) -> dict[str, Any] | None:
    path = PARTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def save_part(name: str, value: Any) -> None:
    PARTS.mkdir(parents=True, exist_ok=True)
    (PARTS / f"{name}.json").write_text(json.dumps(value, indent=1, default=float))


def load_results() -> dict[str, Any]:
    """The committed results, updated by every part finished here (what the report and crlso.json hold)."""
    committed = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {}
    return {**committed, **{p.stem: json.loads(p.read_text()) for p in sorted(PARTS.glob("*.json"))}}


def fit(seed: int, pool_holdout: float = 0.0, epochs: int = FIT_EPOCHS, num_labelled: int = NUM_LABELLED,
        **overrides: Any):
    """A fitted model, from the fit cache when the same fit was made before (CPU is scarce)."""
    from lightning_nas.data.gvae import GVAEDataModule
    from lightning_nas.predictors.crlso import CRLSOModel
    from lightning_nas.training import quiet_trainer

    L.seed_everything(seed, verbose=False)
    dm = GVAEDataModule([str(SHARED / t) for t in TABLES], TARGET, num_labelled=num_labelled, seed=seed,
                        batch_size=64, max_val=500, pool_holdout=pool_holdout)
    settings = {**FIT, **overrides}
    model = CRLSOModel("nb201", **settings, max_epochs_hint=epochs)
    key = json.dumps(["cifar10", seed, pool_holdout, epochs, num_labelled, settings], sort_keys=True)
    cached = FITS / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
    if cached.is_file():
        dm.setup()
        state = torch.load(cached, weights_only=True)
        model.load_state_dict(state["model"])
        model.semi_val_tau = state["semi_tau"]
        model.pool_y = state["pool_y"]
        return model.eval(), dm, state["fit_s"]
    trainer = quiet_trainer(epochs)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    FITS.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "semi_tau": model.semi_val_tau, "pool_y": model.pool_y,
                "fit_s": seconds, "key": key}, cached)
    return model.eval(), dm, seconds


def round_trip(model, archs) -> dict[str, float]:
    decoded = model.gvae.decode(model.embed(archs))
    return {
        "archs": len(archs),
        "valid_rate": float(np.mean([d.status == "valid" for d in decoded])),
        "decodable_rate": float(np.mean([d.arch is not None for d in decoded])),
        "exact_rate": float(np.mean([d.arch == a for d, a in zip(decoded, archs)])),
    }


def tau(pred: torch.Tensor, y: np.ndarray) -> float:
    return float(kendall_rank_corrcoef(pred.detach().float().cpu(), torch.as_tensor(y, dtype=torch.float32)))


def heldout_tau(model, dm) -> float:
    archs, y = dm.archs(dm.heldout_rows), dm.heldout_y
    with torch.no_grad():
        return tau(model.predicted(model.embed(archs)), y)


# --- parts ---------------------------------------------------------------------------------
def part_latent(sizes: list[int], seed: int) -> None:
    """Latent size by measurement: round trip on held-out archs (20% of the unlabelled space kept
    out of the G-VAE's pool) and the joint ICNN's Kendall tau on every unlabelled architecture.
    For the configured size, also ICNN vs MLP on the same latent and the latents for the figure."""
    from lightning_nas.nn.icnn import ICNN, MLPHead

    part = load_part("latent") or {"seed": seed, "protocol": "cifar10", "num_labelled": NUM_LABELLED, "rows": []}
    for d in sizes:
        if any(r["latent_dim"] == d for r in part["rows"]):
            continue
        model, dm, seconds = fit(seed, pool_holdout=0.2, latent_dim=d)
        row = {"latent_dim": d, **round_trip(model, dm.pool_holdout_archs), "icnn_tau": heldout_tau(model, dm),
               "semi_tau": model.semi_val_tau, "fit_s": round(seconds, 1)}
        if d == FIT["latent_dim"]:
            save_part("heads_regularized", {"joint_head_tau": row["icnn_tau"], **head_comparison(model, dm, seed, ICNN, MLPHead)})
            save_latents("regularized", model, dm)
        print(row, flush=True)
        part["rows"].append(row)
        save_part("latent", part)


def part_heads(seed: int) -> None:
    """The unconstrained G-VAE (head on a detached latent) beside the regularised one: tau and the
    PCA figure (paper Fig. 2). The regularised latents come from `part_latent`."""
    if load_part("heads_unconstrained") is None:
        model, dm, _ = fit(seed, pool_holdout=0.2, regularize=False)
        save_part("heads_unconstrained", {"joint_head_tau": heldout_tau(model, dm)})
        save_latents("unconstrained", model, dm)
    names = [n for n in ("unconstrained", "regularized") if (PARTS / f"latents_{n}.npz").is_file()]
    latents = {n: tuple(np.load(PARTS / f"latents_{n}.npz")[k] for k in ("z", "y")) for n in names}
    print("figure:", pca_figure(latents), flush=True)


#: the report's tau study on NB201 at 1 % (benchmarks/report/tau.py): 156 labels, tau over every other cell
STUDY_LABELLED, STUDY_SEEDS = 156, (100, 101, 102)  # tuning seeds, never the report's (0-4)
#: one change at a time against the recipe (configs/fits/nb201/crlso.yaml)
STUDY_CHANGES = {"latent 32": {"latent_dim": 32}, "latent 64": {"latent_dim": 64},
                 "prediction weight 0.1": {"prediction_weight": 0.1}, "prediction weight 1": {"prediction_weight": 1.0},
                 "12 joint epochs": {"epochs": 12}}


def part_study(seeds: tuple[int, ...] = STUDY_SEEDS, changes: list[str] | None = None) -> None:
    """Issue 35 item 2: where CR-LSO's ICNN loses against a GIN on the same labels, at the tau study's
    setting. Per seed, the recipe's joint ICNN beside (a) its pseudo-labeller (the semi-supervised GNN)
    on the same cells, (b) fresh ICNN / MLP heads fitted to the same pseudo-labels on the frozen latent
    (the cost of convexity), (c) a fresh ICNN on the true labels alone (what the pseudo-labels add),
    (d) the report's GIN on the same labels; then one change of the recipe at a time."""
    from lightning_nas.nn.icnn import ICNN, MLPHead
    from lightning_nas.predictors.evaluate import config_tau

    part = load_part("study") or {"num_labelled": STUDY_LABELLED, "rows": {}}
    for seed in seeds:
        row = part["rows"].setdefault(str(seed), {})
        if "recipe" not in row:
            model, dm, seconds = fit(seed, num_labelled=STUDY_LABELLED)
            archs, y = dm.archs(dm.heldout_rows), dm.heldout_y
            row.update(recipe=heldout_tau(model, dm), heldout=len(archs), fit_s=round(seconds, 1),
                       pseudo_labeller=tau(model.semi_predict(archs), y),
                       **{f"fresh_{k}": v for k, v in head_comparison(model, dm, seed, ICNN, MLPHead).items()},
                       true_labels_icnn=labels_only_icnn(model, dm, seed))
            gin = config_tau(ROOT / "configs" / "fits" / "nb201" / "gin.yaml", STUDY_LABELLED, seed, 100,
                             {"benchmark": [str(SHARED / t) for t in TABLES], "target": TARGET})
            row["gin"] = gin["tau"]
            save_part("study", part)
            print(seed, row, flush=True)
        for name in changes or list(STUDY_CHANGES):
            if name not in row:
                settings = dict(STUDY_CHANGES[name])
                model, dm, _ = fit(seed, num_labelled=STUDY_LABELLED, **settings)
                row[name] = heldout_tau(model, dm)
                save_part("study", part)
                print(seed, name, row[name], flush=True)


def labels_only_icnn(model, dm, seed: int, epochs: int = 200) -> float:
    """A fresh ICNN of the recipe's size fitted to the true (z-scored) labels alone on the frozen latent."""
    from lightning_nas.nn.icnn import ICNN

    z, y = model.embed(dm.train_archs), model.standardise(torch.as_tensor(dm.train_y, dtype=torch.float32))
    torch.manual_seed(seed)
    head = ICNN(z.shape[1], model.hparams.head_hidden, model.hparams.head_layers)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(epochs):
        for index in torch.randperm(len(z)).split(32):
            loss = torch.nn.functional.mse_loss(-head(z[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            head.project_()
    with torch.no_grad():
        return tau(-head(model.embed(dm.archs(dm.heldout_rows))), dm.heldout_y)


def save_latents(name: str, model, dm) -> None:
    PARTS.mkdir(parents=True, exist_ok=True)
    np.savez(PARTS / f"latents_{name}.npz", z=model.embed(dm.archs(dm.heldout_rows)).numpy(), y=dm.heldout_y)


def head_comparison(model, dm, seed: int, icnn_class, mlp_class, epochs: int = 20) -> dict[str, float]:
    """Fresh heads of the same size fitted to the same pseudo-labels on the frozen latent."""
    z_pool = model.embed(dm.pool_archs)
    y_pool = model.pool_y.detach()
    z_test, y_test = model.embed(dm.archs(dm.heldout_rows)), dm.heldout_y
    result = {}
    for name, cls in (("icnn", icnn_class), ("mlp", mlp_class)):
        torch.manual_seed(seed)
        head = cls(z_pool.shape[1], model.hparams.head_hidden, model.hparams.head_layers)
        sign = -1.0 if name == "icnn" else 1.0
        optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
        for _ in range(epochs):
            for index in torch.randperm(len(z_pool)).split(256):
                loss = torch.nn.functional.mse_loss(sign * head(z_pool[index]), y_pool[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                head.project_()
        with torch.no_grad():
            result[f"{name}_tau"] = tau(sign * head(z_test), y_test)
    return result


def pca_figure(latents: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(latents), figsize=(5 * len(latents), 4.2), dpi=80)
    for ax, (name, (z, y)) in zip(axes, latents.items()):
        centred = z - z.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        keep = y > np.percentile(y, 5)  # the few collapsed cells (10% accuracy) would flatten the colour scale
        points = ax.scatter(xy[keep, 0], xy[keep, 1], c=y[keep], s=2, cmap="viridis")
        ax.set_title(f"{name} latent space (PCA)")
        fig.colorbar(points, ax=ax, label="cifar10_valid_valid_acc")
    fig.tight_layout()
    path = RESULTS / "crlso.png"
    fig.savefig(path)
    plt.close(fig)
    return path


# --- report --------------------------------------------------------------------------------
def part_report() -> None:
    results = load_results()
    lines = ["# CR-LSO on NAS-Bench-201 (measured)", "",
             "Produced by `python -m benchmarks.bench_crlso` on a shared 2-core CPU; all numbers from the",
             "real NB201 tables in ../shared/benchmarks.", "",
             f"Settings: those of `configs/fits/nb201/crlso.yaml`: {NUM_LABELLED} labelled architectures drawn by the",
             f"seed, a semi-supervised GNN labels the rest, G-VAE + ICNN fitted jointly for {FIT_EPOCHS} epochs.", ""]
    if "latent" in results:
        part = results["latent"]
        lines += [f"## Latent size (CIFAR-10 labels, {part['num_labelled']} labelled, seed {part['seed']}; "
                  "20% of the unlabelled space held out of the G-VAE's pool)", "",
                  "| latent dim | held-out archs | valid decodes | exact round trip | ICNN tau (unlabelled) | semi-sup. GNN tau | fit s |",
                  "|---|---|---|---|---|---|---|"]
        for r in part["rows"]:
            lines.append(f"| {r['latent_dim']} | {r['archs']} | {100 * r['valid_rate']:.2f}% | {100 * r['exact_rate']:.2f}% "
                         f"| {r['icnn_tau']:.3f} | {r['semi_tau']:.3f} | {r['fit_s']} |")
        lines.append("")
    if "heads_regularized" in results:
        h, u = results["heads_regularized"], results.get("heads_unconstrained", {})
        lines += ["## ICNN vs MLP in the same latent space (CIFAR-10 labels, Kendall tau on the unlabelled archs)", "",
                  "| predictor | tau |", "|---|---|",
                  f"| ICNN trained jointly with the G-VAE (regularised latent) | {h['joint_head_tau']:.3f} |",
                  f"| fresh ICNN fitted to the same pseudo-labels on the frozen latent | {h['icnn_tau']:.3f} |",
                  f"| fresh MLP (same depth / width) on the same latent and labels | {h['mlp_tau']:.3f} |"]
        if u:
            lines.append(f"| ICNN on the unconstrained latent (head on a detached latent) | {u['joint_head_tau']:.3f} |")
        if (RESULTS / "crlso.png").is_file():
            lines += ["", "![latent space, PCA](crlso.png)"]
        lines.append("")
    if "study" in results:
        lines += study_lines(results["study"])
    lines += ["## Search", "",
              "Search at 100 / 150 / 300 queries over 20 seeds on the three NB201 protocols, beside random search",
              "and regularized evolution in the same run, with every decode counted: `lightning-nas report`",
              "([../REPORT.md](../REPORT.md)); each run's `results.json` holds the decode counts.", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps(results, indent=1, default=float))
    (RESULTS / "crlso.md").write_text("\n".join(lines))
    print("\n".join(lines))


def study_lines(part: dict[str, Any]) -> list[str]:
    """The `study` part as a table: one row per predictor or change, one column per tuning seed."""
    seeds = sorted(part["rows"], key=int)
    rows = [("recipe", "joint ICNN, the recipe (configs/fits/nb201/crlso.yaml): the tau study's CR-LSO"),
            ("pseudo_labeller", "its pseudo-labeller alone (the semi-supervised GNN on the labels)"),
            ("fresh_icnn_tau", "fresh ICNN fitted to the same pseudo-labels on the frozen latent"),
            ("fresh_mlp_tau", "fresh MLP (same size) on the same latent and pseudo-labels: convexity's cost"),
            ("true_labels_icnn", f"fresh ICNN on the {part['num_labelled']} true labels alone, frozen latent"),
            ("gin", "GIN on the same labels (configs/fits/nb201/gin.yaml, 100 epochs)"),
            *((name, f"the recipe with {name}") for name in STUDY_CHANGES)]
    lines = [f"## Where the ICNN loses (issue 35): NB201, {part['num_labelled']} labels, tau over every other cell", "",
             "The tau study's setting (benchmarks/report/tau.py) on tuning seeds " + ", ".join(seeds) +
             "; the first six rows share each seed's fit, the changes are fits of their own.", "",
             "| predictor | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |", "|---|" + "---|" * (len(seeds) + 1)]
    for key, label in rows:
        values = [part["rows"][s].get(key) for s in seeds]
        if all(v is None for v in values):
            continue
        known = [v for v in values if v is not None]
        lines.append(f"| {label} | " + " | ".join("—" if v is None else f"{v:.3f}" for v in values)
                     + f" | {np.mean(known):.3f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["latent", "heads", "study", "report", "all"])
    parser.add_argument("--latent-sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--redo", action="store_true", help="forget every finished part and measure again")
    add_script_arguments(parser)
    args = parser.parse_args(argv)
    global RESULTS, OUT_JSON, RUNS, PARTS, FITS, SHARED
    RESULTS, RUNS = script_folders(args, "crlso")
    OUT_JSON, PARTS, FITS, SHARED = RESULTS / "crlso.json", RUNS / "parts", RUNS / "fits", shared_tables(args.shared)
    torch.set_num_threads(1)
    todo = ["latent", "heads", "study"] if args.part == "all" else [args.part]
    if args.redo:
        for path in PARTS.glob("*"):
            path.unlink()
    if "latent" in todo:
        part_latent(args.latent_sizes, seed=0)
    if "heads" in todo:
        part_heads(seed=0)
    if "study" in todo:
        part_study()
    part_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
