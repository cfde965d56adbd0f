#!/usr/bin/env python3
"""Where the synthetic VQA plateau comes from: a diagnostic, not part of CI.

Trains the smallest model that can answer "is the COLOUR object on the left or on
the right?" from pixels: a per-patch MLP over the 4x4 grid of 16 px patches, each
patch joined with a question vector, max-pooled, then a linear answer layer. Only
the question vector changes between runs:

  onehot  an embedding of the question's colour word alone (the oracle)
  cls     [CLS] of a 2-layer post-LN BERT trained from scratch (as the VQA head reads it)
  mean    the same BERT's states, mean-pooled over the question's tokens
  embed   the BERT's LayerNormed input embeddings, mean-pooled (no layers)

With the oracle the model leaves chance within ~300 steps of 128 questions; with a
from-scratch text encoder it sits at chance for many hundreds of steps, because the
one word that matters is a small share of a vector built from a dozen tokens.

    edgevlm data synth --out out/scenes/train --n 10000 --seed 1
    python bench/vqa_plateau.py --data out/scenes/train --question cls
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import pytorch_reference as ref

COLOURS = ["red", "green", "blue", "orange", "yellow", "purple"]
PATCH, GRID, WIDTH, HELD_OUT = 16, 4, 64, 2000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a folder written by `edgevlm data synth`")
    p.add_argument("--question", choices=["onehot", "cls", "mean", "embed"], default="cls")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    questions = [json.loads(line) for line in open(f"{args.data}/questions.jsonl")]
    questions = [q for q in questions if q["family"] == "horizontal"]
    names = sorted({q["image"] for q in questions})
    index = {n: i for i, n in enumerate(names)}
    pixels = np.stack([np.asarray(Image.open(f"{args.data}/{n}").convert("RGB")) for n in names])
    images = (torch.tensor(pixels).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5  # [n, 3, 64, 64]
    owner = torch.tensor([index[q["image"]] for q in questions])
    colour = torch.tensor([COLOURS.index(q["question"].split()[2]) for q in questions])
    answer = torch.tensor([q["answer"] == "right" for q in questions]).long()

    words = lambda s: re.findall(r"[a-z]+|[?]", s)  # noqa: E731
    vocab = {w: i + 5 for i, w in enumerate(sorted({w for q in questions for w in words(q["question"])}))}
    rows = [[ref.CLS] + [vocab[w] for w in words(q["question"])] + [ref.SEP] for q in questions]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    mask = (ids != ref.PAD).float()

    ref.D, ref.TEXT_LAYERS = WIDTH, 2
    bert = ref.Bert(len(vocab) + 5)
    oracle = nn.Embedding(len(COLOURS), WIDTH)

    def question_vector(rows: torch.Tensor) -> torch.Tensor:  # [b] -> [b, WIDTH]
        m = mask[rows][..., None]
        if args.question == "onehot":
            return oracle(colour[rows])
        if args.question == "embed":
            return (bert.embed(ids[rows]) * m).sum(1) / m.sum(1)
        states = bert(ids[rows], mask[rows])
        return states[:, 0] if args.question == "cls" else (states * m).sum(1) / m.sum(1)

    position = nn.Parameter(torch.randn(1, GRID * GRID, WIDTH) * 0.02)
    patch = nn.Sequential(nn.Linear(3 * PATCH * PATCH, 128), nn.ReLU(), nn.Linear(128, WIDTH))
    joint = nn.Sequential(nn.Linear(2 * WIDTH, 128), nn.ReLU(), nn.Linear(128, 128))
    head = nn.Linear(128, 2)
    parts = [patch, joint, head, bert, oracle]
    optimizer = torch.optim.AdamW([position] + [w for m in parts for w in m.parameters()], lr=1e-3)

    def logits(rows: torch.Tensor) -> torch.Tensor:
        x = images[owner[rows]]
        b = x.shape[0]
        tiles = x.reshape(b, 3, GRID, PATCH, GRID, PATCH).permute(0, 2, 4, 1, 3, 5).reshape(b, GRID * GRID, -1)
        tokens = patch(tiles) + position  # [b, 16, WIDTH]
        q = question_vector(rows)[:, None].expand(-1, GRID * GRID, -1)
        return head(joint(torch.cat([tokens, q], 2)).max(1).values)

    held_out = torch.arange(len(questions) - HELD_OUT, len(questions))
    for step in range(1, args.steps + 1):
        batch = torch.randint(0, len(questions) - HELD_OUT, (128,))
        loss = F.cross_entropy(logits(batch), answer[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            with torch.no_grad():
                accuracy = (logits(held_out).argmax(1) == answer[held_out]).float().mean().item()
            print(f"step {step}: loss {loss.item():.3f}, held-out accuracy {100 * accuracy:.1f}%", flush=True)


if __name__ == "__main__":
    main()
