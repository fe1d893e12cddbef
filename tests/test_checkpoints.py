"""Model-soups checkpoint format: loading, saving, architecture inference, refusals."""

from __future__ import annotations

import pickle
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from interpsharp.checkpoints import (
    CheckpointError,
    build_zeroshot_classifier,
    infer_architecture,
    load_classifier,
    read_state_dict,
    save_classifier,
)
from interpsharp.classifier import CLIPClassifier, VitArchitecture

from conftest import tiny_classifier


def _model_soups_checkpoint(clip: torch.nn.Module, num_classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """What model-soups' ModelWrapper.state_dict() holds: CLIP minus its text transformer, plus a head."""
    g = torch.Generator().manual_seed(seed)
    state = {f"model.{k}": v.clone() for k, v in clip.state_dict().items() if not k.startswith("transformer.") and k != "attn_mask"}
    dim = clip.visual.proj.shape[1]
    state["classification_head.weight"] = torch.randn(num_classes, dim, generator=g)
    state["classification_head.bias"] = torch.randn(num_classes, generator=g)
    return state


@pytest.fixture
def soups_file(tmp_path: Path, tiny_clip_name: str):
    torch.manual_seed(0)
    clip = open_clip.create_model(tiny_clip_name, pretrained=None).eval()
    state = _model_soups_checkpoint(clip, num_classes=7)
    path = tmp_path / "model_0.pt"
    torch.save(state, path)
    return clip, state, path


def test_model_soups_checkpoint_gives_clip_logits(soups_file):
    clip, state, path = soups_file
    model = load_classifier(path)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = F.normalize(clip.encode_image(x), dim=-1) @ state["classification_head.weight"].T + state["classification_head.bias"]
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_save_then_load_round_trips_keys_and_logits(soups_file, tmp_path: Path):
    _, state, path = soups_file
    model = load_classifier(path)
    out = tmp_path / "again.pt"
    save_classifier(model, out)
    saved = torch.load(out, weights_only=True)
    assert set(saved) == set(state)
    for key, tensor in state.items():
        assert torch.equal(saved[key], tensor), key
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(load_classifier(out)(x), model(x))
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


@pytest.mark.parametrize(
    "arch",
    [
        VitArchitecture(image_size=16, patch_size=8, width=64, layers=1, head_width=64, mlp_ratio=4.0, embed_dim=8, num_classes=3),
        VitArchitecture(image_size=32, patch_size=4, width=128, layers=3, head_width=64, mlp_ratio=2.0, embed_dim=24, num_classes=10),
    ],
)
def test_architecture_is_inferred_from_shapes(arch: VitArchitecture, tmp_path: Path):
    model = CLIPClassifier(arch)
    state = {k: v for k, v in model.state_dict().items()}
    assert infer_architecture(state) == arch
    save_classifier(model, tmp_path / "m.pt")
    assert load_classifier(tmp_path / "m.pt").arch == arch


def test_vit_b32_quickgelu_architecture_is_inferred():
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    state = {k: v for k, v in clip.state_dict().items() if k.startswith("visual.")}
    state["classification_head.weight"] = torch.zeros(1000, 512)
    arch = infer_architecture(state)
    assert (arch.image_size, arch.patch_size, arch.width, arch.layers, arch.heads, arch.mlp_ratio, arch.embed_dim) == (
        224, 32, 768, 12, 12, 4.0, 512)


def _write(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    return path


def test_missing_key_is_named(soups_file, tmp_path: Path):
    _, state, _ = soups_file
    del state["model.visual.transformer.resblocks.1.ln_2.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys: visual\.transformer\.resblocks\.1\.ln_2\.bias"):
        load_classifier(_write(tmp_path, state))


def test_missing_text_keys_are_allowed(soups_file, tmp_path: Path):
    _, state, _ = soups_file
    visual_only = {k: v for k, v in state.items() if k.startswith(("model.visual.", "classification_head."))}
    model = load_classifier(_write(tmp_path, visual_only))
    assert model.text_state == {}


def test_extra_key_is_named(soups_file, tmp_path: Path):
    _, state, _ = soups_file
    state["model.visual.surprise"] = torch.zeros(3)
    state["something_else.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as err:
        load_classifier(_write(tmp_path, state))
    assert "something_else.weight" in str(err.value)
    state.pop("something_else.weight")
    with pytest.raises(CheckpointError, match=r"unexpected keys: visual\.surprise"):
        load_classifier(_write(tmp_path, state))


def test_misshaped_key_is_named(soups_file, tmp_path: Path):
    _, state, _ = soups_file
    state["model.visual.ln_post.weight"] = torch.ones(65)
    with pytest.raises(CheckpointError, match=r"mis-shaped tensors: visual\.ln_post\.weight \(65,\) \(expected \(64,\)\)"):
        load_classifier(_write(tmp_path, state))


def test_truncated_file_is_refused_naming_it(soups_file, tmp_path: Path):
    _, _, path = soups_file
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable PyTorch checkpoint"):
        load_classifier(truncated)


@pytest.mark.parametrize("content", [bytes(range(256)) * 8, b"hello, this is text, not a checkpoint"])
def test_garbage_file_is_called_unreadable_not_malicious(tmp_path: Path, content: bytes):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="garbage.pt: not a readable PyTorch checkpoint"):
        read_state_dict(path)


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_with_arbitrary_object_is_refused(tmp_path: Path):
    payload = _Payload()
    payload.marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"model.visual.proj": torch.zeros(2, 2), "x": payload}, path)
    with pytest.raises(CheckpointError, match="evil.pt: refused to load"):
        read_state_dict(path)
    assert not payload.marker.exists()
    # A plain pickle (not a torch zip) is refused too.
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError):
        read_state_dict(plain)
    assert not payload.marker.exists()


def test_zeroshot_head_from_local_weights(tiny_clip_name, tmp_path: Path):
    torch.manual_seed(1)
    clip = open_clip.create_model(tiny_clip_name, pretrained=None).eval()
    weights = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), weights)
    classnames, templates = ["cat", "dog", "bird"], ["a photo of a {}.", "a drawing of a {}."]
    model = build_zeroshot_classifier(tiny_clip_name, str(weights), classnames, templates)

    # Independent computation of SPEC's head: mean of normalised prompt embeddings, renormalised, x logit scale.
    tokenizer = open_clip.get_tokenizer(tiny_clip_name)
    with torch.no_grad():
        rows = []
        for name in classnames:
            emb = F.normalize(clip.encode_text(tokenizer([t.format(name) for t in templates])), dim=-1)
            rows.append(F.normalize(emb.mean(0), dim=-1))
        expected = torch.stack(rows) * clip.logit_scale.exp()
    torch.testing.assert_close(model.classification_head.weight, expected, rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(model.classification_head.bias) == 0
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.normalize(clip.encode_image(x), dim=-1) @ expected.T, rtol=1e-5, atol=1e-4)


def test_tiny_classifier_helper_gives_distinct_models():
    a, b = tiny_classifier(0), tiny_classifier(1)
    assert not torch.equal(a.visual.proj, b.visual.proj)
