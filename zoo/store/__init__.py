"""The store layer: where files live. The zoo home (``home``), the content-addressed blob store
with its manifests, locks and garbage collection (``blobs``), and the sources checkpoints
come from: local folders, ``pkg://`` packages, the Hugging Face hub (``sources``).

Imports only ``zoo.core`` and ``zoo.errors``; it knows nothing of the registry or models.
"""
