"""The precision gate: its arithmetic against independent computations, a case where bf16 must
flip an outcome label and one where it cannot, fp32 against itself, the bf16 emulations, and
bf16 on a trained model (replacing a 9-image "loss within 0.05" check)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from interpsharp.checkpoints import save_classifier
from interpsharp.cli import main
from interpsharp.commands.check_precision import CANDIDATE_CHOICES
from interpsharp.data import EvalCache, load_cache, write_cache
from interpsharp.evaluate import normalize_images
from interpsharp.interpolate import InterpolationPath, interpolate
from interpsharp.metrics import OutcomeThresholds, path_metrics
from interpsharp.precision import (
    FORMS,
    SHARPNESS_COLUMNS,
    Bf16DeltaPath,
    Bf16RoundedPath,
    PrecisionGate,
    SharpnessSettings,
    applied,
    bf16_activations,
    bf16_round,
    compare_labels,
    compare_precisions,
    gate_verdicts,
    resolve_form,
    paired_flips,
    sharpness_z,
)
from interpsharp.sharpness import general_sharpness
from interpsharp.subsets import select_subset
from interpsharp.tables import read_tsv

from conftest import tiny_classifier

ALPHAS = [0.0, 0.05, 0.2, 0.5, 1.0]
GATE = PrecisionGate(OutcomeThresholds(delta=0.1, xi=0.02, tolerance=0.001))
CPU = torch.device("cpu")
NO_SHARPNESS = pd.DataFrame(columns=list(SHARPNESS_COLUMNS))

# -- a trained pair on a task with a shift --------------------------------------------------------

PALETTE = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [60, 200, 200]])


def _images(n: int, seed: int, noise: float, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 16 px images: a class colour plus a brighter class quadrant; ``shift`` darkens."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(PALETTE), n)
    images = PALETTE[labels][:, :, None, None] + shift + rng.normal(0, noise, (n, 3, 16, 16))
    for i, k in enumerate(labels):
        r, c = divmod(int(k) % 4, 2)
        images[i, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 25
    return np.clip(images, 0, 255).astype(np.uint8), labels


def _train(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, steps: int, lr: float, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = normalize_images(torch.from_numpy(images), model.preprocess), torch.from_numpy(labels)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=generator)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _cache(path: Path, images: np.ndarray, labels: np.ndarray) -> EvalCache:
    write_cache(path, images, labels, [f"class {i}" for i in range(len(PALETTE))], meta={"name": path.name})
    return load_cache(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[dict, dict, dict[str, EvalCache]]:
    """theta_0 = 15 steps of training (a weak "zero-shot" model), theta_1 = 120 more: about 90%
    -> 100% in distribution, a flat path under the shift (seconds on one core)."""
    root = tmp_path_factory.mktemp("trained")
    model = tiny_classifier(seed=3)
    train_images, train_labels = _images(1000, seed=0, noise=160)
    theta_0 = _train(model, train_images, train_labels, steps=15, lr=1e-3, seed=0)
    theta_1 = _train(model, train_images, train_labels, steps=120, lr=3e-3, seed=1)
    caches = {"id": _cache(root / "id", *_images(300, seed=5, noise=160)),
              "shift": _cache(root / "shift", *_images(300, seed=6, noise=200, shift=-60))}
    return theta_0, theta_1, caches


def _independent(theta_0: dict, theta_1: dict, images: np.ndarray, labels: np.ndarray, alpha: float,
                 dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Per-image correctness, cross-entropy and logits of theta(alpha) in ``dtype``, written
    without the precision module: a fresh model, one batch, torch ops directly."""
    model = tiny_classifier(seed=0)
    model.load_state_dict(interpolate(theta_0, theta_1, alpha))
    model.to(dtype).eval()
    with torch.no_grad():
        logits = model(normalize_images(torch.from_numpy(np.array(images)), model.preprocess, dtype=dtype)).float()
    y = torch.from_numpy(np.asarray(labels))
    return (logits.argmax(1) == y).numpy(), F.cross_entropy(logits, y, reduction="none").double().numpy(), logits


