"""Option values shared by the command line and the library, with no heavy imports."""

REDUCTIONS = ("mean", "sum", "none")
INPUT_KINDS = ("logits", "probs", "log-probs")
FORMATS = ("table", "json", "csv", "plain")
