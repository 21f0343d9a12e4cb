"""Result layers of a run in QGIS, shared by the dialog (gui/) and Processing (processing/).

- :mod:`.runs`: a finished run's files (run.json via core's RunManifest; no QGIS);
- :mod:`.dominant`: background-safe preparation (dominant-material map, display ranges);
- :mod:`.tags`: the ``urdm/*`` layer properties and finding a run's layers in a project;
- :mod:`.style`: palettes and renderers per role;
- :mod:`.load`: result layers into a project (load, style, tag);
- :mod:`.groups`: layer-tree groups of runs;
- :mod:`.map_sheet`: the print layout of a run and its PDF/PNG export.
"""