def _check(theta_0: dict, theta_1: dict, caches: dict, **kwargs):
    kwargs.setdefault("batch_size", max(len(c) for c in caches.values()))
    return compare_precisions(tiny_classifier(seed=0), InterpolationPath(theta_0, theta_1), caches, kwargs.pop("alphas", ALPHAS),
                              device="cpu", progress=False, gate=GATE, **kwargs)


# -- arithmetic -----------------------------------------------------------------------------------

def test_flips_losses_and_labels_on_a_trained_model_match_an_independent_computation(trained):
    theta_0, theta_1, caches = trained
    report = _check(theta_0, theta_1, caches, candidates=["bf16"])
    assert len(report.path) == len(caches) * len(ALPHAS)
    tables = {"fp32": [], "bf16": []}
    for row in report.path.itertuples():
        cache = caches[row.dataset]
        c32, l32, _ = _independent(theta_0, theta_1, cache.images, cache.labels, row.alpha, torch.float32)
        cbf, lbf, _ = _independent(theta_0, theta_1, cache.images, cache.labels, row.alpha, torch.bfloat16)
        lost = sum(1 for a, b in zip(c32, cbf) if a and not b)
        gained = sum(1 for a, b in zip(c32, cbf) if b and not a)
        assert (row.lost, row.gained, row.flips, row.n) == (lost, gained, lost + gained, len(c32))
        assert row.acc_reference == c32.mean() and row.acc_candidate == cbf.mean()
        assert row.top1_diff_points == pytest.approx(100 * (cbf.mean() - c32.mean()), abs=1e-9)
        assert row.loss_reference == pytest.approx(l32.mean(), rel=1e-6)
        assert row.loss_diff == pytest.approx(lbf.mean() - l32.mean(), abs=1e-6)
        # What bf16 on a trained model must at least do (the old 9-image test's job): a few flips
        # at most, the loss within a hundredth of a nat. A stale or uncast weight breaks this.
        assert row.flip_rate <= 0.05 and abs(row.loss_diff) < 0.01
        for name, correct, loss in (("fp32", c32, l32), ("bf16", cbf, lbf)):
            tables[name] += [("m", row.dataset, row.alpha, "accuracy", correct.mean(), len(correct)),
                             ("m", row.dataset, row.alpha, "loss", loss.mean(), len(correct))]
    metrics = {name: path_metrics(pd.DataFrame(rows, columns=["model", "dataset", "alpha", "metric", "value", "n"])
                                  .drop_duplicates(["dataset", "alpha", "metric"]), GATE.thresholds).set_index("dataset")
               for name, rows in tables.items()}
    labels = report.labels.set_index("dataset")
    for dataset in caches:
        for key in ("outcome", "alpha_star", "has_barrier"):
            assert labels.loc[dataset, f"{key}_reference"] == metrics["fp32"].loc[dataset, key]
            assert labels.loc[dataset, f"{key}_candidate"] == metrics["bf16"].loc[dataset, key]
    # The trained pair gains in distribution; the verdicts follow the numbers.
    assert labels.loc["id", "outcome_reference"] in ("gain", "high_gain")
    path = report.path
    assert report.passed("bf16", "top1") == bool((path["flips"] <= 0.001 * path["n"]).all())
    assert report.passed("bf16", "outcome_labels") == bool(report.labels["labels_unchanged"].all())


def test_fp32_against_itself_differs_nowhere(trained):
    theta_0, theta_1, caches = trained
    sharpness = SharpnessSettings("shift", n_samples=60, general_rhos=(0.5,), general_n_iter=3,
                                  layerwise_rhos=(0.5,), layerwise_n_iter=2, alphas=(0.0, 0.5, 1.0))
    report = _check(theta_0, theta_1, caches, candidates=["fp32"], sharpness=sharpness)
    assert (report.path[["lost", "gained", "top1_diff_points", "loss_diff"]] == 0).all().all()
    assert report.labels["labels_unchanged"].all() and (report.labels["loss_shape_diff"] == 0).all()
    assert set(report.sharpness["metric"]) == {"general_sharpness", "layerwise_sharpness"}
    assert (report.sharpness["diff"] == 0).all() and (report.sharpness["z"] == 0).all()
    assert report.verdicts["passed"].all()
    assert report.passed("fp32", "evaluation") and report.passed("fp32", "sharpness")


