"""theta_0: an open_clip image tower plus the zero-shot head for the ID set's class names, with
OpenAI's 80 prompt templates or the configured ones (SPEC)."""

from workflow_job import start

start(snakemake)

from open_clip import OPENAI_IMAGENET_TEMPLATES

from interpsharp.checkpoints import TowerSpec, build_zeroshot_classifier, read_templates, save_classifier
from interpsharp.class_maps import read_head_classes
from interpsharp.evaluate import pick_device
from interpsharp.towers import register_model_config

params = snakemake.params
register_model_config(params.model_config)
templates = read_templates(snakemake.input.templates) if snakemake.input.templates else OPENAI_IMAGENET_TEMPLATES
model = build_zeroshot_classifier(
    params.model_name,
    params.pretrained,
    read_head_classes(snakemake.input.classes),
    templates,
    cache_dir=params.cache_dir,
    device=pick_device(params.device),
    mean=params.mean,
    std=params.std,
)
save_classifier(model, snakemake.output[0])
print(f"{params.model_name} ({params.pretrained}): {model.arch.num_classes} classes, {len(templates)} templates; "
      f"tower: {TowerSpec.of(model).describe()}")
