"""The Open Inference Protocol (KServe V2) on genserve's graphs: V2 model names, tensor
metadata, and inference requests and responses in JSON and in the binary tensor extension.

Every served model version offers its two graphs as V2 models, `<model>.encoder` and
`<model>.decoder`. V2 runs the raw graphs: tensors are in the manifest's normalised units
(`x_norm = (x - shift) / scale`), and the label input `y` is the int64 index into the
manifest's `labels`. Rows go through the same batchers as genserve's own endpoints.

A client's mistake raises InvalidInput; the V2 routes answer it with the protocol's 400
and `{"error": "<message>"}`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from app.http.parsing import BodyInvalid, validate_json
from app.models.batching import Batcher
from app.models.registry import Registry
from app.models.served_model import ServedModel, require_finite
from core.errors import InvalidInput, ModelNotFound, NotReady
from core.repository import is_version_name

GRAPHS = ("encoder", "decoder")
EXTENSIONS = ("binary_tensor_data",)
PLATFORMS = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}
# The datatypes genserve's graphs take and give; the binary extension lays them out little-endian.
DATATYPES = {"FP32": np.dtype(np.float32), "INT64": np.dtype(np.int64)}
HEADER_LENGTH = "inference-header-content-length"

# ---- wire format ----------------------------------------------------------------------------

ParameterValue = StrictBool | StrictInt | StrictFloat | StrictStr
Number = StrictInt | StrictFloat  # true/false and strings are not numbers
# Flat in row-major order, or nested by rows: genserve's inputs have at most two axes.
TensorData = list[Number | list[Number]]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Wire):
    name: StrictStr
    shape: list[Annotated[StrictInt, Field(ge=0)]]
    datatype: StrictStr
    parameters: dict[str, ParameterValue] | None = None
    data: TensorData | None = Field(None, description="absent when `parameters.binary_data_size` is given")


class RequestOutput(_Wire):
    name: StrictStr
    parameters: dict[str, ParameterValue] | None = None


class InferenceRequest(_Wire):
    id: StrictStr | None = None
    parameters: dict[str, ParameterValue] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(None, description="the outputs to return; all when absent")


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 is the batch axis")


class V2Error(BaseModel):
    """Every error on the V2 routes (a body over GENSERVE_MAX_BODY_BYTES is refused before them: 413)."""

    error: str


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, int] | None = Field(None, description="`binary_data_size` for a binary output")
    data: list[float] | None = Field(None, description="row-major; absent for a binary output")


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = Field(None, description="the request's id, when it gave one")
    outputs: list[ResponseOutput]


INFER_EXAMPLE = {
    "id": "two-sevens",
    "inputs": [
        {"name": "z", "shape": [2, 8], "datatype": "FP32", "data": [0.1, -0.4, 0.3, 1.2, 0.0, -1.1, 0.5, 0.2] * 2},
        {"name": "y", "shape": [2], "datatype": "INT64", "data": [7, 7]},
    ],
    "outputs": [{"name": "probs"}],
}


# ---- V2 models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # a key of DATATYPES
    shape: tuple[int, ...]  # -1: the batch axis

    def metadata(self) -> MetadataTensor:
        return MetadataTensor(name=self.name, datatype=self.datatype, shape=list(self.shape))

    def describe(self) -> str:
        return f"{self.name!r} ({self.datatype} {list(self.shape)})"


def find_model(registry: Registry, name: str, version: str | None) -> V2Model:
    """The V2 model `<model>.<graph>` at `version` (the default one when None); 404 otherwise."""
    model, _, graph = name.rpartition(".")
    if graph not in GRAPHS or model not in registry.records:
        known = [f"{m}.{g}" for m in sorted(registry.records) for g in GRAPHS]
        raise ModelNotFound(
            f"no V2 model named {name!r}; V2 models are '<model>.encoder' and '<model>.decoder': {known}"
        )
    versions = [str(v) for v, r in sorted(registry.records[model].items()) if r.served is not None]
    if version is not None and not is_version_name(version):
        raise ModelNotFound(f"{name} has no version {version!r}: versions are positive integers; served: {versions}")
    served = registry.get(model if version is None else f"{model}@{version}")
    return V2Model(served, graph, versions)


class V2Model:
    """One graph of a served model version, as the protocol sees it."""

    def __init__(self, served: ServedModel, graph: str, versions: list[str]) -> None:
        self.served = served
        self.versions = versions
        self.batcher: Batcher = served.encoder if graph == "encoder" else served.decoder
        self.name = f"{served.manifest.name}.{graph}"
        m = served.manifest
        names = self.batcher.graph.input_names
        first = m.input_dim if graph == "encoder" else m.latent_dim
        self.inputs = [TensorSpec(names[0], "FP32", (-1, first))]
        if m.conditional:
            self.inputs.append(TensorSpec(names[1], "INT64", (-1,)))
        if graph == "encoder":
            shapes = [(-1, m.latent_dim)] * len(self.batcher.graph.output_names)
        else:
            shapes = [shape for _, shape in m.decoder_outputs()]
        self.outputs = [
            TensorSpec(n, "FP32", shape) for n, shape in zip(self.batcher.graph.output_names, shapes, strict=True)
        ]

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            name=self.name,
            versions=self.versions,
            platform=PLATFORMS[self.served.backend],
            inputs=[s.metadata() for s in self.inputs],
            outputs=[s.metadata() for s in self.outputs],
        )

    def check_ready(self) -> None:
        if not self.batcher.running:
            raise NotReady(f"{self.name} version {self.served.manifest.version} is not accepting requests")

    async def infer(self, body: bytes, headers: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
        """An inference request's body and headers -> the response's body and headers."""
        header, binary = _split_body(body, headers)
        try:
            request = await validate_json(InferenceRequest, header)
        except BodyInvalid as e:
            raise InvalidInput(f"invalid inference request: {_describe(e.errors)}") from None
        selected = self._select_outputs(request)  # before running: a bad output name costs no inference
        feed = self._read_inputs(request.inputs, binary)
        with self.served.hold():
            results = await self.batcher.run(feed)
        by_name = dict(zip(self.batcher.graph.output_names, results, strict=True))
        for spec, _ in selected:
            require_finite(
                by_name[spec.name], f"output {spec.name!r}", self.name, feed[self.batcher.graph.input_names[0]]
            )
        return self._response(request.id, [(spec, by_name[spec.name], binary) for spec, binary in selected])

    # ---- request --------------------------------------------------------------------------

    def _select_outputs(self, request: InferenceRequest) -> list[tuple[TensorSpec, bool]]:
        """The outputs to return, each with whether it goes out as binary data."""
        binary_default = _bool_parameter(request.parameters, "binary_data_output", "the request") or False
        if not request.outputs:
            return [(spec, binary_default) for spec in self.outputs]
        specs = {s.name: s for s in self.outputs}
        selected: list[tuple[TensorSpec, bool]] = []
        for output in request.outputs:
            spec = specs.get(output.name)
            if spec is None:
                raise InvalidInput(f"{self.name} has no output {output.name!r}; its outputs are {list(specs)}")
            if any(s.name == output.name for s, _ in selected):
                raise InvalidInput(f"output {output.name!r} is requested twice")
            if "classification" in (output.parameters or {}):
                raise InvalidInput("the classification extension is not supported: leave out 'classification'")
            binary = _bool_parameter(output.parameters, "binary_data", f"output {output.name!r}")
            selected.append((spec, binary_default if binary is None else binary))
        return selected

    def _read_inputs(self, inputs: list[RequestInput], binary: bytes) -> dict[str, np.ndarray]:
        specs = {s.name: s for s in self.inputs}
        arrays: dict[str, np.ndarray] = {}
        offset = 0
        for tensor in inputs:
            spec = specs.get(tensor.name)
            if spec is None:
                expected = ", ".join(s.describe() for s in self.inputs)
                raise InvalidInput(f"{self.name} has no input {tensor.name!r}; its inputs are {expected}")
            if tensor.name in arrays:
                raise InvalidInput(f"input {tensor.name!r} is given twice")
            self._check_header(tensor, spec)
            size = _binary_size(tensor)
            if size is None:
                arrays[tensor.name] = _from_json(tensor, spec)
            else:
                arrays[tensor.name] = _from_bytes(tensor, spec, size, binary[offset : offset + size])
                offset += size
        if offset != len(binary):
            raise InvalidInput(
                f"the body carries {len(binary)} bytes of binary data after the JSON header, but the inputs' "
                f"binary_data_size parameters add up to {offset}"
            )
        missing = [s.describe() for s in self.inputs if s.name not in arrays]
        if missing:
            raise InvalidInput(f"{self.name} needs input(s) {', '.join(missing)}; missing from the request")
        rows = {name: len(a) for name, a in arrays.items()}
        if len(set(rows.values())) > 1:
            raise InvalidInput(f"inputs disagree on the number of rows: {rows}; give every input the same rows")
        self._check_values(arrays)
        return {s.name: arrays[s.name] for s in self.inputs}  # in the graph's order

    def _check_header(self, tensor: RequestInput, spec: TensorSpec) -> None:
        """Datatype and shape against the graph's, before any data is read."""
        if tensor.datatype != spec.datatype:
            raise InvalidInput(
                f"input {tensor.name!r} has datatype {tensor.datatype!r}; {self.name} takes {spec.describe()}"
            )
        shape = tensor.shape
        fits = len(shape) == len(spec.shape) and all(w in (-1, g) for g, w in zip(shape, spec.shape, strict=True))
        if not fits:
            raise InvalidInput(
                f"input {tensor.name!r} has shape {shape}; {self.name} takes {spec.describe()}, "
                "-1 being the number of rows"
            )
        if shape[0] == 0:
            raise InvalidInput(f"input {tensor.name!r} has 0 rows; send at least one")
        if shape[0] > self.served.max_rows:
            raise InvalidInput(
                f"input {tensor.name!r} has {shape[0]} rows; the limit is {self.served.max_rows} rows per request "
                "(GENSERVE_MAX_SAMPLES)"
            )

    def _check_values(self, arrays: dict[str, np.ndarray]) -> None:
        for spec in self.inputs:
            values = arrays[spec.name]
            if spec.datatype == "FP32" and not np.isfinite(values).all():
                where = [int(i) for i in np.argwhere(~np.isfinite(values))[0]]
                raise InvalidInput(
                    f"input {spec.name!r} at {where} is not a finite float32 number ({values[tuple(where)]}); "
                    "NaN, infinities and values beyond float32's range (about 3.4e38) are refused"
                )
        labels = self.served.manifest.labels
        if labels is None:
            return
        y = arrays[self.inputs[1].name]
        bad = np.flatnonzero((y < 0) | (y >= len(labels)))
        if bad.size:
            row = int(bad[0])
            raise InvalidInput(
                f"input {self.inputs[1].name!r} at row {row} is {int(y[row])}; it is an index into the model's "
                f"labels, 0 to {len(labels) - 1}: {labels}"
            )

    # ---- response -------------------------------------------------------------------------

    def _response(
        self, request_id: str | None, outputs: list[tuple[TensorSpec, np.ndarray, bool]]
    ) -> tuple[bytes, dict[str, str]]:
        described, blobs = [], []
        for spec, array, binary in outputs:
            entry: dict = {"name": spec.name, "datatype": spec.datatype, "shape": list(array.shape)}
            if binary:
                blob = np.ascontiguousarray(array, dtype=_wire(spec.datatype)).tobytes()
                entry["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                entry["data"] = array.ravel().tolist()
            described.append(entry)
        body: dict = {"model_name": self.name, "model_version": str(self.served.manifest.version)}
        if request_id is not None:
            body["id"] = request_id
        body["outputs"] = described
        # ASCII-escaped like genserve's error bodies: the id echoes a client's string
        header = json.dumps(body, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
        if not blobs:
            return header, {"content-type": "application/json"}
        return header + b"".join(blobs), {
            "content-type": "application/octet-stream",
            HEADER_LENGTH: str(len(header)),
        }


# ---- helpers --------------------------------------------------------------------------------


def _split_body(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of a request body; all JSON without the binary extension."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported: send the body uncompressed")
    length = headers.get(HEADER_LENGTH)
    if length is None:
        return body, b""
    if not re.fullmatch(r"[0-9]+", length.strip()) or int(length) > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length is {length!r}; it must be the byte length of the JSON header, "
            f"at most the body's {len(body)} bytes"
        )
    return body[: int(length)], body[int(length) :]


def _binary_size(tensor: RequestInput) -> int | None:
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise InvalidInput(f"input {tensor.name!r} has no data: give 'data', or binary data with binary_data_size")
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput(f"input {tensor.name!r}: binary_data_size is {size!r}; it must be a byte count")
    if tensor.data is not None:
        raise InvalidInput(f"input {tensor.name!r} has both 'data' and binary_data_size: give one of them")
    return size


def _wire(datatype: str) -> np.dtype:
    return DATATYPES[datatype].newbyteorder("<")


def _from_json(tensor: RequestInput, spec: TensorSpec) -> np.ndarray:
    try:
        # FP32 via float64: integers beyond float32 become inf (reported with the other non-finite values);
        # INT64 as numpy infers it, so that a non-integer or an integer beyond int64 shows in its dtype
        with np.errstate(over="ignore"):
            array = np.asarray(tensor.data, dtype=np.float64 if spec.datatype == "FP32" else None)
    except OverflowError:
        raise InvalidInput(f"input {tensor.name!r} holds a number too large for {spec.datatype}") from None
    except ValueError:
        raise InvalidInput(
            f"input {tensor.name!r}: its nested data is ragged; give it flat in row-major order, or as rows"
        ) from None
    values = math.prod(tensor.shape)
    if array.size != values:
        raise InvalidInput(
            f"input {tensor.name!r} has shape {tensor.shape}, which holds {values} values, but its data holds "
            f"{array.size}"
        )
    if spec.datatype == "INT64" and array.dtype.kind != "i":
        what = "floating-point numbers; send integers" if array.dtype.kind == "f" else "integers beyond int64's range"
        raise InvalidInput(f"input {tensor.name!r} is INT64 but holds {what}")
    with np.errstate(over="ignore"):
        return array.astype(DATATYPES[spec.datatype]).reshape(tensor.shape)


def _from_bytes(tensor: RequestInput, spec: TensorSpec, size: int, data: bytes) -> np.ndarray:
    expected = math.prod(tensor.shape) * DATATYPES[spec.datatype].itemsize
    if size != expected:
        raise InvalidInput(
            f"input {tensor.name!r}: shape {tensor.shape} of {spec.datatype} takes {expected} bytes; "
            f"binary_data_size is {size}"
        )
    if len(data) != size:
        raise InvalidInput(
            f"input {tensor.name!r}: the body ends {size - len(data)} bytes before its binary data does "
            "(binary data follows the JSON header, whose length Inference-Header-Content-Length gives)"
        )
    # a copy in native byte order, aligned for the runtime (the slice of the body may not be)
    return np.frombuffer(data, dtype=_wire(spec.datatype)).astype(DATATYPES[spec.datatype]).reshape(tensor.shape)


def _bool_parameter(parameters: dict[str, object] | None, key: str, owner: str) -> bool | None:
    value = (parameters or {}).get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{owner}: parameter {key!r} is {value!r}; it must be true or false")
    return value


def _describe(errors: list[dict]) -> str:
    """The first problem of a request that does not fit the protocol, e.g. `inputs[0].shape: ...`."""
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"the body is not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
    where, in_data = "", False
    for part in first["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif not in_data:  # inside data, the other parts name the alternatives tried (int, float, list)
            where += f".{part}" if where else part
            in_data = part == "data"
    if in_data:
        return f"{where}: tensor data must be numbers, flat in row-major order or as rows (tensors are FP32 or INT64)"
    return f"{where or 'body'}: {first['msg']}"
