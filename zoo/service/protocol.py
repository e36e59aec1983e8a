"""The HTTP contract of ``zoo serve``: request and response bodies as pydantic models.

These models are the declared contract (``/openapi.json`` documents every body and error from
them) and the validation: a handler parses JSON with ``parse_json`` (nesting and number limits
are 400s, never 500s), then ``validate`` turns the first pydantic error
into an OpenAI-style 400 that names the field. Validation is strict: ``"5"`` is not an integer
and ``true`` is not a number, as in OpenAI's API.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

__all__ = ["ErrorBody", "ErrorResponse", "EmbeddingsRequest", "EmbeddingsResponse", "ModelList", "Health",
           "RegisterRequest", "ConvertRequest", "RetryRequest", "JobResponse", "parse_json", "validate", "BodyError",
           "MAX_INPUTS", "TeiEmbedRequest", "TeiTokenizeRequest", "TeiDecodeRequest", "TeiToken", "TeiError",
           "TeiInfo", "wants_bytes"]

from .settings import MAX_INPUTS  # per request, as OpenAI's API: more is a 400 (BadRequestError in its clients)

IMAGE_DATA_URI = r"^data:image/(png|jpeg|webp|gif|bmp|tiff);base64,[A-Za-z0-9+/]+={0,2}$"


class BodyError(Exception):
    """A request body that is not acceptable; ``param`` names the field, ``code`` the OpenAI code."""

    def __init__(self, message: str, *, param: Optional[str] = None, code: str = "invalid_value"):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def _integral(value):
    """A JSON number with no fraction is an integer (JSON Schema's rule): ``2.0`` is ``2``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None
    request_id: Optional[str] = Field(None, description="On 5xx: quote it; the server log has the details")


class ErrorResponse(BaseModel):
    """OpenAI's error shape, used for every 4xx and 5xx."""
    error: ErrorBody


class EmbeddingsRequest(_Strict):
    input: Union[str, Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)],
                 Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)],
                 Annotated[list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]],
                           Field(min_length=1, max_length=MAX_INPUTS)]] = Field(
        examples=["how do I reset my password", ["first passage", "second passage"], [[2023, 4937, 2001]]],
        description=f"A text, a list of 1 to {MAX_INPUTS} texts, or token ids: a list of integers (one input) "
                    "or a list of such lists. As OpenAI reads them, token ids are a tiktoken encoding's "
                    "(cl100k_base unless the server says otherwise), decoded to text and embedded as that "
                    "text; a server started with token_encoding model takes the model's own ids without "
                    "special tokens (those are added as for text). Inputs longer than the model's max length are "
                    "truncated, as sentence-transformers does; the server may cap characters per text.")
    model: str = Field(min_length=1, examples=["all-minilm-l6-v2"], description="A registered model name or alias")
    modality: Literal["text", "image"] = Field(
        "text", description="image: every input is an image as a data URI (data:image/png;base64,...), embedded "
                            "by a multimodal (CLIP-family) model into its text space. Remote URLs are not fetched.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: JSON numbers; base64: little-endian float32, as OpenAI's clients decode it, "
                             "whatever the precision (for compact bytes send Accept: application/octet-stream)")
    dimensions: Optional[Annotated[int, BeforeValidator(_integral), Field(ge=1, le=1_000_000), WithJsonSchema(
        {"type": "integer", "minimum": 1, "maximum": 1_000_000})]] = Field(None,
                                      description="Truncate vectors to this many dimensions, then re-normalize")
    precision: Literal["float32", "float16", "int8", "uint8", "binary", "ubinary"] = Field(
        "float32", description="Output precision (zoo's field; sentence-transformers' name). int8/uint8 use the "
                               "artifact's stored calibration ranges (`zoo show` reports them and what each precision "
                               "costs), so every request quantizes alike; binary/ubinary: one bit per dimension, 8 per number, "
                               "packed as sentence-transformers packs them. Text inputs only.")
    prompt_name: Optional[Literal["query", "document"]] = Field(
        None, description="zoo's addition (sentence-transformers' and TEI's name): put the model's own query or "
                          "document prompt before every text, as `encode(prompt_name=...)` does (a decoder such as "
                          "Qwen3-Embedding reads queries with its instruction). Text inputs only.")
    user: Optional[str] = None

    # other servers' names for `precision`: refused with a message naming it (zoo.service.protocol.validate)
    renamed: ClassVar[dict[str, str]] = {"embedding_types": "Cohere's", "embed_dtype": "vLLM's",
                                         "embedding_dtype": "infinity's", "output_dtype": "Voyage's",
                                         "dtype": "a"}

    # modality "image": each input is an image as a data URI (declared here, so clients and fuzzers send one)
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "if": {"properties": {"modality": {"const": "image"}}, "required": ["modality"]},
        "then": {"properties": {"precision": {"const": "float32"}, "prompt_name": {"type": "null"}, "input": {"anyOf": [
            {"type": "string", "pattern": IMAGE_DATA_URI},
            {"type": "array", "items": {"type": "string", "pattern": IMAGE_DATA_URI}, "minItems": 1,
             "maxItems": MAX_INPUTS}]}}}})


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: Union[list[float], str] = Field(description="numbers (integers at int8, uint8, binary and ubinary), "
                                                           "or base64 of little-endian float32")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    model: str
    data: list[Embedding]
    usage: Usage


