"""QGIS user interface: dialog, background task, result styling, extra map tools."""
