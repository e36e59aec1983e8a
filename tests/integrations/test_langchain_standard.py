"""LangChain's own standard test suite (``langchain-tests``) on ``ZooEmbeddings``, with the tiny model.

The suites check what every LangChain embedding class must do: construction from params, one
vector per document, a query vector of the same width, the async twins, empty input.
"""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_tests", reason="langchain-tests is not installed (the test extra brings it)")

from langchain_tests.integration_tests import EmbeddingsIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import EmbeddingsUnitTests  # noqa: E402

from zoo.integrations.langchain import ZooEmbeddings  # noqa: E402

HOME: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def tiny_home(tmp_path_factory, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("lc") / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    HOME["path"] = str(reg.home.root)
    yield
    HOME.clear()


class _Params:
    @property
    def embeddings_class(self) -> type[ZooEmbeddings]:
        return ZooEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": "tiny", "home": HOME["path"], "cache": False}


class TestZooEmbeddingsUnit(_Params, EmbeddingsUnitTests):
    pass


class TestZooEmbeddingsIntegration(_Params, EmbeddingsIntegrationTests):
    pass
