"""The Gradio web UI (installed as ``layerstudio.ui``): ``layerstudio ui`` or
:func:`layerstudio.ui.app.launch`. Needs the ``ui`` extra (``pip install layerstudio[ui]``)."""
