import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_llava():
    from sea_align.models import load_adapter
    return load_adapter("tiny-random-llava")


def write_jsonl(path, rows):
    import json
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
