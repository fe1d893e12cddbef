"""One of your fine-tuned checkpoints (finetuned.checkpoints), in any accepted format, checked
against theta_0's architecture and written in the model-soups format every later job reads."""

from workflow_job import start

start(snakemake)

from interpsharp.checkpoints import (
    TowerSpec,
    classifier_tensors,
    load_classifier,
    read_checkpoint,
    read_head,
    read_templates,
    save_classifier,
    zeroshot_head_of_checkpoint,
)
from interpsharp.class_maps import read_head_classes
from interpsharp.download import verify_file
from interpsharp.evaluate import pick_device
from interpsharp.towers import register_model_config

params, source = snakemake.params, snakemake.input.checkpoint
if params.local and params.sha256:
    verify_file(source, expected_sha256=params.sha256)
theta_0 = load_classifier(snakemake.input.zeroshot)
head = None
if params.head == "zeroshot":
    from open_clip import OPENAI_IMAGENET_TEMPLATES

    register_model_config(params.model_config)
    templates = read_templates(snakemake.input.templates) if snakemake.input.templates else OPENAI_IMAGENET_TEMPLATES
    head = zeroshot_head_of_checkpoint(source, params.model_name, read_head_classes(snakemake.input.classes), templates,
                                       device=pick_device(params.device))
elif params.head:
    head = read_head(snakemake.input.head)
model = load_classifier(source, like=theta_0, head=head)
save_classifier(model, snakemake.output[0])
fmt = classifier_tensors(read_checkpoint(source)).format
print(f"{source}: {fmt}, head {params.head or 'its own'}; {model.arch.num_classes} classes; tower {TowerSpec.of(model).describe()}")
