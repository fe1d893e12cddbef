"""Class relations between evaluation sets and the head; ObjectNet's mapping onto ImageNet-1k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from open_clip import IMAGENET_CLASSNAMES

from interpsharp.class_maps import (
    ClassMapError,
    objectnet_classes,
    read_class_mapping,
    read_classnames,
    relate_classes,
)

#: A dozen ObjectNet classes and their ImageNet-1k indices (torchvision order), typed from an
#: independent source: the ObjectNet authors' evaluation template,
#: github.com/abarbu/objectnet-template-tensorflow, mapping_files/imagenet_pytorch_id_to_objectnet_id.json
#: (torchvision index -> ObjectNet id) with mapping_files/additional_mappping_files/objectnet_id.json
#: (ObjectNet name -> id): not the model-soups files the pipeline ships.
INDEPENDENT_PAIRS = {
    "Alarm clock": {409, 530},        # analog clock, digital clock (ObjectNet id 1)
    "Backpack": {414},                # id 2
    "Banana": {954},                  # id 4
    "Band Aid": {419},                # id 5
    "Bath towel": {434},              # id 9
    "Bicycle": {444, 671},            # bicycle-built-for-two, mountain bike (id 17)
    "Chair": {423, 559, 765},         # barber, folding, rocking chair (id 52)
    "Helmet": {518, 560},             # crash helmet, football helmet (id 120)
    "Pen": {418, 563, 749},           # ballpoint, fountain pen, quill (id 182)
    "Skirt": {601, 655, 689},         # hoopskirt, miniskirt, overskirt (id 231)
    "Still Camera": {732, 759},       # Polaroid camera, reflex camera (id 248)
    "Tie": {457, 906},                # bow tie, Windsor tie (id 273)
    "Wheel": {479, 694},              # car wheel, paddlewheel (id 304)
}


def test_objectnet_mapping_agrees_with_an_independent_listing():
    classes = objectnet_classes()
    groups = {name: set(group) for name, group in zip(classes.names, classes.imagenet_groups)}
    for name, expected in INDEPENDENT_PAIRS.items():
        assert groups[name] == expected, name


def test_objectnet_has_113_classes_in_sorted_folder_order_with_disjoint_groups():
    classes = objectnet_classes()
    assert len(classes.folders) == len(classes.names) == len(classes.imagenet_groups) == 113
    assert classes.folders == sorted(classes.folders)
    flat = [i for group in classes.imagenet_groups for i in group]
    assert len(flat) == len(set(flat)) == 125 and all(0 <= i < 1000 for i in flat)
    # torchvision's index 954 is open_clip's (= torchvision's order) 'banana'.
    assert IMAGENET_CLASSNAMES[classes.imagenet_groups[classes.names.index("Banana")][0]] == "banana"


HEAD = ["cat", "dog", "fox", "owl"]


def test_same_classes_in_another_order_get_the_heads_labels():
    relation = relate_classes(["owl", "cat", "fox", "dog"], HEAD)
    assert relation.classnames == HEAD and relation.labels == [3, 0, 2, 1]
    assert relation.class_subset is None and relation.class_groups is None


def test_a_declared_subset_is_matched_by_name():
    relation = relate_classes(["dog", "owl"], HEAD, subset=True)
    assert relation.classnames == ["dog", "owl"] and relation.labels == [0, 1] and relation.class_subset == [1, 3]


def test_a_mapping_groups_head_classes():
    relation = relate_classes(["pet", "wild"], HEAD, mapping={"pet": ["cat", "dog"], "wild": ["fox", "owl"]})
    assert relation.class_groups == [[0, 1], [2, 3]] and relation.labels == [0, 1]


@pytest.mark.parametrize(
    "names, kwargs, message",
    [
        (["cat", "dog", "fox"], {}, "lacks 1 of the ID set's 4 classes ('owl'); if it covers a subset on purpose"),
        (["cat", "dog", "fox", "owl", "eel"], {}, "has classes the ID set does not have: 'eel'"),
        (["cat", "eel"], {"subset": True}, "has classes the ID set does not have: 'eel'"),
        (["pet"], {"mapping": {"pet": ["cat", "wolf"]}}, "class 'pet' maps to 'wolf'"),
        (["pet", "wild"], {"mapping": {"pet": ["cat"]}}, "no entry for 'wild'"),
        (["cat", "cat"], {}, "names several classes alike: cat"),
        (["cat"], {"subset": True, "mapping": {"cat": ["cat"]}}, "either a class subset or a class mapping"),
    ],
)
def test_classes_that_differ_from_the_heads_are_refused_unless_declared(names, kwargs, message):
    with pytest.raises(ClassMapError, match=message.replace("(", r"\(").replace(")", r"\)")):
        relate_classes(names, HEAD, **kwargs)


def test_class_files(tmp_path: Path):
    (tmp_path / "names.json").write_text(json.dumps({"n01": "tabby cat", "n02": "dog"}))
    assert read_classnames(tmp_path / "names.json", ["n02", "n01"]) == ["dog", "tabby cat"]
    with pytest.raises(ClassMapError, match="no class name for folder"):
        read_classnames(tmp_path / "names.json", ["n03"])
    (tmp_path / "map.json").write_text(json.dumps({"pet": ["cat", "dog"], "wild": "fox"}))
    assert read_class_mapping(tmp_path / "map.json") == {"pet": ["cat", "dog"], "wild": ["fox"]}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ClassMapError, match="expected a JSON object"):
        read_class_mapping(tmp_path / "bad.json")
