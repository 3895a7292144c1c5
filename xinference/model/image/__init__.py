"""The image model type (``text2image``, ``image2image``, ``inpainting``).

Its parts, named in :mod:`xinference.model_types`: the family check and the flat
custom shape (:mod:`.family`), the engine interface (:mod:`.engine`), the serving
module (:mod:`.serving`), the request parameters shared with the gateway
(:mod:`.params`) and the diffusers engine (:mod:`.diffusers_engine`, imported only
in a model's own process). See docs/images.md.
"""
