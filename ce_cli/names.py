"""Option values shared by the command line and the library, with no heavy imports."""

REDUCTIONS = ("mean", "sum", "none")
INPUT_KINDS = ("logits", "probs", "log-probs")
FORMATS = ("table", "json", "csv", "plain")
#: the range of an int64 (class indices, --ignore-index)
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

#: torch's names of NumPy dtypes, as its messages say them ("expected ... Long but found Byte")
TORCH_DTYPE_NAMES = {
    "float16": "Half", "float32": "Float", "float64": "Double", "bfloat16": "BFloat16",
    "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
    "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64", "bool": "Bool",
    "complex64": "ComplexFloat", "complex128": "ComplexDouble",
}


def torch_dtype_name(name: str) -> str:
    """torch's name of the NumPy dtype called ``name`` (``"int64"`` -> ``"Long"``)."""
    return TORCH_DTYPE_NAMES.get(name, name)