def test_sharpness_z_is_the_difference_in_reference_standard_errors(trained):
    theta_0, theta_1, caches = trained
    settings = SharpnessSettings("shift", n_samples=80, seed=4, general_rhos=(1.0, 0.1), general_n_iter=4,
                                 layerwise_rhos=(), alphas=(0.0, 1.0))
    report = _check(theta_0, theta_1, caches, alphas=[0.0, 1.0], candidates=["bf16"], sharpness=settings)
    cache = caches["shift"]
    subset = select_subset(len(cache), 80, 4)
    images = normalize_images(torch.from_numpy(np.asarray(cache.images)[subset]), tiny_classifier(seed=0).preprocess)
    labels = torch.from_numpy(cache.labels[subset])
    runs = {p: general_sharpness(tiny_classifier(seed=1), InterpolationPath(theta_0, theta_1), [0.0, 1.0], images, labels,
                                 [1.0, 0.1], 4, 4, batch_size=300, precision=p, progress=False)
            .query("metric == 'general_sharpness'").set_index(["alpha", "rho"]) for p in ("fp32", "bf16")}
    assert len(report.sharpness) == 4
    for row in report.sharpness.itertuples():
        ref, cand = runs["fp32"].loc[(row.alpha, row.rho)], runs["bf16"].loc[(row.alpha, row.rho)]
        assert row.value_reference == ref["value"] and row.value_candidate == cand["value"]
        assert row.z == pytest.approx((cand["value"] - ref["value"]) / ref["stderr"], rel=1e-9)
    verdicts = report.verdicts.query("quantity == 'general_sharpness'").set_index("rho")
    for rho, group in report.sharpness.groupby("rho"):
        assert verdicts.loc[rho, "passed"] == bool((group["z"].abs() <= 1).all())
        assert verdicts.loc[rho, "value"] == pytest.approx(group["z"].abs().max())


def test_sharpness_z_edge_cases():
    assert sharpness_z(0.3, 0.1) == pytest.approx(3.0)
    assert sharpness_z(-0.2, 0.1) == pytest.approx(-2.0)
    assert sharpness_z(0.0, 0.0) == 0.0
    assert sharpness_z(1e-6, 0.0) == np.inf and sharpness_z(-1e-6, 0.0) == -np.inf
    assert np.isnan(sharpness_z(np.nan, 0.1)) and np.isnan(sharpness_z(0.1, np.nan))


def test_paired_flips_count_each_direction():
    reference = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    candidate = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    assert paired_flips(reference, candidate) == (2, 1)
    with pytest.raises(ValueError, match="same images"):
        paired_flips(reference, candidate[:3])


def _path_row(candidate: str, dataset: str, alpha: float, lost: int, gained: int, n: int = 1000) -> dict:
    return {"model": "m", "dataset": dataset, "alpha": alpha, "reference": "fp32", "candidate": candidate, "n": n,
            "lost": lost, "gained": gained, "flips": lost + gained, "flip_rate": (lost + gained) / n,
            "top1_diff_points": 100 * (gained - lost) / n, "loss_diff": 0.0}


def _paths(accuracy: list[float], loss: list[float], alphas=(0.0, 0.5, 1.0), dataset: str = "a") -> pd.DataFrame:
    rows = [("m", dataset, a, "accuracy", v, 1000) for a, v in zip(alphas, accuracy)]
    rows += [("m", dataset, a, "loss", v, 1000) for a, v in zip(alphas, loss)]
    return pd.DataFrame(rows, columns=["model", "dataset", "alpha", "metric", "value", "n"])


