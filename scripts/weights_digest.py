"""One sha256 over every tensor of a model as `load_adapter` loads it (names, dtypes, shapes and bytes, in name
order): two checkouts load a built-in model to the same weights when the digests match.
Usage: python scripts/weights_digest.py MODEL [MODEL ...]   (prints `MODEL DIGEST N_TENSORS` per model)"""

import hashlib
import sys

import torch

from sea_align.models import load_adapter


def digest(name: str) -> tuple[str, int]:
    model = load_adapter(name, dtype="float32", device="cpu").model
    h, state = hashlib.sha256(), model.state_dict()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest(), len(state)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        d, n = digest(name)
        print(name, d, n, flush=True)
