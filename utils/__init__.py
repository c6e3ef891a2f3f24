"""MusicLIME reproduction: the importable library behind the notebooks.

Laid out like the study (data flows one way, top to bottom; ``tests/test_layout.py`` checks it):
``config``, ``io``, ``plotting`` (shared base) -> ``dataset_related`` (notebooks 01-04) ->
``model_related`` (05-08) -> ``musiclime`` (09-10) -> ``results`` (11). Each subpackage's
``__init__`` is what a notebook imports. The command lines: ``main`` (the main job), ``explain``
(one song -> an HTML report), ``global_run`` and ``benchmark``.
"""
