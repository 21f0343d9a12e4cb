"""Message-bar messages shown whole: QGIS's message item gives its text two lines and a
scroll bar, which hid the advice at the end of long messages (the poor-fit warning after a
run, "Choose another folder." in the dialog). The item's text box grows to its text here,
up to :data:`MAX_LINES` lines (beyond that it scrolls)."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import QTextBrowser

#: Lines a message shows before it scrolls.
MAX_LINES = 12


def fit_message_text(item) -> None:
    """Make the text box of a QgsMessageBarItem as tall as its wrapped text (at most
    :data:`MAX_LINES` lines), now and whenever the item's width changes the wrapping."""
    box = item.findChild(QTextBrowser)
    if box is None:
        return
    doc = box.document()

    def fit(*_):
        line = box.fontMetrics().lineSpacing()
        frame = 2 * box.frameWidth() + int(doc.documentMargin())
        height = min(int(doc.size().height()) + frame, MAX_LINES * line + frame)
        box.setMinimumHeight(height)
        box.setMaximumHeight(height)
        item.setMinimumHeight(height)

    doc.documentLayout().documentSizeChanged.connect(fit)
    fit()


def push_message(bar, text: str, level, duration: int = 0, title: str = "URDM", buttons=()):
    """Push ``text`` to the QgsMessageBar ``bar`` shown in full (wrapped, not cut), with
    optional ``buttons`` (QPushButton) after it; returns the item."""
    item = bar.createMessage(title, text)
    for b in buttons:
        b.setParent(item)
        item.layout().addWidget(b)
    fit_message_text(item)
    bar.pushWidget(item, level, duration)
    return item
