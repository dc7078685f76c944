"""The status bar's strip: labels ranked by importance; when the window is too narrow for all, whole items are
hidden from the least important end (``app.view.status.fit_ranks``) instead of the prices being cut ("bid 6…").

A label is shown when it is *wanted* (it has something to say: the caller's ``want``) and it fits. The strip's
minimum width is that of its most important items only, so it never raises the window's minimum width."""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.view.status import StatusItem, fit_ranks

SPACING = 6


class StatusStrip(QtWidgets.QWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusStrip")
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(SPACING)
        lay.addStretch(1)
        self._labels: list[QtWidgets.QLabel] = []
        self._rank: dict[int, int] = {}
        self._wanted: dict[int, bool] = {}
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)

    def add(self, label: QtWidgets.QLabel, rank: int, wanted: bool = True) -> QtWidgets.QLabel:
        lay = self.layout()
        assert isinstance(lay, QtWidgets.QHBoxLayout)
        # Each label at its full width (never squeezed into "bid 6…"); what does not fit is hidden whole.
        label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Fixed, QtWidgets.QSizePolicy.Policy.Preferred)
        lay.insertWidget(lay.count() - 1, label)  # before the stretch: packed to the left, in order
        self._labels.append(label)
        self._rank[id(label)] = rank
        self._wanted[id(label)] = wanted
        label.setVisible(wanted)
        return label

    def want(self, label: QtWidgets.QLabel, on: bool) -> None:
        """Whether ``label`` has something to show; it is shown if it also fits."""
        if self._wanted.get(id(label)) != on:
            self._wanted[id(label)] = on
            self.fit()

    def wanted(self, label: QtWidgets.QLabel) -> bool:
        return self._wanted.get(id(label), False)

    def apply(self, label: QtWidgets.QLabel, item: StatusItem | None) -> None:
        """Text, level (styles it) and tooltip of a status item; None: nothing to show."""
        if item is None:
            self.want(label, False)
            return
        if label.text() != item.text:
            label.setText(item.text)
        if label.toolTip() != item.tooltip:
            label.setToolTip(item.tooltip)
        if item.level and label.property("level") != item.level:
            label.setProperty("level", item.level)
            label.style().unpolish(label)
            label.style().polish(label)
        self.want(label, True)

    def minimumSizeHint(self) -> QtCore.QSize:
        height = max((lab.sizeHint().height() for lab in self._labels), default=0)
        top = [lab for lab in self._labels if self._rank[id(lab)] <= 1 and self._wanted[id(lab)]]
        width = sum(lab.sizeHint().width() for lab in top) + SPACING * max(0, len(top) - 1)
        return QtCore.QSize(width, height)

    def sizeHint(self) -> QtCore.QSize:
        wanted = [lab for lab in self._labels if self._wanted[id(lab)]]
        width = sum(lab.sizeHint().width() for lab in wanted) + SPACING * max(0, len(wanted) - 1)
        return QtCore.QSize(width, self.minimumSizeHint().height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()

    def showEvent(self, event) -> None:  # the first resize comes before the strip is visible
        super().showEvent(event)
        self.fit()

    def fit(self) -> None:
        """Show the wanted labels that fit, most important first; call after texts change (widths move)."""
        wanted = {str(i): lab for i, lab in enumerate(self._labels) if self._wanted[id(lab)]}
        widths = {k: lab.sizeHint().width() for k, lab in wanted.items()}
        ranks = {k: self._rank[id(lab)] for k, lab in wanted.items()}
        shown = fit_ranks(widths, ranks, self.width(), SPACING) if wanted else set()
        changed = False
        for i, lab in enumerate(self._labels):
            visible = str(i) in shown
            if lab.isVisibleTo(self) != visible:
                lab.setVisible(visible)
                changed = True
        lay = self.layout()
        if self.isVisible() and (changed or lay.geometry().size() != self.size()):
            lay.invalidate()
            lay.activate()  # positions now, not at the next turn of the event loop

    def shown(self) -> list[QtWidgets.QLabel]:
        return [lab for lab in self._labels if lab.isVisibleTo(self)]
