"""What a widget shows where no live kernel drives it: a plain "run this cell".

A stored notebook carries each widget's saved state, so JupyterLab redraws
it when the notebook is opened; where it cannot (a viewer without the
widget manager, state lost to an autosave without it), the front end falls
back to the output's ``text/plain``, which ipywidgets fills with the
widget's full ``repr`` -- a screen of ``VBox(children=(HBox(...`` that
says nothing to a reader.  :class:`RunHint` replaces it with one line
saying what the widget is and that running the cell brings it to life;
the line is also what nbval compares, the same on every run.
"""

from __future__ import annotations

from typing import Any

__all__ = ("RunHint",)


class RunHint:
    """Mixin for an ``ipywidgets`` widget: a plain ``text/plain`` fallback (see the module)."""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if bundle is not None:
            bundle["text/plain"] = (
                f"{type(self).__name__}: an interactive widget; run this cell to use it"
            )
        return bundle
