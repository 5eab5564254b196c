"""Diffusion pipelines, one sub-package per published method (installed as
``layerstudio.pipelines``). None has landed yet; see README's roadmap."""