class RerankDocument(_Strict):
    text: str


class RerankRequest(_Strict):
    """Cohere's and Jina's rerank request (``/v1/rerank``), as LocalAI, vLLM and llama.cpp serve it."""
    model: str = Field(min_length=1, examples=["ms-marco-minilm"], description="A registered reranker, by name")
    query: str = Field(examples=["how do I reset my password"], description="The search query")
    documents: Annotated[list[Union[str, RerankDocument]], Field(min_length=1, max_length=MAX_INPUTS)] = Field(
        examples=[["Open settings and choose reset.", "Passwords expire after 90 days."]],
        description=f"1 to {MAX_INPUTS} documents: strings, or objects with a `text` (Cohere's and Jina's forms). "
                    "A query and document longer than the model's max length together are truncated, and counted "
                    "in the X-Zoo-Truncated header; the server may cap characters per document.")
    top_n: Optional[Annotated[int, BeforeValidator(_integral), Field(ge=1, le=MAX_INPUTS), WithJsonSchema(
        {"type": "integer", "minimum": 1, "maximum": MAX_INPUTS})]] = Field(
        None, description="Return the N most relevant documents (default: all, best first)")
    return_documents: bool = Field(False, description="Also return each result's document text")
    max_chunks_per_doc: Optional[int] = Field(None, description="Cohere's field; accepted, not used (one chunk)")
    user: Optional[str] = None


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: Optional[RerankDocument] = None


class RerankUsage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage
    meta: dict[str, Any]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    owned_by: str
    created: int
    zoo: dict[str, Any]


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"]
    uptime_s: float
    models_loaded: list[str]


class RegisterRequest(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
    source: str = Field(min_length=1, max_length=4096,
                        description="hf://ORG/NAME, pkg://PACKAGE/SUBDIR, or a directory under an allowed root")
    revision: Optional[str] = Field(None, min_length=1, max_length=255, description="hf:// sources only")
    force: bool = False
    trust_remote_code: bool = Field(False, description="Run the model's own code (config.json auto_map, custom "
                                    "modules): each code file's sha256 is recorded and checked before every load")


_Target = Annotated[str, Field(min_length=1, max_length=100)]


class ConvertRequest(_Strict):
    targets: Union[_Target, Annotated[list[_Target], Field(min_length=1, max_length=64)]] = Field(
        description="Target names, e.g. onnx-fp32, openvino-int8, all-cpu")
    rebuild: bool = False


class RetryRequest(_Strict):
    """No fields: a JSON object, so the POST is a JSON request like every other."""


class JobResponse(BaseModel):
    id: str
    object: Literal["zoo.job"]
    kind: str
    model: str
    params: dict[str, Any]
    status: Literal["queued", "running", "succeeded", "failed", "interrupted"]
    progress: float
    message: Optional[str]
    error: Optional[str]
    result: Optional[dict[str, Any]]
    attempts: int
    created_at: Optional[str]
    updated_at: Optional[str]


# -- text-embeddings-inference's native routes (zoo.service.tei) ---------------------------------------

_Id = Annotated[int, BeforeValidator(_integral), Field(ge=0), WithJsonSchema({"type": "integer", "minimum": 0})]
_Ids = Annotated[list[_Id], Field(min_length=1)]
_ModelField = Field(None, min_length=1, description="zoo's addition: which served model (also the X-Zoo-Model "
                                                   "header); needed only when the server serves several")


class TeiEmbedRequest(_Strict):
    inputs: Union[str, _Ids, Annotated[list[Union[str, _Ids]], Field(min_length=1, max_length=MAX_INPUTS)]] = Field(
        examples=["What is Deep Learning?", ["first passage", "second passage"]],
        description="A text, token ids of the model's own vocabulary, or a list of either")
    truncate: Optional[bool] = Field(None, description="Cut inputs past the max length (default: true, as TEI "
                                                        "since 1.9); false refuses them with 422")
    truncation_direction: Literal["left", "right", "Left", "Right"] = "right"
    prompt_name: Optional[str] = Field(None, description="A prompt of the model: query or document")
    normalize: bool = True
    dimensions: Optional[Annotated[int, BeforeValidator(_integral), Field(ge=1, le=1_000_000), WithJsonSchema(
        {"type": "integer", "minimum": 1, "maximum": 1_000_000})]] = None
    model: Optional[str] = _ModelField


class TeiRerankRequest(_Strict):
    query: str = Field(examples=["What is Deep Learning?"])
    texts: Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)] = Field(
        examples=[["Deep Learning is not...", "Deep learning is..."]])
    truncate: Optional[bool] = Field(None, description="Cut pairs past the max length (default: true, as TEI since "
                                                        "1.9); false refuses them with 422")
    truncation_direction: Literal["right", "Right"] = Field(
        "right", description="Pairs are cut as the tokenizer cuts them (longest side first, at its end)")
    raw_scores: bool = Field(False, description="The head's logits before the activation; served where the "
                                                "model's activation is the identity (else 422)")
    return_text: bool = False
    model: Optional[str] = _ModelField


