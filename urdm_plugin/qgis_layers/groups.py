"""Layer-tree groups of result layers: ``URDM – <input name>`` (unique), moving layers in.

Only methods of the project and layer-tree objects given are called (no QGIS import).
"""

from __future__ import annotations

from .tags import layers_with_runs, run_json_of_layer, same_path

GROUP_PREFIX = "URDM – "


def group_name_for(input_name: str) -> str:
    """The group name of the results of ``input_name`` (before making it unique)."""
    return f"{GROUP_PREFIX}{input_name}"


def unique_group_name(root, base: str) -> str:
    """``base``, or ``base (2)``, ``base (3)``, … when a group of that name exists."""
    names = {g.name() for g in root.findGroups()}
    if base not in names:
        return base
    i = 2
    while f"{base} ({i})" in names:
        i += 1
    return f"{base} ({i})"


def move_layer_into_group(layer, project, group_name: str):
    """Move a layer's tree node into the (created if needed) top-level group ``group_name``."""
    root = project.layerTreeRoot()
    group = root.findGroup(group_name)
    if group is None:
        group = root.insertGroup(0, group_name)
    node = root.findLayer(layer.id())
    if node is None:
        group.addLayer(layer)
        return group
    if node.parent() is group:
        return group
    clone = node.clone()
    group.addChildNode(clone)
    node.parent().removeChildNode(node)
    return group


def group_of_run(project, run_json: str, input_name: str):
    """The group holding a layer of ``run_json``; else the group ``URDM – <input_name>``
    (created at the top when missing)."""
    root = project.layerTreeRoot()
    for lyr in layers_with_runs(project):
        if same_path(run_json_of_layer(lyr), run_json):
            node = root.findLayer(lyr.id())
            if node is not None and node.parent() is not None:
                return node.parent()
    name = group_name_for(input_name)
    return root.findGroup(name) or root.insertGroup(0, name)
