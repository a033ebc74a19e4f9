"""Option values shared by the command line and the library, with no heavy imports."""

REDUCTIONS = ("mean", "sum", "none")
INPUT_KINDS = ("logits", "probs", "log-probs")
FORMATS = ("table", "json", "csv", "plain")
#: the range of an int64 (class indices, --ignore-index)
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
