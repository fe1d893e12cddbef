"""WiSE-FT interpolation: endpoints, linearity, layer-wise locality, in-place loading."""

from __future__ import annotations

import pytest
import torch

from interpsharp.interpolate import InterpolationPath, StateDictMismatch, interpolate, interpolate_layer
from interpsharp.layers import layer_groups

from conftest import tiny_classifier


@pytest.fixture
def endpoints():
    return tiny_classifier(0).state_dict(), tiny_classifier(1).state_dict()


def test_exact_endpoints(endpoints):
    theta_0, theta_1 = endpoints
    for k in theta_0:
        assert torch.equal(interpolate(theta_0, theta_1, 0.0)[k], theta_0[k])
        assert torch.equal(interpolate(theta_0, theta_1, 1.0)[k], theta_1[k])


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5, 0.8])
def test_linear_in_alpha(endpoints, alpha):
    theta_0, theta_1 = endpoints
    got = interpolate(theta_0, theta_1, alpha)
    for k in theta_0:
        expected = theta_0[k].double() + alpha * (theta_1[k].double() - theta_0[k].double())
        torch.testing.assert_close(got[k].double(), expected, rtol=0, atol=1e-6)
    # Affine in alpha: the midpoint of two interpolants is the interpolant at the mid alpha.
    a, b = interpolate(theta_0, theta_1, 0.2), interpolate(theta_0, theta_1, 0.6)
    mid = interpolate(theta_0, theta_1, 0.4)
    for k in theta_0:
        torch.testing.assert_close((a[k] + b[k]) / 2, mid[k], rtol=0, atol=1e-6)


def test_layerwise_changes_only_the_named_group(endpoints):
    theta_0, theta_1 = endpoints
    groups = layer_groups(tiny_classifier(0))
    layer = "visual.transformer.resblocks.1.mlp.c_fc"
    got = interpolate_layer(theta_0, theta_1, 0.5, groups[layer])
    for k in theta_0:
        if k in groups[layer]:
            torch.testing.assert_close(got[k], (theta_0[k] + theta_1[k]) / 2)
            assert not torch.equal(got[k], theta_0[k])
        else:
            assert torch.equal(got[k], theta_0[k]), k


def test_mismatched_endpoints_are_named(endpoints):
    theta_0, theta_1 = endpoints
    bad = dict(theta_1)
    bad.pop("visual.proj")
    bad["visual.ln_pre.weight"] = torch.ones(3)
    with pytest.raises(StateDictMismatch, match=r"only in theta_0: visual\.proj.*shapes differ: visual\.ln_pre\.weight"):
        interpolate(theta_0, bad, 0.5)


def test_path_loads_in_place_without_new_tensors(endpoints):
    theta_0, theta_1 = endpoints
    model = tiny_classifier(2)
    storage = {n: p.data_ptr() for n, p in model.named_parameters()}
    path = InterpolationPath(theta_0, theta_1)
    x = torch.randn(2, 3, 16, 16)
    reference = tiny_classifier(3)
    for alpha in (0.0, 0.3, 1.0):
        path.load_into(model, alpha)
        assert {n: p.data_ptr() for n, p in model.named_parameters()} == storage
        reference.load_state_dict(interpolate(theta_0, theta_1, alpha))
        with torch.no_grad():
            assert torch.equal(model(x), reference(x))
    layer = layer_groups(model)["visual.ln_post"]
    path.load_into(model, 0.7, only=layer)
    reference.load_state_dict(interpolate_layer(theta_0, theta_1, 0.7, layer))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_path_from_the_models_own_state_dict_keeps_theta_0(endpoints):
    """The usual call passes the model's own state dict as theta_0; writing theta(alpha) into
    the model must not change the path's theta_0 (it would alias the parameters on the CPU)."""
    theta_0, theta_1 = endpoints
    model = tiny_classifier(2)
    model.load_state_dict(theta_0)
    path = InterpolationPath(model.state_dict(), theta_1)
    path.load_into(model, 0.5)
    path.load_into(model, 0.0)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, theta_0[name]), name


def test_load_layer_writes_only_that_layer(endpoints):
    theta_0, theta_1 = endpoints
    model = tiny_classifier(2)
    path = InterpolationPath(theta_0, theta_1)
    path.load_into(model, 0.0)
    names = layer_groups(model)["visual.transformer.resblocks.0.attn"]
    path.load_layer(model, 0.7, names)
    expected = interpolate_layer(theta_0, theta_1, 0.7, names)
    state = model.state_dict()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert not torch.equal(state[names[0]], theta_0[names[0]])
    path.load_layer(model, 0.0, names)  # back to theta_0 exactly
    assert all(torch.equal(t, theta_0[k]) for k, t in model.state_dict().items())
    with pytest.raises(StateDictMismatch, match="visual.nothing"):
        path.load_layer(model, 0.5, ["visual.nothing"])
