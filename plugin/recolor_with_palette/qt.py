"""The one place that imports Qt: PyQt5 in Krita 5, PyQt6 in Krita 6.

Everything else imports Qt names from here. The code uses the scoped enum spelling
(Qt.AlignmentFlag.AlignLeft), which PyQt5 5.11+ and PyQt6 both accept, so switching is this
file's business only. The binding the editor has already loaded wins: a Qt 6 binding loaded
into Krita 5's Qt 5 process (or the reverse) would crash it.
"""

import sys

if "PyQt6.QtCore" in sys.modules:
    from PyQt6 import QtCore, QtGui, QtWidgets

    QT6 = True
else:
    try:
        from PyQt5 import QtCore, QtGui, QtWidgets

        QT6 = False
    except ImportError:
        from PyQt6 import QtCore, QtGui, QtWidgets

        QT6 = True

Qt = QtCore.Qt
Signal = QtCore.pyqtSignal

__all__ = ["QT6", "Qt", "QtCore", "QtGui", "QtWidgets", "Signal", "exec_dialog"]


def exec_dialog(dialog) -> int:
    """QDialog.exec_() in PyQt5, exec() in PyQt6."""
    return dialog.exec() if QT6 else dialog.exec_()
