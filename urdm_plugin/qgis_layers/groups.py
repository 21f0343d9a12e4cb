"""Layer-tree groups of result layers: one per run, ``<input> – <method> <time>``, its
layers in run order (abundances in library order, then dominant, residual, uncertainty),
only the first abundance map visible.

Only methods of the project and layer-tree objects given are called (no QGIS import).
"""

from __future__ import annotations

from .tags import layers_with_runs, run_json_of_layer, same_path

GROUP_PREFIX = "URDM – "
#: The group of the dialog's preview (one at a time: a new preview replaces it).
PREVIEW_PREFIX = "URDM preview – "
#: Layer custom property: the layer's place in its run's layer order (0 = first abundance).
RANK_PROPERTY = "urdm/rank"


def group_name_for(input_name: str) -> str:
    """The group of runs with no manifest to name them by (kept for old projects)."""
    return f"{GROUP_PREFIX}{input_name}"


def run_group_name(input_name: str, manifest: dict) -> str:
    """``<input> – <method> <HH:MM:SS>``: the run's method and its local creation time, so
    two runs of one image are told apart at a glance (before making it unique)."""
    import datetime as dt

    method = str(manifest.get("method") or "?")
    when = ""
    try:
        when = dt.datetime.fromisoformat(str(manifest.get("created"))).astimezone().strftime("%H:%M:%S")
    except (TypeError, ValueError):
        pass
    return f"{input_name} – {method} {when}".rstrip()


def unique_group_name(root, base: str) -> str:
    """``base``, or ``base (2)``, ``base (3)``, … when a group of that name exists."""
    names = {g.name() for g in root.findGroups()}
    if base not in names:
        return base
    i = 2
    while f"{base} ({i})" in names:
        i += 1
    return f"{base} ({i})"


def move_layer_into_group(layer, project, group_name: str, rank=None):
    """Move a layer's tree node into the top-level group ``group_name`` (created, expanded,
    at the top when missing). With ``rank`` (its place in the run's layer order) the node
    goes before the first sibling of higher rank — Processing loads a run's layers in no
    particular order — and is visible only when it is the first (rank 0)."""
    root = project.layerTreeRoot()
    group = root.findGroup(group_name)
    if group is None:
        group = root.insertGroup(0, group_name)
        group.setExpanded(True)
    if rank is not None:
        layer.setCustomProperty(RANK_PROPERTY, int(rank))
    node = root.findLayer(layer.id())
    if node is not None and node.parent() is group and rank is None:
        return group
    pos = len(group.children())
    if rank is not None:
        for i, child in enumerate(group.children()):
            other = getattr(child, "layer", lambda: None)()
            r = other.customProperty(RANK_PROPERTY) if other is not None and other is not layer else None
            if r is not None and int(r) > int(rank):
                pos = i
                break
    if node is None:
        new = group.insertLayer(pos, layer)
    else:
        new = node.clone()
        group.insertChildNode(pos, new)  # before removing the old node: a layer with no node
        node.parent().removeChildNode(node)  # in the tree would be dropped from the project
    if rank is not None:
        new.setItemVisibilityChecked(int(rank) == 0)
        new.setExpanded(int(rank) == 0)
    return group


def group_of_run(project, run_json: str, input_name: str):
    """The group holding a layer of ``run_json``; else the run's group (``<input> –
    <method> <time>``, created at the top when missing)."""
    root = project.layerTreeRoot()
    for lyr in layers_with_runs(project):
        if same_path(run_json_of_layer(lyr), run_json):
            node = root.findLayer(lyr.id())
            if node is not None and node.parent() is not None:
                return node.parent()
    from .runs import RunFileError, read_manifest

    try:
        name = run_group_name(input_name, read_manifest(run_json))
    except RunFileError:
        name = group_name_for(input_name)
    return root.findGroup(name) or root.insertGroup(0, name)
