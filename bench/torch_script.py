"""The plain torch baseline of bench/run.py: load two .npy files, print torch's mean loss.

    python bench/torch_script.py logits.npy labels.npy
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F

x = np.load(sys.argv[1])
t = np.load(sys.argv[2])
print(F.cross_entropy(torch.from_numpy(x), torch.from_numpy(t)).item())
