"""A ViT-B-32-quickgelu-shaped (theta_0, theta_1) pair and a labelled cache for the precision gate.

No pretrained weights or ImageNet can be downloaded here, so the pair is built offline, shaped
like the paper world's and sized like a fine-tune:

- theta_0: open_clip's random ViT-B-32-quickgelu image tower (``random_classifier``), "aged"
  so no tensor sits on a value bf16 represents exactly: LayerNorm gains 1 + 0.1 N(0, 1),
  biases 0.02 N(0, 1) (random init has 1s and 0s). The head imitates a zero-shot head:
  100 x unit rows. Random towers map every image to nearly one direction, so the first
  ``--prototypes`` rows are the centred features of that many prototype images (other images
  than the evaluated ones) and the rest random unit vectors: predictions differ between images.
- theta_1 = theta_0 + r_L * rms(theta_0 tensor) * N(0, 1) per tensor, with one relative size
  r_L ~ U(1 %, 5 %) per layer group (head included): fine-tuning-sized changes, in a random
  direction. At alpha = 0.05 most elements then move by less than half a bf16 step.
- Labels: the fp32 predictions of theta(``--teacher-alpha``) (default 0.05) on a mix of demo
  world images (``photo`` and ``clutter``, 32 px upsampled to 224 px). That plants a gain at a
  small alpha (A = 100 % there by construction), exactly where bf16 spacing can erase the path.

Writes ``zeroshot.pt``, ``displaced.pt`` (model-soups format), a cache ``mix/`` and
``pair.json`` (every setting and seed), then prints the ``interpsharp check-precision`` command
(:data:`CHECK`). Both take about an hour on one CPU core under load; on a GPU, raise
``--images`` and the check's ``--m`` and draws.

    python scripts/precision_vitb32_pair.py --world /tmp/precision_world --out /tmp/vitb32_pair
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from interpsharp.checkpoints import classifier_from_state, random_classifier, save_classifier
from interpsharp.classifier import CLIPClassifier
from interpsharp.data import load_cache, write_cache
from interpsharp.evaluate import normalize_images
from interpsharp.interpolate import interpolate
from interpsharp.layers import layer_groups


def upsampled(world: Path, names: list[str], per_set: int, offset: int, size: int) -> np.ndarray:
    """``per_set`` images from each demo cache (from index ``offset``), resized to ``size`` px."""
    parts = []
    for name in names:
        cache = load_cache(world / "data" / name)
        images = torch.from_numpy(np.array(cache.images[offset:offset + per_set]))
        parts.append(F.interpolate(images.float(), size=size, mode="bilinear").round().clamp(0, 255).to(torch.uint8))
    return torch.cat(parts).numpy()


def features(model: CLIPClassifier, images: np.ndarray, batch_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(images), batch_size), desc="features", unit="batch"):
            out.append(F.normalize(model.encode_image(normalize_images(torch.from_numpy(images[start:start + batch_size]), model.preprocess)), dim=-1))
    return torch.cat(out)


def predictions(model: CLIPClassifier, images: np.ndarray, batch_size: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(images), batch_size), desc="labels", unit="batch"):
            out.append(model(normalize_images(torch.from_numpy(images[start:start + batch_size]), model.preprocess)).argmax(1))
    return torch.cat(out).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True, help="a demo world folder ('interpsharp demo build --out ...')")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--images", type=int, default=100, help="evaluated images per demo set (default: %(default)s)")
    parser.add_argument("--prototypes", type=int, default=100, help="head rows from prototype images (default: %(default)s)")
    parser.add_argument("--teacher-alpha", type=float, default=0.05, help="alpha whose predictions are the labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    world = Path(args.world)

    model = random_classifier("ViT-B-32-quickgelu", seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    state = model.state_dict()
    for name, tensor in state.items():
        if name.endswith(".bias") or name.endswith("in_proj_bias"):
            tensor.copy_(0.02 * torch.randn(tensor.shape, generator=generator))
        elif "ln_" in name and name.endswith(".weight"):
            tensor.copy_(1 + 0.1 * torch.randn(tensor.shape, generator=generator))
    # Prototype head rows: centred features of images the check does not evaluate.
    model.load_state_dict(state)
    proto = features(model, upsampled(world, ["photo2", "sketch"], args.prototypes // 2, 0, 224), args.batch_size)
    rows = torch.cat([proto - proto.mean(0), torch.randn(1000 - len(proto), proto.shape[1], generator=generator)])
    state["classification_head.weight"] = 100 * F.normalize(rows, dim=-1)
    theta_0 = {k: v.clone() for k, v in state.items()}

    groups = layer_groups(model)
    sizes = {layer: float(0.01 + 0.04 * torch.rand((), generator=generator)) for layer in groups}
    theta_1 = {}
    for layer, names in groups.items():
        for name in names:
            w = theta_0[name]
            rms = w.pow(2).mean().sqrt()
            theta_1[name] = w + sizes[layer] * rms * torch.randn(w.shape, generator=generator)

    images = upsampled(world, ["photo", "clutter"], args.images, 0, 224)
    teacher = classifier_from_state(interpolate(theta_0, theta_1, args.teacher_alpha))
    labels = predictions(teacher, images, args.batch_size)
    write_cache(out / "mix", images, labels, [f"class {i}" for i in range(1000)],
                meta={"name": "mix", "source": "demo photo + clutter upsampled to 224 px",
                      "labels": f"fp32 predictions of theta({args.teacher_alpha})"})
    for name, tensors in (("zeroshot", theta_0), ("displaced", theta_1)):
        save_classifier(classifier_from_state(tensors), out / f"{name}.pt")
    record = {"seed": args.seed, "images": len(images), "distinct_labels": int(len(set(labels.tolist()))),
              "teacher_alpha": args.teacher_alpha, "prototypes": args.prototypes,
              "relative_change_per_layer": sizes}
    (out / "pair.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out}: {len(images)} images, {record['distinct_labels']} distinct labels; then:")
    print(CHECK.format(out=out))


#: The check run on the pair (CPU-sized: 16 sharpness images, few draws, late layers only).
CHECK = """\
interpsharp check-precision {out}/zeroshot.pt {out}/displaced.pt --data {out}/mix \\
  --alphas 0 0.02 0.05 0.1 0.5 1 --candidates bf16 bf16_emulated bf16_delta_emulated \\
  --sharpness-data mix --m 16 --rho 1 0.1 --n-iter 4 --layerwise-rho 1 --layerwise-n-iter 2 \\
  --layers visual.transformer.resblocks.11.attn visual.transformer.resblocks.11.mlp.c_fc \\
           visual.ln_post visual.proj classification_head \\
  --sharpness-alphas 0.05 1 --batch-size 50 -o {out}/check"""


if __name__ == "__main__":
    main()