def test_top1_gate_counts_flips_in_both_directions_not_the_net_difference():
    flat = _paths([0.5, 0.6, 0.55], [1.0, 0.9, 0.95])
    labels = pd.concat([compare_labels(flat, flat, GATE, c) for c in ("even", "one", "small")], ignore_index=True)
    path = pd.DataFrame([
        _path_row("even", "a", 0.0, 0, 0), _path_row("even", "a", 0.5, 4, 4),  # net 0, 8 flips
        _path_row("one", "a", 0.0, 1, 0), _path_row("one", "a", 0.5, 0, 1),    # 1 flip in 1000: at the limit
        _path_row("small", "a", 0.0, 0, 1, n=500),                             # 1 flip in 500: over it
    ])
    verdicts = gate_verdicts(path, labels, NO_SHARPNESS, GATE).set_index(["candidate", "quantity"])
    assert not verdicts.loc[("even", "top1"), "passed"] and verdicts.loc[("even", "top1"), "value"] == 0.008
    assert verdicts.loc[("one", "top1"), "passed"] and verdicts.loc[("one", "evaluation"), "passed"]
    assert not verdicts.loc[("small", "top1"), "passed"]
    assert not verdicts.loc[("even", "evaluation"), "passed"] and verdicts.loc[("even", "evaluation"), "where"] == "top1"


def test_labels_compare_outcome_alpha_star_and_the_loss_shape():
    reference = _paths([0.50, 0.56, 0.55], [1.00, 1.05, 0.98])
    moved_alpha = _paths([0.50, 0.55, 0.56], [1.00, 1.05, 0.98])      # still a high gain, alpha* 0.5 -> 1
    barrier = _paths([0.50, 0.56, 0.55], [1.00, 1.11, 0.98])          # depth 0.05 -> 0.11 crosses delta 0.1
    offset = _paths([0.50, 0.56, 0.55], [1.003, 1.053, 0.983])        # a constant loss offset changes nothing
    table = pd.concat([compare_labels(reference, c, GATE, name) for name, c in
                       (("alpha", moved_alpha), ("barrier", barrier), ("offset", offset))], ignore_index=True)
    rows = table.set_index("candidate")
    assert rows.loc["alpha", "outcome_reference"] == rows.loc["alpha", "outcome_candidate"] == "high_gain"
    assert (rows.loc["alpha", "alpha_star_reference"], rows.loc["alpha", "alpha_star_candidate"]) == (0.5, 1.0)
    assert not rows.loc["alpha", "labels_unchanged"]
    assert rows.loc["barrier", "labels_unchanged"] and not rows.loc["barrier", "barrier_unchanged"]
    assert rows.loc["barrier", "loss_shape_diff"] == pytest.approx(0.06)
    assert rows.loc["offset", "labels_unchanged"] and rows.loc["offset", "loss_shape_diff"] == pytest.approx(0, abs=1e-12)
    path = pd.DataFrame([_path_row(c, "a", 0.0, 0, 0) for c in ("alpha", "barrier", "offset")])
    verdicts = gate_verdicts(path, table, NO_SHARPNESS, GATE).set_index(["candidate", "quantity"])
    assert not verdicts.loc[("alpha", "outcome_labels"), "passed"] and verdicts.loc[("alpha", "loss_shape"), "passed"]
    assert verdicts.loc[("barrier", "outcome_labels"), "passed"] and not verdicts.loc[("barrier", "loss_shape"), "passed"]
    assert verdicts.loc[("offset", "evaluation"), "passed"]
    with pytest.raises(ValueError, match="different paths"):
        compare_labels(reference, _paths([0.5, 0.5, 0.5], [1, 1, 1], dataset="b"), GATE)


def test_sharpness_verdict_needs_every_z_within_the_limit_and_defined():
    flat = _paths([0.5, 0.6, 0.55], [1.0, 0.9, 0.95])
    labels = pd.concat([compare_labels(flat, flat, GATE, c) for c in ("ok", "far", "nan")], ignore_index=True)
    path = pd.DataFrame([_path_row(c, "a", 0.0, 0, 0) for c in ("ok", "far", "nan")])
    rows = []
    for candidate, zs in (("ok", [0.2, -1.0, 0.0]), ("far", [0.2, -1.5, 0.0]), ("nan", [0.2, np.nan, 0.0])):
        for layer, z in zip(("a", "b", "c"), zs):
            rows.append({"model": "m", "candidate": candidate, "metric": "layerwise_sharpness", "alpha": 1.0,
                         "layer": layer, "rho": 1.0, "value_reference": 0.1, "value_candidate": 0.1 + 0.01 * z,
                         "stderr_reference": 0.01, "z": z})
    sharpness = pd.DataFrame(rows).reindex(columns=list(SHARPNESS_COLUMNS))
    verdicts = gate_verdicts(path, labels, sharpness, GATE).set_index(["candidate", "quantity"])
    assert verdicts.loc[("ok", "layerwise_sharpness"), "passed"] and verdicts.loc[("ok", "sharpness"), "passed"]
    assert not verdicts.loc[("far", "layerwise_sharpness"), "passed"]
    assert verdicts.loc[("far", "layerwise_sharpness"), "value"] == 1.5
    assert not verdicts.loc[("nan", "layerwise_sharpness"), "passed"] and not verdicts.loc[("nan", "sharpness"), "passed"]


