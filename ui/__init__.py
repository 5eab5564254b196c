"""The Gradio web UI (installed as ``layerstudio.ui``). Not built yet; see README's roadmap."""
