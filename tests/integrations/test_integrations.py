"""The LlamaIndex and LangChain adapters, driven through the real libraries' own interfaces."""

import asyncio

import numpy as np
import pytest

import zoo


@pytest.fixture
def tiny_home(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    return str(registry.home.root)


TEXTS = [f"document number {i} about cats" for i in range(7)]


def test_llama_index_embedding(tiny_home):
    pytest.importorskip("llama_index.core", reason="the llama-index extra is not installed")
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from zoo.integrations.llama_index import ZooEmbedding

    emb = ZooEmbedding(model_name="tiny", home=tiny_home, embed_batch_size=3, cache=False)
    assert isinstance(emb, BaseEmbedding) and emb.embed_batch_size == 3
    m = zoo.load("tiny", home=tiny_home, cache=False)
    calls = []
    original = emb.zoo_model.embed

    def counting(texts, **options):
        calls.append((len(texts), options.get("batch_size")))
        return original(texts, **options)

    emb.zoo_model.embed = counting  # observe how LlamaIndex chunks the input
    got = emb.get_text_embedding_batch(TEXTS)
    assert calls == [(3, 3), (3, 3), (1, 3)]  # embed_batch_size honoured, and passed on as zoo's batch
    np.testing.assert_allclose(np.array(got), m.embed_documents(TEXTS), atol=1e-6)
    np.testing.assert_allclose(emb.get_query_embedding("where are the cats"),
                               m.embed_query("where are the cats"), atol=1e-6)
    assert not np.allclose(emb.get_query_embedding("cats"), emb.get_text_embedding("cats"), atol=1e-3)  # prompts
    agg = emb.get_agg_embedding_from_queries(["cats", "felines"])
    assert len(agg) == 32
    got_async = asyncio.run(emb.aget_text_embedding_batch(TEXTS))
    np.testing.assert_allclose(np.array(got_async), np.array(got), atol=1e-6)
    assert emb.similarity(got[0], got[0]) == pytest.approx(1.0, abs=1e-6)


def test_langchain_embeddings(tiny_home):
    pytest.importorskip("langchain_core", reason="the langchain extra is not installed")
    from langchain_core.embeddings import Embeddings

    from zoo.integrations.langchain import ZooEmbeddings

    emb = ZooEmbeddings("tiny", home=tiny_home, dimensions=16)
    assert isinstance(emb, Embeddings)
    m = zoo.load("tiny", home=tiny_home, cache=False)
    docs = emb.embed_documents(TEXTS)
    assert isinstance(docs, list) and isinstance(docs[0], list) and len(docs[0]) == 16
    np.testing.assert_allclose(np.array(docs), m.embed_documents(TEXTS, dimensions=16), atol=1e-6)
    np.testing.assert_allclose(emb.embed_query("cats"), m.embed_query("cats", dimensions=16), atol=1e-6)
    async def both():
        return await asyncio.gather(emb.aembed_documents(TEXTS), emb.aembed_query("cats"))

    adocs, aq = asyncio.run(both())
    np.testing.assert_allclose(np.array(adocs), np.array(docs), atol=1e-6)
    np.testing.assert_allclose(aq, emb.embed_query("cats"), atol=1e-6)


def test_llama_index_embedding_can_be_deep_copied(tiny_home):
    pytest.importorskip("llama_index.core", reason="the llama-index extra is not installed")
    import copy

    from zoo.integrations.llama_index import ZooEmbedding

    emb = ZooEmbedding(model_name="tiny", home=tiny_home, embed_batch_size=5, cache=False)
    for clone in (copy.deepcopy(emb), emb.model_copy(deep=True)):
        assert clone is not emb and clone.embed_batch_size == 5 and clone.model_name == "tiny"
        assert clone.zoo_model is emb.zoo_model  # the loaded model is shared, not copied
        clone.embed_batch_size = 9
        assert emb.embed_batch_size == 5
        np.testing.assert_allclose(clone.get_text_embedding("cats"), emb.get_text_embedding("cats"), atol=1e-6)


def test_langchain_takes_model_as_its_classes_do(tiny_home):
    pytest.importorskip("langchain_core", reason="the langchain extra is not installed")
    from zoo.errors import InvalidInput
    from zoo.integrations.langchain import ZooEmbeddings

    by_model = ZooEmbeddings(model="tiny", home=tiny_home, cache=False)
    by_name = ZooEmbeddings(model_name="tiny", home=tiny_home, cache=False)
    assert by_model.model_name == by_name.model_name == "tiny"
    np.testing.assert_allclose(by_model.embed_query("cats"), by_name.embed_query("cats"), atol=1e-6)
    with pytest.raises(InvalidInput, match="disagree"):
        ZooEmbeddings("tiny", model="other", home=tiny_home)


def test_llama_index_multimodal_retrieves_an_image_by_text(registry, tiny_clip_dir, tiny_model_dir, tmp_path):
    """ZooMultiModalEmbedding is a real MultiModalEmbedding: a MultiModalVectorStoreIndex holds its
    image vectors and retrieves, for a text, the image sentence-transformers itself ranks first."""
    pytest.importorskip("llama_index.core", reason="the llama-index extra is not installed")
    from llama_index.core.embeddings import MultiModalEmbedding
    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llama_index.core.schema import Document, ImageDocument
    from PIL import Image
    from sentence_transformers import SentenceTransformer

    from zoo.errors import InvalidInput
    from zoo.integrations.llama_index import ZooMultiModalEmbedding

    registry.register("clip", str(tiny_clip_dir))
    registry.register("tiny", str(tiny_model_dir))
    home = str(registry.home.root)
    emb = ZooMultiModalEmbedding(model_name="clip", home=home, cache=False)
    assert isinstance(emb, MultiModalEmbedding)
    paths = []
    (tmp_path / "images").mkdir()
    for i, colour in enumerate(("red", "green", "blue", "yellow", "black")):
        paths.append(tmp_path / "images" / f"{colour}.png")
        Image.new("RGB", (48, 48), colour).save(paths[-1])
    st = SentenceTransformer(str(tiny_clip_dir), device="cpu")
    images = st.encode([Image.open(p).convert("RGB") for p in paths])
    np.testing.assert_allclose(np.array(emb.get_image_embedding_batch([str(p) for p in paths])), images, atol=1e-5)
    np.testing.assert_allclose(emb.get_image_embedding(str(paths[0])), images[0], atol=1e-5)
    # as LlamaIndex's image reader makes them: the image's path, and its file name as metadata
    documents = [Document(text="a note about colours"),
                 *[ImageDocument(image_path=str(p), metadata={"file_name": p.name}) for p in paths]]
    index = MultiModalVectorStoreIndex.from_documents(documents, embed_model=emb, image_embed_model=emb)
    query = "a blue square"
    text = st.encode([query])[0]
    scores = images @ text / np.linalg.norm(images, axis=1) / np.linalg.norm(text)
    (hit,) = index.as_retriever(image_similarity_top_k=1).text_to_image_retrieve(query)
    assert hit.node.image_path == str(paths[int(np.argmax(scores))])
    assert hit.score == pytest.approx(float(scores.max()), abs=1e-4)
    with pytest.raises(InvalidInput, match="tiny embeds text only"):
        ZooMultiModalEmbedding(model_name="tiny", home=home)


@pytest.fixture
def rerank_home(registry, tiny_model_dir, tmp_path):
    from tests.conftest import build_cross_encoder

    registry.register("tiny", str(tiny_model_dir))
    folder = build_cross_encoder(tmp_path / "ms", "bert")
    registry.register("ms", str(folder))
    return str(registry.home.root), folder


PASSAGES = ["the weather today is sunny with a light breeze", "a cat sat on the mat while it rained outside",
            "search engines rank documents by similarity", "embedding models map sentences to vectors",
            "the quick brown fox jumps over the lazy dog", "numbers like 42 and 3.14 appear in text too"]
QUESTION = "is the weather sunny today"


def _expected_top(folder, candidates: list[str]) -> str:
    """What sentence-transformers' CrossEncoder ranks first among what the retriever found."""
    from sentence_transformers import CrossEncoder

    ranked = CrossEncoder(str(folder), device="cpu").rank(QUESTION, candidates)
    return candidates[ranked[0]["corpus_id"]]


def test_llama_index_reranks_a_retrieval(rerank_home):
    """A VectorStoreIndex retrieves with zoo's embeddings; ZooRerank, a node postprocessor of the query engine's
    retriever, returns the document CrossEncoder puts first among those retrieved, with its score."""
    from llama_index.core import Document, VectorStoreIndex

    from zoo.errors import InvalidInput
    from zoo.integrations.llama_index import ZooEmbedding, ZooRerank

    home, folder = rerank_home
    index = VectorStoreIndex.from_documents([Document(text=p) for p in PASSAGES],
                                            embed_model=ZooEmbedding(model_name="tiny", home=home, cache=False))
    retriever = index.as_retriever(similarity_top_k=5)
    retrieved = [n.node.get_content() for n in retriever.retrieve(QUESTION)]
    reranked = ZooRerank(model="ms", top_n=2, home=home).postprocess_nodes(retriever.retrieve(QUESTION),
                                                                           query_str=QUESTION)
    assert len(reranked) == 2 and reranked[0].node.get_content() == _expected_top(folder, retrieved)
    assert reranked[0].score >= reranked[1].score
    with pytest.raises(InvalidInput, match="tiny is an embedding model; ZooRerank needs a reranker model"):
        ZooRerank(model="tiny", home=home)


def test_langchain_reranks_a_retrieval(rerank_home):
    """An InMemoryVectorStore retriever with zoo's embeddings, then ZooReranker as the chain's next step."""
    from langchain_core.documents import Document
    from langchain_core.runnables import RunnableLambda
    from langchain_core.vectorstores import InMemoryVectorStore

    from zoo.integrations.langchain import ZooEmbeddings, ZooReranker

    home, folder = rerank_home
    store = InMemoryVectorStore.from_documents([Document(page_content=p) for p in PASSAGES],
                                               ZooEmbeddings("tiny", home=home, cache=False))
    retriever = store.as_retriever(search_kwargs={"k": 5})
    reranker = ZooReranker(model="ms", top_n=1, home=home)
    chain = retriever | RunnableLambda(lambda docs: reranker.compress_documents(docs, QUESTION))
    (best,) = chain.invoke(QUESTION)
    retrieved = [d.page_content for d in retriever.invoke(QUESTION)]
    assert best.page_content == _expected_top(folder, retrieved) and best.metadata["relevance_score"] > 0
