"""Sharpness: closed forms on a quadratic, Prop. A.1 on a tiny CLIP, prefix caching vs the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from conftest import tiny_classifier
from interpsharp.checkpoints import save_classifier
from interpsharp.classifier import CLIPClassifier, VitArchitecture
from interpsharp.cli import build_parser, main
from interpsharp.commands import sharpness as sharpness_command
from interpsharp.data import write_cache
from interpsharp.interpolate import InterpolationPath
from interpsharp.layers import layer_groups
from interpsharp.sharpness import (
    BLOCK_CACHE_BYTES,
    COLUMNS,
    MODES,
    PERTURB_FINETUNED,
    PRECISIONS,
    FullForwardLoss,
    PrefixCachedLoss,
    average_sharpness,
    cross_entropy_criterion,
    general_sharpness,
    hessian_vector_product,
    hutchinson_trace,
    layerwise_sharpness,
    perturbation_noise,
    perturbed_losses,
)

#: Small enough (1111 parameters) for an exact Hessian in under a second.
MICRO_ARCH = VitArchitecture(image_size=8, patch_size=4, width=8, layers=1, head_width=4, mlp_ratio=2.0, embed_dim=4, num_classes=3)


def mean_output(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return outputs.mean()


class Quadratic(nn.Module):
    """``0.5 (t - t*)^T A (t - t*) + b`` with ``t = [w, v.flatten()]``: two layers, ``w`` and ``v``."""

    def __init__(self, a: torch.Tensor, t_star: torch.Tensor, b: float, t: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(t[:3].clone())
        self.v = nn.Parameter(t[3:].reshape(2, 2).clone())
        self.register_buffer("a", a)
        self.register_buffer("t_star", t_star)
        self.b = b

    def theta(self) -> torch.Tensor:
        return torch.cat([self.w, self.v.reshape(-1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.theta() - self.t_star
        return (0.5 * d @ self.a @ d + self.b).expand(len(x))


@pytest.fixture
def quadratic() -> Quadratic:
    g = torch.Generator().manual_seed(3)
    m = torch.randn(7, 7, generator=g, dtype=torch.float64)
    a = m @ m.T / 7 + 0.2 * torch.eye(7, dtype=torch.float64)  # symmetric, not diagonal
    return Quadratic(a, torch.randn(7, generator=g, dtype=torch.float64), 0.25, torch.randn(7, generator=g, dtype=torch.float64))


def weighted_trace(h: torch.Tensor, w: torch.Tensor) -> float:
    """``tr(H ⊙ |w||w|^T) = sum_i H_ii w_i^2`` (only the diagonal enters a trace)."""
    return float((torch.diagonal(h) * w**2).sum())


def quadratic_draw(q: Quadratic, rho: float, seed: int, draw: int, layers: tuple[str, ...]) -> float:
    """``L(t + delta) - L(t)`` in closed form for the noise the library draws."""
    t = q.theta().detach()
    z = torch.cat([
        perturbation_noise("w", (3,), seed, draw, dtype=torch.float64) * ("w" in layers),
        perturbation_noise("v", (2, 2), seed, draw, dtype=torch.float64).reshape(-1) * ("v" in layers),
    ])
    delta = rho * t.abs() * z
    grad = q.a @ (t - q.t_star)
    return float(grad @ delta + 0.5 * delta @ q.a @ delta)


def flat_hessian(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Hessian of the mean cross-entropy over all parameters (reverse-over-reverse autograd)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(v: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = v[i:i + shape.numel()].reshape(shape)
            i += shape.numel()
        return nn.functional.cross_entropy(functional_call(model, params, (images,)), labels)

    with sdpa_kernel(SDPBackend.MATH):
        return torch.autograd.functional.hessian(loss, flat, vectorize=True), flat


@pytest.fixture
def micro() -> tuple[CLIPClassifier, torch.Tensor, torch.Tensor]:
    model = tiny_classifier(1, MICRO_ARCH).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))  # away from init, so H has some structure
    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
    return model, images, torch.randint(0, 3, (6,), generator=g)


def small_path(seed: int = 0) -> tuple[CLIPClassifier, InterpolationPath, torch.Tensor, torch.Tensor]:
    theta_0, theta_1 = tiny_classifier(seed), tiny_classifier(seed + 1)
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(10, 3, 16, 16, generator=g)
    labels = torch.randint(0, 5, (10,), generator=g)
    return tiny_classifier(seed + 2), InterpolationPath(theta_0.state_dict(), theta_1.state_dict()), images, labels


def sharpness_values(table: pd.DataFrame, metric: str = "layerwise_sharpness") -> np.ndarray:
    return table.loc[table["metric"] == metric, "value"].to_numpy()


# -- closed forms on a quadratic ---------------------------------------------------------------

@pytest.mark.parametrize("layers, antithetic", [(("w", "v"), False), (("v",), True)])
def test_quadratic_sharpness_matches_closed_form(quadratic, layers, antithetic):
    rho, seed, n_iter = 0.7, 5, 2000
    est = average_sharpness(quadratic, torch.zeros(4, 1), torch.zeros(4), rho, n_iter, seed,
                            layers=None if len(layers) == 2 else layers, criterion=mean_output, antithetic=antithetic)
    # Every draw is the exact quadratic increase for the documented noise ...
    sign = lambda d: -1 if antithetic and d % 2 else 1
    draw = lambda d: d // 2 if antithetic else d
    expected_draws = [quadratic_draw(quadratic, sign(d) * rho, seed, draw(d), layers) for d in range(n_iter)]
    np.testing.assert_allclose(est.draws, expected_draws, rtol=1e-10, atol=1e-12)
    # ... and their mean converges to rho^2 / 2 tr(A ⊙ |t||t|^T) over the perturbed block.
    keep = torch.tensor([n in layers for n in "wwwvvvv"])
    t = quadratic.theta().detach() * keep
    exact = rho**2 / 2 * weighted_trace(quadratic.a, t)
    assert abs(est.mean - exact) <= 4 * est.stderr
    assert est.stderr < 0.1 * abs(exact)  # the tolerance is informative
    with torch.no_grad():
        assert est.loss == pytest.approx(float(quadratic(torch.zeros(1))[0]))


def test_quadratic_hessian_vector_product_and_hutchinson_trace(quadratic):
    x, y = torch.zeros(3, 1), torch.zeros(3)
    v = {"w": torch.randn(3, dtype=torch.float64), "v": torch.randn(2, 2, dtype=torch.float64)}
    hv = hessian_vector_product(quadratic, x, y, v, criterion=mean_output)
    av = quadratic.a @ torch.cat([v["w"], v["v"].reshape(-1)])
    torch.testing.assert_close(torch.cat([hv["w"], hv["v"].reshape(-1)]), av, rtol=1e-12, atol=1e-12)

    t = quadratic.theta().detach()
    full = hutchinson_trace(quadratic, x, y, 400, seed=1, criterion=mean_output)
    exact = weighted_trace(quadratic.a, t)
    assert abs(full.mean - exact) <= 4 * full.stderr
    block = hutchinson_trace(quadratic, x, y, 400, seed=1, layers=["w"], criterion=mean_output)
    exact_block = weighted_trace(quadratic.a[:3, :3], t[:3])
    assert abs(block.mean - exact_block) <= 4 * block.stderr + 1e-12
    assert abs(exact_block - exact) > 4 * (block.stderr + full.stderr)  # the two targets are distinguishable


# -- Prop. A.1 on a tiny CLIP classifier -------------------------------------------------------

def test_small_rho_sharpness_tends_to_weighted_hessian_trace(micro):
    model, images, labels = micro
    hessian, flat = flat_hessian(model, images, labels)
    exact = weighted_trace(hessian, flat)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]

    # Pointwise: for the same noise z, (L(w + rho u) + L(w - rho u) - 2 L(w)) / rho^2 -> u^T H u,
    # u = |w| ⊙ z, with an O(rho^2) error.
    seed, pairs = 2, 4
    u = [flat.abs() * torch.cat([perturbation_noise(n, s, seed, k, dtype=torch.float64).reshape(-1) for n, s in zip(names, shapes)])
         for k in range(pairs)]
    quad = np.array([float(uk @ hessian @ uk) for uk in u])
    errors = []
    for rho in (1e-1, 1e-2, 1e-3):
        est = average_sharpness(model, images, labels, rho, 2 * pairs, seed, antithetic=True)
        pair_means = np.array(est.draws).reshape(-1, 2).mean(axis=1)
        errors.append(np.max(np.abs(2 * pair_means / rho**2 - quad)) / np.max(np.abs(quad)))
    # Second-order convergence: a 10x smaller rho leaves ~1/100 of the error (1/10 would be O(rho)).
    assert errors[1] < errors[0] / 50 and errors[2] < errors[1] / 50, errors
    assert errors[2] < 1e-4

    # In expectation: the Monte-Carlo mean at small rho and Hutchinson both estimate the trace.
    rho = 1e-2
    est = average_sharpness(model, images, labels, rho, 400, seed=7, antithetic=True)
    assert abs(2 * est.mean / rho**2 - exact) <= 4 * 2 * est.stderr / rho**2
    trace = hutchinson_trace(model, images, labels, 200, seed=3)
    assert abs(trace.mean - exact) <= 4 * trace.stderr
    assert trace.stderr < abs(exact)


def test_hutchinson_per_layer_estimates_the_diagonal_block(micro):
    model, images, labels = micro
    hessian, flat = flat_hessian(model, images, labels)
    sizes = [p.numel() for p in model.parameters()]
    start = sum(sizes[:-2])  # classification_head.weight and .bias are the last two parameters
    exact = weighted_trace(hessian[start:, start:], flat[start:])
    est = hutchinson_trace(model, images, labels, 200, seed=4, layers=["classification_head"])
    assert abs(est.mean - exact) <= 4 * est.stderr
    assert est.stderr < 0.2 * abs(exact)


# -- layer-wise sweeps -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_prefix_cached_agrees_with_reference(mode):
    model, path, images, labels = small_path()
    kwargs = dict(rhos=[0.5], n_iter=2, seed=0, mode=mode, batch_size=4, precision="fp64", progress=False)
    reference = layerwise_sharpness(model, path, [0.0, 0.4, 1.0], images, labels, implementation="reference", **kwargs)
    values = sharpness_values(reference)
    assert np.count_nonzero(values) > len(values) // 2
    for within_blocks in (True, False):
        cached = layerwise_sharpness(model, path, [0.0, 0.4, 1.0], images, labels, within_blocks=within_blocks, **kwargs)
        assert list(cached.columns) == list(COLUMNS)
        pd.testing.assert_frame_equal(cached.drop(columns="value"), reference.drop(columns="value"))
        np.testing.assert_allclose(cached["value"], reference["value"], rtol=1e-5, atol=1e-300)


@pytest.mark.parametrize("block_cache_bytes", [0, BLOCK_CACHE_BYTES])
def test_prefix_cache_in_any_layer_order_with_or_without_kept_block_activations(block_cache_bytes):
    model, path, images, labels = small_path(4)
    path.load_into(model.double(), 0.8)
    batches = [(images[:6].double(), labels[:6]), (images[6:].double(), labels[6:])]
    criterion = cross_entropy_criterion()
    groups = layer_groups(model)
    named = dict(model.named_parameters())
    full = FullForwardLoss(model, batches, criterion)
    cached = PrefixCachedLoss(model, batches, criterion, groups, block_cache_bytes=block_cache_bytes)
    assert cached.baseline == full.baseline
    # Forward, backward and shuffled: sweeps enter blocks at each of their layers and jump
    # between blocks, so inside-block activations are built in every situation.
    shuffled = [list(groups)[i] for i in torch.randperm(len(groups), generator=torch.Generator().manual_seed(0))]
    for layer in [*groups, *reversed(groups), *shuffled]:
        params = [(n, named[n]) for n in groups[layer]]
        scales = [0.5 * p.detach().abs() for _, p in params]
        expected = perturbed_losses(params, scales, 2, 1, False, lambda: full.loss(layer))
        got = perturbed_losses(params, scales, 2, 1, False, lambda: cached.loss(layer))
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
        assert not torch.equal(expected, full.baseline.expand(2))


def test_prefix_cached_is_exact_in_fp32():
    """Resuming runs the same ops on the same activations as the full forward: identical bits."""
    model, path, images, labels = small_path(1)
    kwargs = dict(rhos=[1.0], n_iter=1, seed=3, batch_size=10, precision="fp32", progress=False)
    reference = layerwise_sharpness(model, path, [0.7], images, labels, implementation="reference", **kwargs)
    cached = layerwise_sharpness(model, path, [0.7], images, labels, **kwargs)
    np.testing.assert_array_equal(cached["value"], reference["value"])


@pytest.mark.parametrize("implementation", ["prefix_cached", "reference"])
def test_perturb_finetuned_is_exactly_zero_at_alpha_zero(implementation):
    model, path, images, labels = small_path()
    kwargs = dict(rhos=[1.0], n_iter=2, seed=0, batch_size=5, precision="fp32", implementation=implementation, progress=False)
    finetuned = layerwise_sharpness(model, path, [0.0, 1.0], images, labels, mode="perturb_finetuned", **kwargs)
    at_zero = finetuned[(finetuned["alpha"] == 0.0) & (finetuned["metric"] == "layerwise_sharpness")]
    assert (at_zero["value"] == 0).all() and len(at_zero) == len(layer_groups(model))
    # Every draw's loss is the unperturbed one: no spread, nothing non-finite, and that loss is
    # theta_0's (the sweep answers alpha 0 with one forward pass instead of the draws).
    assert (at_zero["stderr"] == 0).all() and (at_zero["n_nonfinite"] == 0).all() and (at_zero["n_iter"] == 2).all()
    check = CLIPClassifier(model.arch).eval()
    check.load_state_dict(path.theta_0)
    with torch.no_grad():
        expected = float(nn.functional.cross_entropy(check(images), labels))
    loss_row = finetuned[(finetuned["alpha"] == 0.0) & (finetuned["metric"] == "loss")]
    assert loss_row["value"].item() == pytest.approx(expected, rel=1e-6)
    at_one = finetuned[(finetuned["alpha"] == 1.0) & (finetuned["metric"] == "layerwise_sharpness")]
    assert (at_one["value"] != 0).all()
    interpolated = layerwise_sharpness(model, path, [0.0], images, labels, mode="perturb_interpolated", **kwargs)
    assert (sharpness_values(interpolated) != 0).all()


def test_perturb_finetuned_equals_perturbing_theta_1_then_interpolating():
    model, path, images, labels = small_path(2)
    layer, alpha, rho, seed = "visual.transformer.resblocks.1.mlp.c_fc", 0.5, 0.8, 4
    table = layerwise_sharpness(model, path, [alpha], images, labels, rhos=[rho], n_iter=2, seed=seed, layers=[layer],
                                precision="fp64", progress=False)
    names = layer_groups(model)[layer]
    theta_0 = {k: v.double() for k, v in path.theta_0.items()}
    theta_1 = {k: v.double() for k, v in path.theta_1.items()}
    check = CLIPClassifier(model.arch).double().eval()

    def loss(state: dict[str, torch.Tensor]) -> float:
        check.load_state_dict(state)
        with torch.no_grad():
            return float(nn.functional.cross_entropy(check(images.double()), labels))

    base = loss({k: (1 - alpha) * theta_0[k] + alpha * theta_1[k] for k in theta_0})
    draws = []
    for d in range(2):
        perturbed = dict(theta_1)
        for n in names:
            perturbed[n] = theta_1[n] + rho * theta_1[n].abs() * perturbation_noise(n, theta_1[n].shape, seed, d, dtype=torch.float64)
        draws.append(loss({k: (1 - alpha) * theta_0[k] + alpha * perturbed[k] for k in theta_0}) - base)
    assert sharpness_values(table)[0] == pytest.approx(np.mean(draws), rel=1e-6, abs=1e-9)


def test_layer_noise_does_not_depend_on_the_other_layers():
    """Layer-wise (interpolated mode, prefix cached) equals the generic estimator restricted to the layer."""
    model, path, images, labels = small_path(3)
    layer, alpha = "visual.transformer.resblocks.0.attn", 0.3
    table = layerwise_sharpness(model, path, [alpha], images, labels, rhos=[0.6], n_iter=3, seed=9, mode="perturb_interpolated",
                                precision="fp64", progress=False)
    by_layer = dict(zip(table["layer"], table["value"]))
    path.load_into(model, alpha)
    est = average_sharpness(model, images.double(), labels, 0.6, 3, 9, layers=[layer])
    assert by_layer[layer] == pytest.approx(est.mean, rel=1e-12)


def test_same_seed_same_numbers_other_seed_other_numbers():
    model, path, images, labels = small_path()
    run = lambda seed: layerwise_sharpness(model, path, [0.5, 1.0], images, labels, rhos=[1.0], n_iter=2, seed=seed,
                                           batch_size=4, progress=False)
    first, again, other = run(0), run(0), run(1)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(sharpness_values(first), sharpness_values(other))
    general = lambda seed: general_sharpness(model, path, [0.5], images, labels, rhos=[0.5, 1.0], n_iter=3, seed=seed, progress=False)
    pd.testing.assert_frame_equal(general(2), general(2))
    assert not np.allclose(sharpness_values(general(2), "general_sharpness"), sharpness_values(general(3), "general_sharpness"))


def test_a_sweep_point_equals_the_same_alpha_computed_alone():
    """Straggler detection reads the sweep's alpha = 1 row instead of drawing again
    (rules/common.smk straggler_sweep_point): that is only sound if a point's numbers do not
    depend on which other alphas the job computed, or in which order."""
    model, path, images, labels = small_path(4)
    run = lambda alphas: layerwise_sharpness(model, path, alphas, images, labels, rhos=[1.0], n_iter=3, seed=5,
                                             batch_size=4, progress=False)
    sweep, alone = run([0.0, 0.4, 0.8, 1.0]), run([1.0])
    at_one = sweep[sweep["alpha"] == 1.0].reset_index(drop=True)
    pd.testing.assert_frame_equal(at_one, alone.reset_index(drop=True))
    assert np.all(sharpness_values(alone) != 0)


def test_weights_are_restored_exactly():
    model, path, images, labels = small_path()
    path.load_into(model, 0.6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    average_sharpness(model, images, labels, 1.0, 3, 0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    calls = []

    def failing(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("evaluation failed mid-draw")
        return nn.functional.cross_entropy(outputs, labels)

    with pytest.raises(RuntimeError, match="mid-draw"):
        average_sharpness(model, images, labels, 1.0, 5, 0, criterion=failing)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    layerwise_sharpness(model, path, [0.2, 0.6], images, labels, rhos=[1.0], n_iter=1, seed=0, progress=False)
    fresh = path.load_into(CLIPClassifier(model.arch), 0.6)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


def test_nonfinite_draws_are_counted_and_excluded():
    class NegLog(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (-torch.log(self.w).sum()).expand(len(x))

    module, rho, n_iter = NegLog(), 1.5, 40
    w = module.w.detach().clone()
    est = average_sharpness(module, torch.zeros(2, 1), torch.zeros(2), rho, n_iter, seed=0, criterion=mean_output)
    perturbed = [w + rho * w.abs() * perturbation_noise("w", (3,), 0, d, dtype=torch.float64) for d in range(n_iter)]
    finite = [bool((p > 0).all()) for p in perturbed]
    expected = [float(-torch.log(p).sum() + torch.log(w).sum()) for p, ok in zip(perturbed, finite) if ok]
    assert 0 < est.n_nonfinite == finite.count(False)
    assert est.mean == pytest.approx(np.mean(expected), rel=1e-12)
    assert np.isfinite(est.stderr)


# -- command line ------------------------------------------------------------------------------

def test_cli_choices_track_the_library():
    assert set(sharpness_command.PRECISION_CHOICES) == set(PRECISIONS)
    (command,) = [a for a in build_parser()._subparsers._group_actions if a.dest == "command"]
    (mode,) = [a for a in command.choices["sharpness"]._actions if "--mode" in a.option_strings]
    assert tuple(mode.choices) == tuple(MODES) and mode.default == PERTURB_FINETUNED


def test_sharpness_command_writes_tidy_tables(tmp_path, capsys):
    save_classifier(tiny_classifier(0), tmp_path / "zs.pt")
    save_classifier(tiny_classifier(1), tmp_path / "ft.pt")
    rng = np.random.default_rng(0)
    write_cache(tmp_path / "cache", rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8), rng.integers(0, 5, 12),
                [f"c{i}" for i in range(5)], meta={"name": "toy"})
    args = ["sharpness", str(tmp_path / "zs.pt"), str(tmp_path / "ft.pt"), "--alphas", "0", "1", "--data", str(tmp_path / "cache"),
            "--m", "8", "--n-iter", "2", "--device", "cpu", "--no-progress"]
    assert main(args + ["--layerwise", "--precision", "fp64", "-o", str(tmp_path / "lw.tsv")]) == 0
    layerwise = pd.read_csv(tmp_path / "lw.tsv", sep="\t")
    assert list(layerwise.columns) == list(COLUMNS)
    n_layers = len(layer_groups(tiny_classifier(0)))
    assert len(layerwise) == 2 * (n_layers + 1)
    assert set(layerwise["model"]) == {"ft"} and set(layerwise["dataset"]) == {"toy"} and set(layerwise["n"]) == {8}
    at_zero = layerwise[(layerwise["alpha"] == 0) & (layerwise["metric"] == "layerwise_sharpness")]
    assert (at_zero["value"] == 0).all()

    assert main(args + ["--rho", "0.5", "1", "-o", str(tmp_path / "general.tsv")]) == 0
    general = pd.read_csv(tmp_path / "general.tsv", sep="\t")
    assert sorted(general.loc[general["metric"] == "general_sharpness", "rho"].unique()) == [0.5, 1.0]
    assert set(general["layer"]) == {"all"} and len(general) == 2 * 3

    assert main(args + ["--layers", "visual.proj", "-o", str(tmp_path / "bad.tsv")]) == 2
    assert "--layerwise" in capsys.readouterr().err
