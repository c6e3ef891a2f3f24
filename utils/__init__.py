"""MusicLIME reproduction: the importable library behind the notebooks.

Modules (read top to bottom): ``config`` (profiles, class lists), ``synth`` (synthetic corpus),
``features`` (audio loading, batched AST features), ``text`` (tokenizer), ``data`` (splits,
datasets), ``models`` (lyrics / audio / fusion), ``train``, ``evaluate``, then the explainer
modules and the aggregation / figure modules.
"""
