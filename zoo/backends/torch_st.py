"""The reference runtime: sentence-transformers on torch, exactly as users run it today."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ZooError, require
from ..model_config import ModelSpec

__all__ = ["TorchBackend"]


class TorchBackend:
    def __init__(self, path: Path, spec: ModelSpec, device: str | None = None, precision: str = "fp32",
                 settings: dict | None = None, options: dict | None = None):
        torch = require("torch", "torch")
        st = require("sentence_transformers", "torch")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ZooError(f"device {device!r} requested but torch sees no CUDA GPU; use device='cpu'")
        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if precision not in dtypes:
            raise ZooError(f"torch runtime cannot compute in {precision!r}; use one of {sorted(dtypes)}")
        # fp32 is transformers' default load dtype; only casts need saying.
        kwargs = {} if precision == "fp32" else {"model_kwargs": {"dtype": dtypes[precision]}}
        self.model = st.SentenceTransformer(str(path), device=device, local_files_only=True, **kwargs)
        self.model.eval()
        self.spec = spec
        self.device = str(self.model.device)
        self.name = "sentence-transformers/torch"

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)
