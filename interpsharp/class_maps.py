"""How an evaluation set's classes relate to the classes of the head (the in-distribution set's).

A classifier has one head, built for the ID set's classes; every evaluation set is scored with
it. Three relations are allowed, each as WiSE-FT scores the paper's sets:

- **same** classes (ImageNet-Sketch, -V2 against ImageNet; any order of folders): labels are
  the head's indices;
- a **subset** of them, matched by name (ImageNet-A and -R: 200 of the 1000): the logits are
  restricted to those classes (``class_subset``), labels index the subset;
- a declared **mapping**, each of the set's classes onto one or more head classes (ObjectNet:
  113 classes onto 125 ImageNet classes): the logit of a class is the maximum over its head
  classes (``class_groups``), WiSE-FT's ``project_logits``.

Anything else (a set whose classes are not the head's and no mapping) is refused: scoring it
would pair images with the wrong logits and still give a plausible number.

ObjectNet's mapping is data shipped in ``resources/objectnet/`` (model-soups, MIT; see its
SOURCE.md), read here exactly as WiSE-FT's ``get_metadata`` reads it.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence


class ClassMapError(ValueError):
    """Classes of an evaluation set that cannot be related to the head's classes."""


@dataclass(frozen=True)
class ClassRelation:
    """An evaluation set's classes against the head's.

    ``classnames`` are the cache's classes in label order; ``labels[i]`` is the label of the
    set's class ``i`` (its position in the set's own class list); exactly one of
    ``class_subset`` / ``class_groups`` is set unless the classes are the head's own.
    """

    classnames: list[str]
    labels: list[int]
    class_subset: list[int] | None = None
    class_groups: list[list[int]] | None = None


def relate_classes(
    classnames: Sequence[str],
    head_classnames: Sequence[str],
    subset: bool = False,
    mapping: Mapping[str, Sequence[str]] | None = None,
    what: str = "the evaluation set",
) -> ClassRelation:
    """Relate a set's classes (``classnames``, in its own label order) to the head's by name."""
    classnames, head = list(classnames), list(head_classnames)
    for names, whose in ((classnames, what), (head, "the ID set (the head)")):
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ClassMapError(f"{whose} names several classes alike: {', '.join(repeated[:5])}; class names must be unique")
    if subset and mapping is not None:
        raise ClassMapError(f"{what}: declare either a class subset or a class mapping, not both")
    position = {name: i for i, name in enumerate(head)}
    if mapping is not None:
        return _mapped(classnames, position, mapping, what)
    unknown = [n for n in classnames if n not in position]
    if unknown:
        raise ClassMapError(
            f"{what} has classes the ID set does not have: {_shown(unknown)} (ID classes: {_shown(head)}). Name them "
            f"as the ID set does, or declare a class_mapping from each of its classes to ID classes"
        )
    if subset:
        return ClassRelation(classnames, list(range(len(classnames))), class_subset=[position[n] for n in classnames])
    missing = [n for n in head if n not in set(classnames)]
    if missing:
        raise ClassMapError(
            f"{what} lacks {len(missing)} of the ID set's {len(head)} classes ({_shown(missing)}); if it covers a subset "
            f"on purpose (like ImageNet-A's 200), declare it (subset: true) and its logits are restricted to those classes"
        )
    return ClassRelation(head, [position[n] for n in classnames])


def _mapped(classnames: list[str], position: dict[str, int], mapping: Mapping[str, Sequence[str]], what: str) -> ClassRelation:
    unmapped = [n for n in classnames if n not in mapping]
    if unmapped:
        raise ClassMapError(f"{what}: the class mapping has no entry for {_shown(unmapped)}")
    groups = []
    for name in classnames:
        targets = list(mapping[name])
        unknown = [t for t in targets if t not in position]
        if not targets or unknown:
            raise ClassMapError(f"{what}: class {name!r} maps to {_shown(unknown) if unknown else 'nothing'}, "
                                f"which {'are' if unknown else 'is'} not among the ID set's classes")
        groups.append([position[t] for t in targets])
    return ClassRelation(classnames, list(range(len(classnames))), class_groups=groups)


