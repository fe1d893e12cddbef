"""Stand-ins for the files a real user has: a tiny open_clip CLIP (config JSON + weights file),
fine-tuned checkpoints of it in the formats the workflow accepts, and the evaluation sets in
their real on-disk layouts and archives. Shared by the paper-world rehearsal
(tests/test_rehearsal.py) and the custom world's run (tests/test_custom_world.py)."""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import open_clip
import torch

from dataset_trees import make_flat_tree, make_objectnet_tree, make_tree, wnids
from test_download import FaultyHandler

from interpsharp.class_maps import OBJECTNET_IMAGES


def tiny_clip_config(path: Path, quick_gelu: bool, head_width: int = 32) -> str:
    """Write a tiny open_clip CLIP config (OpenAI-layout ViT, 16 px) named after the file;
    returns the name. Heads 32 wide, not OpenAI's 64, so the head width must travel with the
    checkpoint to be right."""
    cfg = {
        "embed_dim": 16,
        "quick_gelu": quick_gelu,
        "vision_cfg": {"image_size": 16, "layers": 2, "width": 64, "head_width": head_width, "patch_size": 8, "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1))
    open_clip.add_model_config(path)
    return path.stem


def tiny_clip(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None).eval()


def finetuned_state(clip: torch.nn.Module, num_classes: int, seed: int, scale: float = 0.02) -> dict[str, torch.Tensor]:
    """An open_clip CLIP's state with every image-tower tensor moved a little (a stand-in for a
    fine-tune) and a random classification head: ``visual.*``, text tensors and
    ``classification_head.*``."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in clip.state_dict().items():
        moved = value + scale * value.abs().mean() * torch.randn(value.shape, generator=g) if key.startswith("visual.") else value
        state[key] = moved.clone()
    dim = clip.visual.proj.shape[1]
    state["classification_head.weight"] = torch.randn(num_classes, dim, generator=g)
    state["classification_head.bias"] = torch.zeros(num_classes)
    return state


def model_soups_format(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """model-soups' ModelWrapper.state_dict(): ``model.<CLIP keys>`` minus the text transformer."""
    out = {k: v for k, v in state.items() if k.startswith("classification_head.")}
    out.update({f"model.{k}": v for k, v in state.items()
                if not k.startswith(("classification_head.", "transformer."))})
    return out


def torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def tar_bytes(tree: Path, arcname: str, gz: bool = False) -> bytes:
    """A tar (or tar.gz) of ``tree`` whose single top-level folder is ``arcname``, as the real
    archives are laid out."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tf:
        tf.add(tree, arcname=arcname)
    return buffer.getvalue()


def paper_world_standins(root: Path) -> dict[str, bytes]:
    """Write the paper world's local stand-ins under ``root`` (``rehearsal/`` of
    config/rehearsal.yaml) and return the downloads, by URL path, for the loopback server."""
    name = tiny_clip_config(root / "interpsharp-rehearsal-vit.json", quick_gelu=True)
    clip = tiny_clip(name, seed=0)
    torch.save(clip.state_dict(), root / "clip.pt")
    (root / "templates.txt").write_text("a photo of a {}.\na sketch of the {}.\n")
    served = {f"/model-soups/model_{i}.pt": torch_bytes(model_soups_format(finetuned_state(clip, 1000, seed=i)))
              for i in (3, 7)}

    imagenet = wnids(1000, seed=11)
    make_flat_tree(root / "imagenet" / "val", imagenet)
    make_tree(root / "imagenet-sketch" / "sketch", imagenet, 1, seed=12)
    scratch = root / ".archives"
    make_tree(scratch / "imagenet-a", wnids(200, seed=13), 1, seed=13)
    (scratch / "imagenet-a" / "README.txt").write_text("ImageNet-A ships this file beside its class folders\n")
    make_flat_tree(scratch / "imagenet-r", wnids(200, seed=14))
    make_flat_tree(scratch / "v2", [str(k) for k in range(1000)])
    served["/hendrycks/imagenet-a.tar"] = tar_bytes(scratch / "imagenet-a", "imagenet-a")
    served["/hendrycks/imagenet-r.tar"] = tar_bytes(scratch / "imagenet-r", "imagenet-r")
    served["/vaishaal/imagenetv2-matched-frequency.tar.gz"] = tar_bytes(
        scratch / "v2", "imagenetv2-matched-frequency-format-val", gz=True)
    make_objectnet_tree(root / "objectnet-1.0" / "images", OBJECTNET_IMAGES)
    return served


@contextmanager
def loopback_server(files: dict[str, bytes]) -> Iterator[type]:
    """tests/test_download.py's server (Range support, request log) on 127.0.0.1 serving
    ``files``; yields the handler class, whose ``url`` is the base URL and ``log`` the requests."""
    handler = type("Handler", (FaultyHandler,), {"files": files, "faults": {}, "log": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    handler.port = httpd.server_address[1]
    try:
        yield handler
    finally:
        httpd.shutdown()
        httpd.server_close()