class TeiRank(BaseModel):
    index: int
    score: float
    text: Optional[str] = None


class TeiTokenizeRequest(_Strict):
    inputs: Union[str, Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)]]
    add_special_tokens: bool = True
    prompt_name: Optional[str] = None
    model: Optional[str] = _ModelField


class TeiDecodeRequest(_Strict):
    ids: Union[_Ids, Annotated[list[_Ids], Field(min_length=1, max_length=MAX_INPUTS)]]
    skip_special_tokens: bool = True
    model: Optional[str] = _ModelField


class TeiToken(BaseModel):
    id: int
    text: str
    special: bool
    start: Optional[int] = Field(description="UTF-8 byte offset in the input, as TEI gives it; null for special tokens")
    stop: Optional[int]


class TeiError(BaseModel):
    """TEI's error shape, on its routes."""
    error: str
    error_type: Literal["unhealthy", "backend", "overloaded", "validation", "tokenizer", "empty"]


class TeiInfo(BaseModel):
    model_id: str
    model_sha: Optional[str]
    model_dtype: str
    served_model_name: str
    model_type: dict[str, Any]
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: Optional[int]
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    version: str
    sha: Optional[str]
    docker_label: Optional[str]
    zoo: dict[str, Any]


def matryoshka_header(model, dimensions: Optional[int]) -> dict:
    """The response header that says a ``dimensions`` cut is not the model's declared Matryoshka training
    (LocalAI once served a quarter of the widths without a word); empty when nothing needs saying."""
    note = model.spec.matryoshka_note(dimensions)
    return {"X-Zoo-Matryoshka": note} if note else {}


def wants_bytes(accept: Optional[str]) -> bool:
    """Whether an ``Accept`` header prefers ``application/octet-stream`` (raw little-endian rows) to JSON:
    its quality must be above JSON's, counting ``application/*`` and ``*/*`` for JSON."""
    octet, json_q = 0.0, 0.0
    for part in (accept or "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == "application/octet-stream":
            octet = max(octet, q)
        elif media in ("application/json", "application/*", "*/*"):
            json_q = max(json_q, q)
    return octet > json_q


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or a BodyError: bad syntax, too deep, or numbers past Python's limits."""
    if not raw.strip():
        raise BodyError("request body is empty; send a JSON object", code="invalid_json")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BodyError(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                        code="invalid_json") from None
    except UnicodeDecodeError:
        raise BodyError("request body is not UTF-8", code="invalid_json") from None
    except RecursionError:  # the C decoder stops at the interpreter's recursion limit
        raise BodyError("request body nests too deeply", code="invalid_json") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise BodyError("request body has a number too large to read", code="invalid_json") from None


def _is_int(annotation: Any) -> bool:
    return annotation is int or int in getattr(annotation, "__args__", ())


_CODES = {"missing": "missing_required_parameter", "extra_forbidden": "unknown_parameter"}


def validate(model: type[BaseModel], body: Any):
    """``body`` validated as ``model``; the first problem becomes a BodyError naming its field."""
    if not isinstance(body, dict):
        raise BodyError(f"request body must be a JSON object, not {type(body).__name__}", code="invalid_type")
    # JSON has one number type: 256.0 is the integer 256, as JSON Schema's "integer" says
    body = {k: int(v) if isinstance(v, float) and v.is_integer() and model.model_fields.get(k) is not None
            and _is_int(model.model_fields[k].annotation) else v for k, v in body.items()}
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = [str(p) for p in first["loc"] if not str(p).startswith(("str", "list[", "int", "function"))]
        param = loc[0] + "".join(f"[{p}]" for p in loc[1:]) if loc else None
        kind = first["type"]
        if kind == "missing":
            message = f"missing required field {param!r}"
        elif kind == "extra_forbidden" and param in getattr(model, "renamed", {}):
            message = (f"{param!r} is {model.renamed[param]} name for what zoo calls 'precision' "
                       "(float32, float16, int8, uint8, binary, ubinary); send 'precision'")
        elif kind == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            message = f"unknown field {param!r}; allowed: {allowed}"
        else:
            message = f"{param}: {first['msg']}" if param else first["msg"]
        raise BodyError(message, param=param, code=_CODES.get(kind, "invalid_value")) from None