def _shown(names: Sequence[str], limit: int = 8) -> str:
    return ", ".join(repr(n) for n in names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def read_class_mapping(path: str | os.PathLike) -> dict[str, list[str]]:
    """A JSON object mapping each class name of a set to an ID class name or a list of them."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ClassMapError(f"{path}: cannot read the class mapping ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, (str, list)) for v in data.values()):
        raise ClassMapError(f"{path}: expected a JSON object {{set class: ID class or [ID classes]}}")
    return {str(k): [v] if isinstance(v, str) else [str(t) for t in v] for k, v in data.items()}


def read_classnames(path: str | os.PathLike, folders: Sequence[str]) -> list[str]:
    """Class names of ``folders`` from a JSON object ``{folder: class name}`` naming every folder."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ClassMapError(f"{path}: cannot read the class names ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ClassMapError(f"{path}: expected a JSON object {{folder name: class name}}")
    missing = [f for f in folders if f not in data]
    if missing:
        raise ClassMapError(f"{path}: no class name for folder(s) {_shown(missing)}")
    return [data[f] for f in folders]


def write_head_classes(path: str | os.PathLike, classnames: Sequence[str], dataset: str) -> None:
    """Record the head's classes (the ID set's) as JSON, atomically: every cache and the
    zero-shot head are built against this one list."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"dataset": dataset, "classnames": list(classnames)}, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_head_classes(path: str | os.PathLike) -> list[str]:
    """The class list :func:`write_head_classes` recorded."""
    try:
        names = json.loads(Path(path).read_text())["classnames"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ClassMapError(f"{path}: not a class list written by the workflow ({err}); delete it to rebuild it") from None
    return [str(n) for n in names]


def folder_classname(folder: str) -> str:
    """The default class name of a folder: its name with underscores as spaces (prompts read
    'a photo of a golden retriever.', not 'golden_retriever')."""
    return folder.replace("_", " ").strip()


# -- ObjectNet ---------------------------------------------------------------------------------

#: Images of ObjectNet 1.0's 113 ImageNet-overlapping classes (WiSE-FT / model-soups).
OBJECTNET_IMAGES = 18574


@dataclass(frozen=True)
class ObjectNetClasses:
    """The 113 ObjectNet classes that overlap ImageNet-1k, in sorted folder order (the labels)."""

    folders: list[str]
    names: list[str]
    imagenet_groups: list[list[int]]


def _objectnet_file(name: str) -> str:
    return importlib.resources.files("interpsharp.resources").joinpath("objectnet").joinpath(name).read_text()


def objectnet_classes() -> ObjectNetClasses:
    """ObjectNet's classes and their ImageNet-1k indices (torchvision order: sorted WordNet IDs).

    As WiSE-FT's ``get_metadata``: ObjectNet names map to ImageNet-2012 label names
    (``objectnet_to_imagenet_1k.json``, '; '-separated), a name's line in
    ``imagenet_to_label_2012_v2`` is its 2012 id, and ``pytorch_to_imagenet_2012_id.json``
    turns a torchvision index into a 2012 id. Labels are positions in the sorted folder names.
    """
    folder_of = {name: folder for folder, name in json.loads(_objectnet_file("folder_to_objectnet_label.json")).items()}
    to_imagenet = json.loads(_objectnet_file("objectnet_to_imagenet_1k.json"))
    torch_index_of_2012 = {int(v): int(k) for k, v in json.loads(_objectnet_file("pytorch_to_imagenet_2012_id.json")).items()}
    lines = _objectnet_file("imagenet_to_label_2012_v2").splitlines()
    index_of_name: dict[str, int] = {}
    for id_2012, name in enumerate(lines):
        index_of_name[name.strip()] = torch_index_of_2012[id_2012]
    by_folder = {}
    for objectnet_name, imagenet_names in to_imagenet.items():
        by_folder[folder_of[objectnet_name]] = (objectnet_name, [index_of_name[n] for n in imagenet_names.split("; ")])
    folders = sorted(by_folder)
    return ObjectNetClasses(folders, [by_folder[f][0] for f in folders], [by_folder[f][1] for f in folders])
