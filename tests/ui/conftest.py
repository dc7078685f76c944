"""Async tests in this folder run on a qasync loop (see tests/qt_loop.py); the chart tests share one shown chart."""

import pytest

from tests.qt_loop import pytest_asyncio_loop_factories  # noqa: F401 - a pytest hook


def shown_chart(qtbot, **kwargs):
    """A ChartWidget at 1200x700, shown and exposed, as the chart tests draw it (``kwargs`` go to the widget)."""
    from app.ui.chart.chart_widget import ChartWidget

    w = ChartWidget(timeframe="1m", **kwargs)
    w.resize(1200, 700)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


@pytest.fixture
def chart(qtbot):
    return shown_chart(qtbot)
