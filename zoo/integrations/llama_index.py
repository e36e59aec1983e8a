"""A LlamaIndex ``BaseEmbedding`` served by zoo (``pip install 'zoo[llama-index]'``).

    from zoo.integrations.llama_index import ZooEmbedding
    Settings.embed_model = ZooEmbedding(model_name="all-minilm-l6-v2")

LlamaIndex cuts inputs into chunks of ``embed_batch_size``; each chunk is one zoo
call with that batch size, so it is length-sorted, cached and batched by tokens.
Queries get the model's query prompt, texts its document prompt.

``ZooMultiModalEmbedding`` is LlamaIndex's ``MultiModalEmbedding`` on a CLIP-family model:
``get_image_embedding`` (a file path or bytes) and ``get_text_embedding`` in one space, as
``MultiModalVectorStoreIndex`` needs.
"""

from __future__ import annotations

from typing import Any, List, Optional

from ..errors import require

require("llama_index.core", "llama-index")

from llama_index.core.base.embeddings.base import DEFAULT_EMBED_BATCH_SIZE, BaseEmbedding  # noqa: E402
from llama_index.core.embeddings import MultiModalEmbedding  # noqa: E402
from pydantic import Field, PrivateAttr  # noqa: E402

__all__ = ["ZooEmbedding", "ZooMultiModalEmbedding", "ZooRerank"]


class ZooEmbedding(BaseEmbedding):
    home: Optional[str] = Field(default=None, description="zoo home (default: $ZOO_HOME or the per-user home)")
    artifact: Optional[str] = Field(default=None, description="force one artifact, e.g. openvino-int8")
    device: Optional[str] = Field(default=None, description="cpu, cuda or cuda:N")
    dimensions: Optional[int] = Field(default=None, description="keep the first N components (Matryoshka)")
    cache: bool = Field(default=True, description="use zoo's persistent vector cache")
    _model: Any = PrivateAttr()

    def __init__(self, model_name: str = "all-minilm-l6-v2", embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
                 **kwargs: Any):
        super().__init__(model_name=model_name, embed_batch_size=embed_batch_size, **kwargs)
        from ..api import load

        self._model = load(model_name, home=self.home, artifact=self.artifact, device=self.device, cache=self.cache)

    @classmethod
    def class_name(cls) -> str:
        return "ZooEmbedding"

    def __deepcopy__(self, memo=None):
        """LlamaIndex copies settings objects: the fields are copied, the loaded model is shared
        (it holds a runtime and thread-locals, which cannot be copied and need not be)."""
        import copy

        memo = {} if memo is None else memo
        clone = self.__copy__()
        memo[id(self)] = clone
        for name, value in self.__dict__.items():
            object.__setattr__(clone, name, copy.deepcopy(value, memo))
        return clone

    @property
    def zoo_model(self):
        """The underlying ``zoo.engine.model.EmbeddingModel``."""
        return self._model

    def _options(self) -> dict:
        return {"batch_size": self.embed_batch_size, "dimensions": self.dimensions}

    def _get_query_embedding(self, query: str) -> List[float]:
        return self._model.embed_query(query, **self._options()).tolist()

    async def _aget_query_embedding(self, query: str) -> List[float]:
        return (await self._model.aembed_query(query, **self._options())).tolist()

    def _get_text_embedding(self, text: str) -> List[float]:
        return self._model.embed_documents([text], **self._options())[0].tolist()

    async def _aget_text_embedding(self, text: str) -> List[float]:
        return (await self._model.aembed_documents([text], **self._options()))[0].tolist()

    def _get_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        return self._model.embed_documents(texts, **self._options()).tolist()

    async def _aget_text_embeddings(self, texts: List[str]) -> List[List[float]]:
        return (await self._model.aembed_documents(texts, **self._options())).tolist()


class ZooMultiModalEmbedding(ZooEmbedding, MultiModalEmbedding):
    """Images and texts of a CLIP-family model in one space; texts as ``ZooEmbedding`` embeds them."""

    def __init__(self, model_name: str, embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE, **kwargs: Any):
        super().__init__(model_name=model_name, embed_batch_size=embed_batch_size, **kwargs)
        if "image" not in self._model.spec.modalities:
            from ..errors import InvalidInput

            raise InvalidInput(f"{model_name} embeds text only; ZooMultiModalEmbedding needs a CLIP-family model")

    @classmethod
    def class_name(cls) -> str:
        return "ZooMultiModalEmbedding"

    @staticmethod
    def _image(item):  # LlamaIndex's ImageType: a path or a BytesIO
        return item.getvalue() if hasattr(item, "getvalue") else item

    def _get_image_embedding(self, img_file_path) -> List[float]:
        return self._model.embed_images([self._image(img_file_path)], **self._options())[0].tolist()

    def _get_image_embeddings(self, img_file_paths) -> List[List[float]]:
        return self._model.embed_images([self._image(p) for p in img_file_paths], **self._options()).tolist()

    async def _aget_image_embedding(self, img_file_path) -> List[float]:
        import asyncio

        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    async def _aget_image_embeddings(self, img_file_paths) -> List[List[float]]:
        import asyncio

        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)


from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle  # noqa: E402


class ZooRerank(BaseNodePostprocessor):
    """LlamaIndex's node postprocessor on a zoo reranker (cross-encoder), as its ``SentenceTransformerRerank``:

        query_engine = index.as_query_engine(similarity_top_k=20,
                                             node_postprocessors=[ZooRerank(model="ms-marco-minilm", top_n=3)])

    The retrieved nodes are scored with the query by the reranker's selected artifact (pairs cached by
    artifact identity) and the ``top_n`` best come back, best first, each with the reranker's score."""

    model: str = Field(description="a registered reranker, by name")
    top_n: int = Field(default=2, description="nodes to keep")
    home: Optional[str] = Field(default=None, description="zoo home (default: $ZOO_HOME or the per-user home)")
    artifact: Optional[str] = Field(default=None, description="force one artifact, e.g. onnx-int8-static")
    device: Optional[str] = Field(default=None, description="cpu, cuda or cuda:N")
    cache: bool = Field(default=True, description="use zoo's persistent cache of pair scores")
    _reranker: Any = PrivateAttr()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        from ..api import load

        self._reranker = load(self.model, home=self.home, artifact=self.artifact, device=self.device, cache=self.cache)
        if self._reranker.kind != "reranker":  # refused now, by name, not at the first query
            from ..engine.kinds import refuse_kind

            raise refuse_kind(self.model, self._reranker.kind, ("reranker",), "ZooRerank")

    @classmethod
    def class_name(cls) -> str:
        return "ZooRerank"

    def _postprocess_nodes(self, nodes: List[NodeWithScore],
                           query_bundle: Optional[QueryBundle] = None) -> List[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("ZooRerank needs the query (query_bundle)")
        if not nodes:
            return []
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        ranking = self._reranker.rerank(query_bundle.query_str, texts, top_n=self.top_n)
        return [NodeWithScore(node=nodes[r.index].node, score=r.score) for r in ranking]
