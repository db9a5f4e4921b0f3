"""A `.tflite` flatbuffer as the schema's object tree, and back.

The model is re-serialized with the flatbuffers object API. The schema asks for constant buffers
aligned to 16 bytes (`force_align: 16`), which the generated Python code ignores, so buffers are
packed here with that alignment, as the TFLite converter writes them.
"""

from __future__ import annotations

import numpy as np

from vwwtorch.contract.tflite import schema

FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16


def unpack(data: bytes):
    return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model, size_hint: int = 0) -> bytes:
    import flatbuffers

    aligned_buffer = _aligned_buffer_class(schema())
    for i, buffer in enumerate(model.buffers):
        model.buffers[i] = aligned = aligned_buffer()
        aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
    builder = flatbuffers.Builder(size_hint + 4096)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def indices(array) -> list[int]:
    """A flatbuffer int vector (or None) as a list."""
    return [int(i) for i in (array if array is not None else [])]


def _aligned_buffer_class(schema):
    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 (flatbuffers naming)
            vector = None
            if self.data is not None:
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                vector = builder.EndVector()
            schema.BufferStart(builder)
            if vector is not None:
                schema.BufferAddData(builder, vector)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT
