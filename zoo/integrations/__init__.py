"""Drop-in adapters for frameworks that take an embedding or reranking object (extras ``llama-index``, ``langchain``)."""
