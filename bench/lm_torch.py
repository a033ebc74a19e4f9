"""The Hugging Face baseline of bench/lm.py: the causal-LM loss of one .safetensors file
holding ``logits`` (B, L, V) and ``labels`` (B, L), as transformers' ``ForCausalLMLoss``
(src/transformers/loss/loss_utils.py) computes it: the logits upcast to float32, the
labels padded on the right with -100 and shifted one to the left (position t predicts
token t + 1), ``F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)``.

    python bench/lm_torch.py eval.safetensors                  # the whole tensor, as HF eval
    python bench/lm_torch.py eval.safetensors --sequences 1    # one sequence at a time
    python bench/lm_torch.py eval.safetensors --keep-dtype     # no upcast (reference)

With ``--sequences K`` the logits are read K sequences at a time (``get_slice``, from the
memory-mapped file) and the script sums ``reduction='sum'`` and the counted tokens, then
divides: the same number, without holding the (B, L, V) float32 upcast and its
log_softmax at once (16.8 GB each for (8, 4096, 128256)). Prints the mean loss.
"""

import argparse

import torch.nn.functional as F
from safetensors import safe_open

ap = argparse.ArgumentParser()
ap.add_argument("path")
ap.add_argument("--sequences", type=int, default=0,
                help="sequences per step (default 0: the whole tensor at once)")
ap.add_argument("--keep-dtype", action="store_true",
                help="no upcast: the loss of the logits as saved (float16/bfloat16)")
args = ap.parse_args()

with safe_open(args.path, "pt") as f:
    labels = f.get_tensor("labels")
    # HF: pad right with ignore_index, then shift: the last position predicts nothing
    shift_labels = F.pad(labels, (0, 1), value=-100)[..., 1:].contiguous()
    if args.sequences <= 0:
        logits = f.get_tensor("logits")
        logits = logits if args.keep_dtype else logits.float()
        vocab = logits.shape[-1]
        loss = F.cross_entropy(logits.view(-1, vocab), shift_labels.view(-1),
                               ignore_index=-100)
        print(loss.item())
    else:
        sliced = f.get_slice("logits")
        batch, _, vocab = sliced.get_shape()
        total, count = 0.0, 0
        for i in range(0, batch, args.sequences):
            logits = sliced[i:i + args.sequences]
            logits = logits if args.keep_dtype else logits.float()
            part = shift_labels[i:i + args.sequences].reshape(-1)
            total += F.cross_entropy(logits.view(-1, vocab), part, ignore_index=-100,
                                     reduction="sum").item()
            count += int((part != -100).sum())
            del logits
        print(total / count)
