"""theta_0: open_clip's image tower plus the zero-shot head from ImageNet class names and
OpenAI's 80 prompt templates (SPEC)."""

from workflow_job import start

start(snakemake)

from open_clip import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

from interpsharp.checkpoints import build_zeroshot_classifier, save_classifier
from interpsharp.evaluate import pick_device

model = build_zeroshot_classifier(
    snakemake.params.model_name,
    snakemake.params.pretrained,
    IMAGENET_CLASSNAMES,
    OPENAI_IMAGENET_TEMPLATES,
    cache_dir=snakemake.params.cache_dir,
    head_width=snakemake.params.head_width,
    device=pick_device(snakemake.params.device),
)
save_classifier(model, snakemake.output[0])
