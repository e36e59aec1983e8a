"""Drop-in adapters for frameworks that take an embedding object (extras ``llama-index``, ``langchain``)."""
