"""``imagenet_class_subsets.json`` against sources that are not the file itself.

For ImageNet-A and ImageNet-R the file lists, in the order of the set's sorted WordNet-ID
folders (the label each folder gets), the ImageNet-1k index of that class. A wrong entry
silently scores a class against another class's logit, so it is checked twice:

- a dozen (position, wnid, index) triples typed here. The ImageNet-1k index and name of each
  wnid come from Keras' ``imagenet_class_index.json``
  (https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json,
  ``{"0": ["n01440764", "tench"], ...}``); the position is the wnid's place among the set's
  200 sorted class folders (first and last are the smallest and largest wnid; the others were
  counted in timm's ``imagenet_a_synsets.txt`` / ``imagenet_r_synsets.txt``);
- all 200 classes of each set, recomputed from timm's synset lists
  (huggingface/pytorch-image-models, ``timm/data/_info/``: ``imagenet_synsets.txt`` is the
  1000 ImageNet-1k wnids in index order, the other two the sets' class folders), when timm is
  installed (open_clip depends on it).
"""

from __future__ import annotations

import importlib.resources

import pytest

from interpsharp.datasets import imagenet_class_subset

#: (subset key, position among the set's sorted wnid folders, wnid, ImageNet-1k index, Keras name)
KNOWN = [
    ("imagenet_a", 0, "n01498041", 6, "stingray"),
    ("imagenet_a", 1, "n01531178", 11, "goldfinch"),
    ("imagenet_a", 7, "n01631663", 27, "eft"),
    ("imagenet_a", 135, "n03888257", 701, "parachute"),
    ("imagenet_a", 168, "n04442312", 859, "toaster"),
    ("imagenet_a", 199, "n12267677", 988, "acorn"),
    ("imagenet_r", 0, "n01443537", 1, "goldfish"),
    ("imagenet_r", 1, "n01484850", 2, "great_white_shark"),
    ("imagenet_r", 10, "n01630670", 26, "common_newt"),
    ("imagenet_r", 155, "n03947888", 724, "pirate"),
    ("imagenet_r", 187, "n07742313", 948, "Granny_Smith"),
    ("imagenet_r", 199, "n12267677", 988, "acorn"),
]

TIMM_SYNSETS = {"imagenet_a": "imagenet_a_synsets.txt", "imagenet_r": "imagenet_r_synsets.txt"}


@pytest.mark.parametrize("key, position, wnid, index, name", KNOWN, ids=[f"{k}-{n}" for k, _, _, _, n in KNOWN])
def test_known_classes_sit_at_their_image_net_index(key, position, wnid, index, name):
    subset = imagenet_class_subset(key)
    assert len(subset) == len(set(subset)) == 200
    assert subset[position] == index, f"{key}: folder {wnid} ({name}) must score against ImageNet class {index}"


def _timm_synsets(name: str) -> list[str]:
    pytest.importorskip("timm")
    return importlib.resources.files("timm.data._info").joinpath(name).read_text().split()


@pytest.mark.parametrize("key", list(TIMM_SYNSETS))
def test_every_class_matches_timm_synset_lists(key):
    imagenet = _timm_synsets("imagenet_synsets.txt")
    folders = sorted(_timm_synsets(TIMM_SYNSETS[key]))
    assert len(imagenet) == 1000 and len(folders) == 200
    assert imagenet_class_subset(key) == [imagenet.index(wnid) for wnid in folders]
    # The typed table above agrees with the same lists (a typo there would pass unnoticed otherwise).
    for known_key, position, wnid, index, _ in KNOWN:
        if known_key == key:
            assert folders[position] == wnid and imagenet.index(wnid) == index
