"""Progress bars that end in their final state, in a terminal and in an executed notebook.

In a terminal this is tqdm. In a notebook kernel (after :func:`bmclib.notebook.setup`) a bar is
a line of text updated in place through an IPython display handle: papermill stores each update
over the last, so the executed notebook shows where the work ended ("100%| 15000/15000"). tqdm's
own notebook bar is a widget, stored in its first state ("0%| 0/15000") once the widget state is
left out of the executed copy.
"""
from __future__ import annotations

import io

__all__ = ["tqdm", "use_display_handles"]

_DISPLAY = False


def use_display_handles(on: bool = True) -> None:
    """Draw progress bars as text lines updated through display handles (notebook kernels)."""
    global _DISPLAY
    _DISPLAY = on


def tqdm(*args, **kw):
    """A tqdm bar (same arguments), drawn as :mod:`bmclib.progress` says."""
    if _DISPLAY:
        return _display_bar_class()(*args, **kw)
    from tqdm.auto import tqdm as auto

    return auto(*args, **kw)


def _display_bar_class():
    from tqdm.std import tqdm as std

    class DisplayBar(std):
        """tqdm whose every refresh replaces one text/plain output (throttled by ``mininterval``)."""

        def __init__(self, *args, **kw):
            self._handle = None
            kw.setdefault("file", io.StringIO())
            kw.setdefault("mininterval", 2.0)
            super().__init__(*args, **kw)

        def display(self, msg=None, pos=None):
            from IPython.display import display

            bundle = {"text/plain": self.__str__() if msg is None else msg}
            if self._handle is None:
                self._handle = display(bundle, raw=True, display_id=True)
            else:
                self._handle.update(bundle, raw=True)
            return True

    return DisplayBar
