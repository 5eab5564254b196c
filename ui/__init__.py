"""The Gradio web UI (installed as ``layerstudio.ui``): ``layerstudio ui`` or
:func:`layerstudio.ui.app.launch`. Needs the ``ui`` extra (``pip install layerstudio[ui]``)."""

import os

# Before any module of this package imports Gradio: no analytics or version calls home (the
# app also passes analytics_enabled=False; this covers Gradio's import-time checks).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
