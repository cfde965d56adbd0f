#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 from Hugging Face transformers
(mean pooling over real tokens, then L2 normalisation, as sentence-transformers
does), stored as the fixture the Rust import test compares against.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.15.0 transformers safetensors
    models/fetch-pretrained.sh
    /tmp/torchenv/bin/python models/minilm_reference.py models/pretrained/minilm-l6 \\
        host/src/model/pretrained/minilm_reference.json
"""
import json
import sys

import torch
import transformers
from transformers import AutoModel, AutoTokenizer

SENTENCES = [
    "A dog runs across the grass.",
    "A puppy is running on a lawn.",
    "Two children play football on the beach.",
    "The stock market fell sharply today.",
    "a man in a red jacket climbs a snowy mountain",
]

model_dir, out = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).eval()
batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).float()
mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
unit = torch.nn.functional.normalize(mean, p=2, dim=1)
text = json.dumps(
    {
        "source": "models/minilm_reference.py with transformers "
        f"{transformers.__version__}, torch {torch.__version__}",
        "sentences": SENTENCES,
        "ids": [row[: int(n)] for row, n in zip(batch["input_ids"].tolist(), batch["attention_mask"].sum(1).tolist())],
        "embeddings": [[round(v, 7) for v in row] for row in unit.tolist()],
    }
)
# One line per field keeps the fixture readable in a diff.
open(out, "w").write(text.replace(', "', ',\n "') + "\n")
print(f"{out}: {len(SENTENCES)} sentences, {unit.shape[1]} dims")
