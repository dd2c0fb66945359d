"""The quality wing: what each variant costs in model quality, trained from scratch on the same data and
seeds, with the noise stated (``sqabench quality``, ``sqabench tokenize``, ``sqabench reproduce quality``).

Its modules, lowest first: ``options`` (every option and default), ``stats`` (intervals over seeds);
``mqar``, ``corpus``, ``tokenizer``, ``tokens`` (the ``.tokens`` file), ``tasks`` (batches and the held-out
set); ``train`` (one run); ``rows`` (the CSV), ``plan``, ``resume``, ``budget``, ``summary``; ``tables``,
``progress``, ``figures``; ``flow`` (runs x seeds) and ``reproduce``. It shares the base, the cost model, the
model and the measuring layer with the speed wing, and imports nothing of that wing.
"""
