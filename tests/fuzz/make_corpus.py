#!/usr/bin/env python3
"""Regenerates the safetensors seed corpus (tests/fuzz/corpus/safetensors): valid files and one file per
kind of corruption that ParseSafetensors must refuse. Run from the repository root."""
import json
import os
import struct

OUT = "tests/fuzz/corpus/safetensors"
SIZES = {"F32": 4, "BF16": 2, "F16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def img(header, data=b""):
    hb = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(hb)) + hb + data


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def main():
    files = {}
    files["valid_single"] = img(json.dumps({"w": t("F32", [2, 2], 0, 16)}), bytes(range(16)))
    files["valid_several"] = img(json.dumps({"__metadata__": {"format": "pt"}, "a": t("BF16", [3], 0, 6),
                                             "b": t("F32", [1, 2], 6, 14), "c": t("I64", [1], 14, 22)}), bytes(22))
    header, off = {}, 0
    for name, size in SIZES.items():
        header["t_" + name] = t(name, [2], off, off + 2 * size)
        off += 2 * size
    files["every_dtype"] = img(json.dumps(header), bytes(off))
    files["empty_metadata"] = img(json.dumps({"__metadata__": {}}))
    files["empty_object"] = img("{}")
    files["scalar_and_empty"] = img(json.dumps({"s": t("F32", [], 0, 4), "e": t("F16", [0, 5], 4, 4)}), bytes(4))
    files["truncated_data"] = img(json.dumps({"w": t("F32", [4], 0, 16)}), bytes(16))[:-5]
    files["truncated_length"] = b"\x05\x00\x00"
    files["header_past_end"] = struct.pack("<Q", 1234) + b" " * 92
    files["overlapping"] = img(json.dumps({"a": t("F32", [4], 0, 16), "b": t("F32", [2], 8, 16)}), bytes(16))
    files["wrong_size"] = img(json.dumps({"w": t("F32", [3], 0, 16)}), bytes(16))
    files["bad_json"] = img('{"w": {"dtype": "F32", "shape": [1')
    files["non_object_json"] = img("[1, 2, 3]")
    files["huge_shape_overflow"] = img(json.dumps({"w": t("F32", [2**32, 2**32, 16], 0, 0)}))
    files["negative_shape"] = img(json.dumps({"w": t("F32", [-4], 0, 16)}), bytes(16))
    files["offsets_past_end"] = img(json.dumps({"w": t("U8", [8], 0, 8)}), bytes(4))
    files["unknown_dtype"] = img(json.dumps({"w": t("F8_E4M3", [1], 0, 1)}), bytes(1))
    files["metadata_not_string"] = img(json.dumps({"__metadata__": {"a": 1}}))
    files["duplicate_key"] = img('{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                 '"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2))
    files["padded_header"] = img(json.dumps({"w": t("U8", [1], 0, 1)}) + "        ", bytes(1))
    os.makedirs(OUT, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {OUT}")


if __name__ == "__main__":
    main()
