"""A LangChain ``Embeddings`` served by zoo (``pip install 'zoo[langchain]'``).

    from zoo.integrations.langchain import ZooEmbeddings
    vectorstore = FAISS.from_texts(texts, ZooEmbeddings("all-minilm-l6-v2"))

Queries get the model's query prompt, documents its document prompt; both go
through zoo's cache and length-sorted batching.
"""

from __future__ import annotations

from typing import List, Optional

from ..errors import require

require("langchain_core", "langchain")

from langchain_core.embeddings import Embeddings  # noqa: E402

__all__ = ["ZooEmbeddings"]


class ZooEmbeddings(Embeddings):
    """``ZooEmbeddings("name")``, ``ZooEmbeddings(model="name")`` (as LangChain's embedding classes
    take it) or ``ZooEmbeddings(model_name="name")``."""

    def __init__(self, model_name: Optional[str] = None, *, model: Optional[str] = None, home: Optional[str] = None,
                 artifact: Optional[str] = None, device: Optional[str] = None, batch_size: Optional[int] = None,
                 dimensions: Optional[int] = None, cache: bool = True):
        from ..api import load
        from ..errors import InvalidInput

        if model is not None and model_name is not None and model != model_name:
            raise InvalidInput(f"model={model!r} and model_name={model_name!r} disagree; pass one of them")
        model_name = model or model_name or "all-minilm-l6-v2"
        self.model_name = model_name
        self.model = load(model_name, home=home, artifact=artifact, device=device, cache=cache)
        self.options = {"batch_size": batch_size, "dimensions": dimensions}

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        return self.model.embed_documents(texts, **self.options).tolist()

    def embed_query(self, text: str) -> List[float]:
        return self.model.embed_query(text, **self.options).tolist()

    async def aembed_documents(self, texts: List[str]) -> List[List[float]]:
        return (await self.model.aembed_documents(texts, **self.options)).tolist()

    async def aembed_query(self, text: str) -> List[float]:
        return (await self.model.aembed_query(text, **self.options)).tolist()
