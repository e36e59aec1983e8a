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

__all__ = ["ZooEmbeddings", "ZooReranker"]


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


from typing import Sequence  # noqa: E402

from langchain_core.callbacks import Callbacks  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402


class ZooReranker(BaseDocumentCompressor):
    """LangChain's document compressor on a zoo reranker (cross-encoder), as its ``CrossEncoderReranker``:

        retriever = ContextualCompressionRetriever(base_compressor=ZooReranker(model="ms-marco-minilm", top_n=3),
                                                   base_retriever=vectorstore.as_retriever(search_kwargs={"k": 20}))

    Each returned document carries the reranker's score as ``metadata["relevance_score"]``."""

    model: str
    top_n: int = 3
    home: Optional[str] = None
    artifact: Optional[str] = None
    device: Optional[str] = None
    cache: bool = True
    reranker: object = None

    model_config = {"arbitrary_types_allowed": True}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.reranker is None:
            from ..api import load

            self.reranker = load(self.model, home=self.home, artifact=self.artifact, device=self.device,
                                 cache=self.cache)
        if getattr(self.reranker, "kind", None) != "reranker":  # refused now, by name, not at the first query
            from ..engine.kinds import refuse_kind

            raise refuse_kind(self.model, getattr(self.reranker, "kind", "embedding"), ("reranker",), "ZooReranker")

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Optional[Callbacks] = None) -> Sequence[Document]:
        if not documents:
            return []
        ranking = self.reranker.rerank(query, [d.page_content for d in documents], top_n=self.top_n)
        out = []
        for r in ranking:
            doc = documents[r.index]
            out.append(Document(page_content=doc.page_content, metadata={**doc.metadata, "relevance_score": r.score},
                                id=getattr(doc, "id", None)))
        return out
