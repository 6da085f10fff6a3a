"""Expose a VITS voice's per-phoneme durations by marking its `Ceil` tensor as a graph output.

Piper voices are VITS models: the duration predictor's output is rounded up with one `Ceil`
node (`w_ceil`, frames per phoneme id), then expanded into the audio. The tensor exists in every
voice, but older exported models (en_US-joe-medium among them) do not list it as an output.
Piper's own patcher (`piper.patch_voice_with_alignment`) needs the `onnx` package; adding one
graph output is a few bytes of protobuf, so this module edits the wire format directly and keeps
the core install free of `onnx`.

Only two protobuf facts are used: ModelProto.graph is field 7, GraphProto.node is field 1 and
GraphProto.output is field 12, NodeProto.output is field 2 and NodeProto.op_type is field 4,
ValueInfoProto.name is field 1 (onnx.proto, stable since ONNX 1.0).
"""

from __future__ import annotations

from collections.abc import Iterator

_LEN = 2  # wire type of strings, bytes and embedded messages
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_OUTPUT = 1, 12
_NODE_OUTPUT, _NODE_OP_TYPE = 2, 4
_VALUE_INFO_NAME = 1


class OnnxPatchError(ValueError):
    """The model is not shaped as expected (no or several Ceil nodes, malformed protobuf)."""


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxPatchError("truncated varint in ONNX protobuf")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field_number, wire_type, value_start, value_end, field_start) between start, end."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _read_varint(buf, pos)
        field_number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, value_end = _read_varint(buf, pos)
        elif wire_type == 1:
            value_end = pos + 8
        elif wire_type == 5:
            value_end = pos + 4
        elif wire_type == _LEN:
            length, pos = _read_varint(buf, pos)
            value_end = pos + length
        else:
            raise OnnxPatchError(f"unsupported protobuf wire type {wire_type}")
        if value_end > end:
            raise OnnxPatchError("ONNX protobuf field runs past its message")
        yield field_number, wire_type, pos, value_end, field_start
        pos = value_end


def _len_field(field_number: int, payload: bytes) -> bytes:
    return _varint((field_number << 3) | _LEN) + _varint(len(payload)) + payload


def add_ceil_output(model_bytes: bytes) -> tuple[bytes, str]:
    """Return (patched model bytes, name of the tensor added as the last graph output)."""
    buf = memoryview(model_bytes)
    graphs = [f for f in _fields(buf, 0, len(buf)) if f[0] == _MODEL_GRAPH and f[1] == _LEN]
    if len(graphs) != 1:
        raise OnnxPatchError(f"expected one graph in the ONNX model, found {len(graphs)}")
    _, _, graph_start, graph_end, graph_field_start = graphs[0]

    ceil_outputs: list[str] = []
    output_names: set[str] = set()
    for number, wire, start, end, _ in _fields(buf, graph_start, graph_end):
        if wire != _LEN:
            continue
        if number == _GRAPH_NODE:
            op_type, outputs = "", []
            for n_number, _, n_start, n_end, _ in _fields(buf, start, end):
                if n_number == _NODE_OP_TYPE:
                    op_type = bytes(buf[n_start:n_end]).decode("utf-8")
                elif n_number == _NODE_OUTPUT:
                    outputs.append(bytes(buf[n_start:n_end]).decode("utf-8"))
            if op_type == "Ceil":
                ceil_outputs.extend(outputs)
        elif number == _GRAPH_OUTPUT:
            for v_number, _, v_start, v_end, _ in _fields(buf, start, end):
                if v_number == _VALUE_INFO_NAME:
                    output_names.add(bytes(buf[v_start:v_end]).decode("utf-8"))
    if len(ceil_outputs) != 1:
        raise OnnxPatchError(f"expected one Ceil tensor (w_ceil), found {len(ceil_outputs)}")
    tensor_name = ceil_outputs[0]
    if tensor_name in output_names:
        return model_bytes, tensor_name

    value_info = _len_field(_VALUE_INFO_NAME, tensor_name.encode("utf-8"))
    graph = bytes(buf[graph_start:graph_end]) + _len_field(_GRAPH_OUTPUT, value_info)
    patched = bytes(buf[:graph_field_start]) + _len_field(_MODEL_GRAPH, graph) + bytes(buf[graph_end:])
    return patched, tensor_name