# -- a label bf16 must flip, and labels it cannot -------------------------------------------------

def _spacing(w: torch.Tensor) -> torch.Tensor:
    """Distance from a bf16 value to the next one up in magnitude (8 significant bits)."""
    return torch.where(w != 0, 2.0 ** (torch.floor(torch.log2(w.abs())) - 7), torch.zeros_like(w))


def test_bf16_must_flip_a_label_whose_gain_lies_below_bf16_spacing(tmp_path: Path):
    """theta_0 holds bf16 values and theta_1 moves the head by 0.2 of bf16's spacing, toward
    the runner-up class of near-tied images: every bf16 theta(alpha) rounds back to theta_0
    bit for bit, so bf16 sees a flat path (a failure mode) where fp32 sees the gain that
    labels the images."""
    model = tiny_classifier(seed=7)
    theta_0 = {k: bf16_round(v.detach()) for k, v in model.state_dict().items()}
    model.load_state_dict(theta_0)
    pool = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4000, 3, 16, 16), dtype=np.uint8))
    with torch.no_grad():
        features = F.normalize(model.encode_image(normalize_images(pool, model.preprocess)), dim=-1)
    w0, b = theta_0["classification_head.weight"], theta_0["classification_head.bias"]
    top = (features @ w0.T + b).topk(2, dim=1)
    near = ((top.values[:, 0] - top.values[:, 1]) < 0.01).float()[:, None]
    toward_runner_up = ((F.one_hot(top.indices[:, 1], 5) - F.one_hot(top.indices[:, 0], 5)) * near).T @ features
    theta_1 = dict(theta_0)
    theta_1["classification_head.weight"] = w0 + 0.2 * _spacing(w0) * torch.sign(toward_runner_up)
    assert torch.equal(bf16_round(theta_1["classification_head.weight"]), w0)

    def margins_and_predictions(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = (features @ w.T + b).topk(2, dim=1)
        return values.values[:, 0] - values.values[:, 1], values.indices[:, 0]

    m0, p0 = margins_and_predictions(w0)
    m1, p1 = margins_and_predictions(theta_1["classification_head.weight"])
    robust = (m0 > 1e-4) & (m1 > 1e-4)  # far above fp32 rounding, so batch sizes cannot matter
    changed = torch.nonzero(robust & (p0 != p1)).flatten()
    kept = torch.nonzero(robust & (p0 == p1)).flatten()[:100 - len(changed)]
    assert len(changed) >= 3
    chosen = torch.cat([changed, kept])
    cache = _cache(tmp_path / "erasure", pool[chosen].numpy(), p1[chosen].numpy())  # labels: theta_1's predictions

    report = _check(theta_0, theta_1, {"erasure": cache}, alphas=[0.0, 0.5, 1.0], candidates=["bf16"])
    labels = report.labels.iloc[0]
    assert labels["outcome_reference"] == "high_gain" and labels["alpha_star_reference"] > 0
    assert labels["outcome_candidate"] == "failure_mode" and labels["alpha_star_candidate"] == 0
    assert report.path["acc_candidate"].nunique() == 1
    # fp32 goes from (n - changed) / n to n / n while bf16 stays put: the flips at the two
    # ends must account for the whole difference.
    ends = report.path.set_index("alpha").loc[[0.0, 1.0]]
    assert list(ends["acc_reference"] * len(chosen)) == [len(chosen) - len(changed), len(chosen)]
    assert ends["flips"].sum() >= len(changed)
    assert not report.passed("bf16", "outcome_labels") and not report.passed("bf16", "top1")
    assert not report.passed("bf16", "evaluation")


def test_bf16_cannot_flip_what_wide_margins_decide(trained, tmp_path: Path):
    """Keep only images whose fp32 top-2 logit margin at every alpha exceeds twice the largest
    bf16 logit error seen: no prediction can change, so no flip and no label may."""
    theta_0, theta_1, caches = trained
    source = caches["shift"]
    margins, errors = [], []
    for alpha in ALPHAS:
        _, _, l32 = _independent(theta_0, theta_1, source.images, source.labels, alpha, torch.float32)
        _, _, lbf = _independent(theta_0, theta_1, source.images, source.labels, alpha, torch.bfloat16)
        top = l32.topk(2, dim=1).values
        margins.append(top[:, 0] - top[:, 1])
        errors.append((lbf - l32).abs().max())
    safe = torch.stack(margins).min(dim=0).values > 2 * torch.stack(errors).max()
    assert safe.sum() >= 100
    keep = torch.nonzero(safe).flatten().numpy()
    cache = _cache(tmp_path / "wide", np.asarray(source.images)[keep], source.labels[keep])
    report = _check(theta_0, theta_1, {"wide": cache}, candidates=["bf16", "bf16_autocast", "bf16_delta_emulated"])
    assert report.path["acc_reference"].nunique() > 1  # the path is not flat: labels could move
    assert (report.path["flips"] == 0).all()
    assert report.labels["labels_unchanged"].all()
    for candidate in ("bf16", "bf16_autocast", "bf16_delta_emulated"):
        assert report.passed(candidate, "top1") and report.passed(candidate, "outcome_labels")


# -- the emulations -------------------------------------------------------------------------------

def test_rounded_path_writes_what_a_bf16_model_holds_and_delta_keeps_small_changes():
    theta_0 = {k: bf16_round(v.detach()) for k, v in tiny_classifier(seed=1).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    # Half the tensors move by 0.2 of bf16's spacing (erased by rounding), half by 5 %.
    theta_1 = {k: v + (0.2 * _spacing(v) if i % 2 else 0.05 * v * torch.randn(v.shape, generator=g))
               for i, (k, v) in enumerate(theta_0.items())}
    path = InterpolationPath(theta_0, theta_1)
    emulated, real = tiny_classifier(seed=2), tiny_classifier(seed=2).to(torch.bfloat16)
    for alpha in (0.0, 0.05, 0.7, 1.0):
        Bf16RoundedPath(path).load_into(emulated, alpha)
        path.load_into(real, alpha)
        for (name, e), (_, r) in zip(emulated.state_dict().items(), real.state_dict().items()):
            assert torch.equal(e, r.float()), (name, alpha)
    delta = tiny_classifier(seed=2)
    for i, name in enumerate(theta_0):
        d = theta_1[name] - theta_0[name]
        for alpha in (0.05, 1.0):
            point = Bf16DeltaPath(path).point(name, alpha)
            # bf16(theta_0) = theta_0 here, so the delta form moves by alpha * bf16(d): within
            # bf16's relative precision of the true move (plus fp32 rounding of the sum), also
            # where plain rounding erases the move.
            error = (point - theta_0[name] - alpha * d).abs()
            assert (error <= 2**-8 * (alpha * d).abs() + 2**-23 * theta_0[name].abs()).all(), (name, alpha)
            if i % 2 and d.abs().max() > 0:
                assert torch.equal(Bf16RoundedPath(path).point(name, alpha), theta_0[name])
                assert not torch.equal(point, theta_0[name])
    Bf16DeltaPath(path).load_into(delta, 0.0)
    assert all(torch.equal(delta.state_dict()[k], theta_0[k]) for k in theta_0)
    assert Bf16RoundedPath(path).theta_0 is path.theta_0  # shared, not copied


def test_bf16_activations_round_every_module_output_and_leave_no_hook_behind():
    model = tiny_classifier(seed=4)
    x = normalize_images(torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8), model.preprocess)
    with torch.no_grad():
        plain = model(x)
        outputs = []
        handle = model.visual.transformer.resblocks[0].mlp.c_fc.register_forward_hook(lambda m, a, out: outputs.append(out))
        with bf16_activations(model):
            rounded = model(x)
        handle.remove()
        again = model(x)
    assert torch.equal(rounded, bf16_round(rounded)) and not torch.equal(rounded, plain)
    assert torch.equal(again, plain)
    torch.testing.assert_close(rounded, plain, rtol=0.05, atol=0.02)


def test_forms_run_only_where_they_can_and_restore_tf32_flags():
    with pytest.raises(ValueError, match="CUDA"):
        resolve_form("tf32", CPU)
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_form("fp16", CPU)
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    model = tiny_classifier(seed=0)
    with applied(FORMS["bf16_autocast"], model, CPU):
        assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
        assert torch.is_autocast_enabled("cpu")
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before
    assert not torch.is_autocast_enabled("cpu")
    assert CANDIDATE_CHOICES == tuple(FORMS)


def test_refusals_name_the_problem(trained):
    theta_0, theta_1, caches = trained
    with pytest.raises(ValueError, match="must include 0 and 1"):
        _check(theta_0, theta_1, caches, alphas=[0.0, 0.5])
    with pytest.raises(ValueError, match="not one of the caches"):
        _check(theta_0, theta_1, caches, sharpness=SharpnessSettings("clutter"))


# -- command line ---------------------------------------------------------------------------------

def test_check_precision_cli_writes_the_four_tables(trained, tmp_path: Path, capsys):
    theta_0, theta_1, caches = trained
    files = []
    for name, state in (("zeroshot", theta_0), ("model_0", theta_1), ("model_1", theta_1)):
        model = tiny_classifier(seed=0)
        model.load_state_dict(state)
        save_classifier(model, tmp_path / f"{name}.pt")
        files.append(str(tmp_path / f"{name}.pt"))
    out = tmp_path / "check"
    code = main(["check-precision", *files, "--data", str(caches["id"].path), str(caches["shift"].path),
                 "--alphas", "0", "0.05", "1", "--candidates", "bf16", "bf16_delta_emulated", "--m", "40",
                 "--rho", "1", "0.1", "--n-iter", "2", "--layerwise-n-iter", "2", "--layers", "classification_head",
                 "visual.conv1", "--batch-size", "100", "--no-progress", "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "== verdicts" in printed and "max |top-1 difference| per set" in printed
    path = read_tsv(out / "path.tsv", ["model", "dataset", "alpha", "candidate", "lost", "gained", "top1_diff_points"])
    assert set(path["candidate"]) == {"bf16", "bf16_delta_emulated"} and set(path["model"]) == {"model_0", "model_1"}
    assert len(path) == 2 * 2 * 2 * 3  # models x candidates x sets x alphas
    # The same pair twice gives the same figures (CPU arithmetic is deterministic).
    by_model = [rows.drop(columns="model").reset_index(drop=True) for _, rows in path.groupby("model")]
    pd.testing.assert_frame_equal(*by_model)
    sharp = read_tsv(out / "sharpness.tsv", ["metric", "alpha", "layer", "rho", "z", "seed"])
    assert set(sharp["dataset"]) == {"shift"}  # the last --data by default
    assert set(sharp.loc[sharp["metric"] == "layerwise_sharpness", "layer"]) == {"classification_head", "visual.conv1"}
    verdicts = read_tsv(out / "verdicts.tsv", ["candidate", "quantity", "passed", "value", "limit"])
    assert {"top1", "outcome_labels", "loss_shape", "general_sharpness", "layerwise_sharpness", "evaluation",
            "sharpness"} <= set(verdicts["quantity"])
    read_tsv(out / "labels.tsv", ["dataset", "outcome_reference", "outcome_candidate"])

    code = main(["check-precision", *files[:2], "--data", str(caches["id"].path), "--alphas", "0", "0.5",
                 "--sharpness", "none", "--no-progress"])
    assert code == 2 and "must include 0 and 1" in capsys.readouterr().err
