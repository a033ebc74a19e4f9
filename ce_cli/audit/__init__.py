"""The audit: what the input looks like (:mod:`.scan`), what looks wrong about it
(:mod:`.findings`) and the statistics beside the loss (:mod:`.metrics`, summing per-row
values that :mod:`.rows` takes from the kernel's own pass).

Pure NumPy, no I/O: the pipeline feeds the scan and the statistics block by block,
partial results merge them, and the report says the findings.
"""
