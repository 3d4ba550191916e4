"""Request and response bodies: strict types (a number is not a text), unknown fields refused.

These are what the OpenAPI page (``/docs``) shows; the field descriptions are the API's documentation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedRequest(_Strict):
    texts: list[StrictStr] = Field(description="texts to encode, in order")
    role: Literal["query", "document"] = Field("query", description="which tower encodes them")
    prompt: StrictStr | None = Field(
        None, description="prefix put before every text; default the model's own prompt for the role"
    )
    encoding: Literal["float", "base64"] = Field(
        "float", description="vectors as float lists, or base64 of little-endian float32"
    )


class Truncation(BaseModel):
    truncated: int = Field(description="how many texts were longer than the tower's maximum and cut")
    of: int = Field(description="texts encoded for this request")
    rows: list[int] = Field(description="positions of the cut texts (pair indices for /score)")
    warning: str | None = None


class EmbedResponse(BaseModel):
    vectors: list[list[float]] | list[str]
    dimension: int
    role: str
    model: str = Field(description="the model's fingerprint")
    truncation: Truncation


class ScoreRequest(_Strict):
    pairs: list[tuple[StrictStr, StrictStr]] = Field(description="[[text_a, text_b], ...]")


class ScoreResponse(BaseModel):
    scores: list[float] = Field(description="similarity (or distance) per pair, under `metric`")
    metric: str
    calibrated: bool
    probabilities: list[float] | None = Field(None, description="P(same) per pair, calibrated models only")
    same: list[bool] | None = Field(None, description="the calibration's decision per pair")
    truncation: Truncation


class SearchRequest(_Strict):
    query: StrictStr | None = Field(None, description="one query (or give `queries`)")
    queries: list[StrictStr] | None = Field(None, description="several queries")
    k: StrictInt = Field(10, description="hits per query, 1 to min(max_k, index rows)")
    index: StrictStr | None = Field(None, description="index name (default: the first one served)")


class QueryHits(BaseModel):
    query: str
    hits: list[dict[str, Any]] = Field(description="`search --json` hits: id, score, text, metadata columns")


class SearchResponse(BaseModel):
    index: str
    k: int
    results: list[QueryHits]
    truncation: Truncation


class ClassifyRequest(_Strict):
    texts: list[StrictStr]
    strategy: Literal["reference", "centroid"] | None = None
    threshold: StrictFloat | StrictInt | None = Field(None, description="override the stored threshold")


class Prediction(BaseModel):
    label: str = Field(description="the nearest class, or the unknown label below the threshold")
    nearest: str = Field(description="the nearest class whatever the threshold")
    similarity: float


class ClassifyResponse(BaseModel):
    predictions: list[Prediction]
    strategy: str
    threshold: float | None
    unknown_label: str
    truncation: Truncation


class IndexRow(_Strict):
    id: StrictStr
    text: StrictStr
    metadata: dict[str, Any] | None = None


class AddRequest(_Strict):
    rows: list[IndexRow] = Field(description="rows to add, all or nothing (a duplicate id adds none)")


class RemoveRequest(_Strict):
    ids: list[StrictStr] = Field(description="ids to remove, all or nothing (an unknown id removes none)")


class WriteResponse(BaseModel):
    index: str
    added: int | None = None
    removed: int | None = None
    rows: int = Field(description="rows in the index after the change (saved to disk before this reply)")
    truncation: Truncation | None = None


class OpenAIEmbeddingRequest(_Strict):
    """OpenAI's ``POST /v1/embeddings`` body (what ``openai`` 3.x's ``embeddings.create`` sends)."""

    model: StrictStr = Field(description="a name from GET /v1/models: NAME (documents) or NAME:query")
    input: StrictStr | list[Any] = Field(description="one text, or a list of texts (token-id lists refused)")
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="float lists (default), or base64 of little-endian float32 (the SDK's default)"
    )
    dimensions: StrictInt | None = Field(None, description="only the model's own dimension is accepted")
    user: StrictStr | None = Field(None, description="ignored")
    input_type: Literal["query", "document", "passage"] | None = Field(
        None, description="which tower encodes the input (overrides a plain NAME; passage = document)"
    )


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int = Field(
        description="tokens the tower read (after truncation, special tokens included)"
    )
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str
    field: str | None


class ErrorResponse(BaseModel):
    error: ErrorBody
