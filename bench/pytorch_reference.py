#!/usr/bin/env python3
"""PyTorch reference benchmark of the edgevlm model (same architecture and config as
the burn implementation in host/src/model, "synthetic" preset), for stating the
burn / PyTorch training-speed ratio on CPU.

Measures one optimizer step (forward + backward + gradient clipping + AdamW) of
  pretrain  ITC + ITM (2B hard negatives) + MLM + masked image features, B=32
  vqa       16 images x 8 questions, image encoded once, CE over 22 answers
  vqa-spatial  the grid encoder and spatial VQA head (spatial.rs): 16 images x 16 questions
  caption   B=32, teacher-forced caption decoder
on random data of the right shapes (no data loading), float32.

By default each (benchmark, thread count) runs in its own child process so that the
reported peak RSS is that benchmark's alone.

    python bench/pytorch_reference.py                      # all, 2 and 1 threads
    python bench/pytorch_reference.py --bench pretrain --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Config: EdgeVlmConfig::synthetic(vocab) in host/src/model/vlm.rs
# ---------------------------------------------------------------------------

IMAGE_SIZE = 64
PATCH_SIZE = 16
STEM_CHANNELS = (32, 64)  # 3x3 stride-2 convs (padding 1, ReLU) before the patch projection
D = 128  # d_model of every part
VIT_LAYERS, VIT_HEADS, MLP_RATIO = 3, 4, 4
TEXT_LAYERS, TEXT_HEADS, TEXT_INTERMEDIATE, MAX_POSITIONS, TYPE_VOCAB = 2, 4, 512, 64, 2
FUSION_LAYERS, FUSION_HEADS, FUSION_INTERMEDIATE = 2, 4, 512
DECODER_LAYERS, DECODER_HEADS, DECODER_INTERMEDIATE, DECODER_MAX_LEN = 2, 4, 512, 40
D_EMBED = 128
VOCAB = 100
SEQ_LEN = 16
ANSWERS = 22

# Special token ids (the tokenizer puts [PAD] at 0, as BERT does).
PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4

# Training: TrainConfig defaults (host/src/train/config.rs) and burn's AdamWConfig.
LR, WEIGHT_DECAY, BETAS, ADAM_EPS, GRAD_CLIP = 1e-3, 0.01, (0.9, 0.999), 1e-5, 1.0
MIM_RATIO = 0.3

USE_SDPA = False  # --sdpa: fused scaled_dot_product_attention instead of burn's explicit math


# ---------------------------------------------------------------------------
# Model (one class per component, mirroring host/src/model/*.rs)
# ---------------------------------------------------------------------------


class Attention(nn.Module):
    """attention.rs: multi-head scaled dot-product attention (self or cross)."""

    def __init__(self, d_model: int, n_heads: int, d_context: int | None = None):
        super().__init__()
        d_context = d_context or d_model
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_context, d_model)
        self.value = nn.Linear(d_context, d_model)
        self.output = nn.Linear(d_model, d_model)
        self.n_heads = n_heads

    def forward(self, x, context, bias=None):
        # x: [b, q_len, d]; context: [b, k_len, d_ctx]; bias: broadcastable to [b, h, q_len, k_len]
        b, q_len, d = x.shape
        k_len = context.shape[1]
        h, dh = self.n_heads, d // self.n_heads
        q = self.query(x).view(b, q_len, h, dh).transpose(1, 2)  # [b, h, q, dh]
        k = self.key(context).view(b, k_len, h, dh).transpose(1, 2)  # [b, h, k, dh]
        v = self.value(context).view(b, k_len, h, dh).transpose(1, 2)  # [b, h, k, dh]
        if USE_SDPA:
            mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            scores = q @ k.transpose(2, 3) / math.sqrt(dh)  # [b, h, q, k]
            if bias is not None:
                scores = scores + bias
            mixed = scores.softmax(dim=3) @ v  # [b, h, q, dh]
        return self.output(mixed.transpose(1, 2).reshape(b, q_len, d))


def padding_bias(mask):
    """[b, k_len] (1 = token) -> [b, 1, 1, k_len] score bias."""
    return ((1.0 - mask) * -1e4)[:, None, None, :]


def causal_bias(length: int):
    """[1, 1, len, len], -1e4 above the diagonal."""
    return torch.triu(torch.full((length, length), -1e4), diagonal=1)[None, None]


class FeedForward(nn.Module):
    """feed_forward.rs: Linear -> GELU -> Linear."""

    def __init__(self, d_model: int, d_hidden: int):
        super().__init__()
        self.intermediate = nn.Linear(d_model, d_hidden)
        self.output = nn.Linear(d_hidden, d_model)

    def forward(self, x):
        return self.output(F.gelu(self.intermediate(x)))


class VitBlock(nn.Module):
    """vit.rs: pre-LN block."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=1e-6)
        self.attention = Attention(D, VIT_HEADS)
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.mlp = FeedForward(D, D * MLP_RATIO)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attention(h, h)
        return x + self.mlp(self.norm2(x))


class Vit(nn.Module):
    """vit.rs: conv stem, conv patch embedding, [CLS], learned positions, pre-LN blocks, final LN."""

    def __init__(self):
        super().__init__()
        patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
        channels, stem = 3, []
        for out in STEM_CHANNELS:
            stem.append(nn.Conv2d(channels, out, 3, stride=2, padding=1))
            channels = out
        self.stem = nn.ModuleList(stem)
        last = PATCH_SIZE // 2 ** len(STEM_CHANNELS)  # 16 px patch -> 4x4 on the stem's output
        self.patch_embed = nn.Conv2d(channels, D, last, stride=last)
        self.cls_token = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        self.position = nn.Parameter(torch.randn(1, patches + 1, D) * 0.02)
        self.blocks = nn.ModuleList(VitBlock() for _ in range(VIT_LAYERS))
        self.norm = nn.LayerNorm(D, eps=1e-6)

    def embed(self, images):
        # [b, 3, s, s] -> [b, 1 + patches, d]
        x = images
        for conv in self.stem:
            x = F.relu(conv(x))  # halves the resolution: [b, c, s/2, s/2]
        p = self.patch_embed(x)  # [b, d, h, w]
        tokens = p.flatten(2).transpose(1, 2)  # [b, h*w, d]
        cls = self.cls_token.expand(p.shape[0], 1, D)
        return torch.cat([cls, tokens], dim=1) + self.position

    def patchify(self, images):
        # [b, 3, s, s] -> [b, patches, 3 * p * p], patch-token order, channel by channel
        b, c, s, _ = images.shape
        p, g = PATCH_SIZE, s // PATCH_SIZE
        return images.reshape(b, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)

    def encode(self, x):
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images):
        return self.encode(self.embed(images))


class BertLayer(nn.Module):
    """bert.rs: post-LN block, optionally with cross-attention (fusion, MIM head)."""

    def __init__(self, d, heads, d_intermediate, d_context=None, eps=1e-12):
        super().__init__()
        self.attention = Attention(d, heads)
        self.attention_norm = nn.LayerNorm(d, eps=eps)
        if d_context is not None:
            self.cross_attention = Attention(d, heads, d_context)
            self.cross_attention_norm = nn.LayerNorm(d, eps=eps)
        else:
            self.cross_attention = None
        self.feed_forward = FeedForward(d, d_intermediate)
        self.output_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x, self_bias=None, context=None, context_bias=None):
        # x: [b, len, d]; context: [b, k_len, d_ctx]
        x = self.attention_norm(x + self.attention(x, x, self_bias))
        if self.cross_attention is not None and context is not None:
            x = self.cross_attention_norm(x + self.cross_attention(x, context, context_bias))
        return self.output_norm(x + self.feed_forward(x))


class Bert(nn.Module):
    """bert.rs: word + position + type embeddings, LN(1e-12), post-LN blocks, pooler."""

    def __init__(self, vocab: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, D)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, D)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, D)
        self.embeddings_norm = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList(
            BertLayer(D, TEXT_HEADS, TEXT_INTERMEDIATE) for _ in range(TEXT_LAYERS)
        )
        self.pooler = nn.Linear(D, D)  # unused by the training steps, kept for parameter parity
        for table in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            nn.init.normal_(table.weight, std=0.02)  # bert.rs `embedding`: N(0, 0.02)

    def embed(self, ids):
        # [b, len] -> [b, len, d]
        b, n = ids.shape
        positions = torch.arange(n).expand(b, n)
        types = torch.zeros_like(ids)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings(types)
        return self.embeddings_norm(x)

    def forward(self, ids, mask):
        bias = padding_bias(mask)
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, bias)
        return x


class Fusion(nn.Module):
    """fusion.rs (CrossAttention kind): text tokens attend to image tokens."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(
            BertLayer(D, FUSION_HEADS, FUSION_INTERMEDIATE, d_context=D) for _ in range(FUSION_LAYERS)
        )

    def forward(self, text, text_mask, image):
        # text: [b, len, d], image: [b, 1 + patches, d] -> [b, len, d]
        bias = padding_bias(text_mask)
        x = text
        for layer in self.layers:
            x = layer(x, bias, image, None)
        return x


def l2_normalize(x):
    return x / x.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-12)


class ItcHead(nn.Module):
    """heads.rs: contrastive projections with learned log temperature (clamped at ln 100)."""

    def __init__(self):
        super().__init__()
        self.image_proj = nn.Linear(D, D_EMBED)
        self.text_proj = nn.Linear(D, D_EMBED)
        self.logit_scale = nn.Parameter(torch.tensor([math.log(1 / 0.07)]))

    def scale(self):
        return self.logit_scale.clamp(max=math.log(100.0)).exp()  # [1]


class MlmHead(nn.Module):
    """heads.rs: dense -> GELU -> LN, logits against tied word embeddings + bias."""

    def __init__(self, vocab: int):
        super().__init__()
        self.dense = nn.Linear(D, D)
        self.norm = nn.LayerNorm(D, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, hidden, word_embeddings):
        # [b, len, d], [vocab, d] -> [b, len, vocab]
        h = self.norm(F.gelu(self.dense(hidden)))
        return h @ word_embeddings.t() + self.bias


class MimHead(nn.Module):
    """heads.rs: mask token at ViT input; BertLayer cross-attending to text; Linear to pixels."""

    def __init__(self):
        super().__init__()
        self.mask_token = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        self.layer = BertLayer(D, VIT_HEADS, 2 * D, d_context=D)
        self.output = nn.Linear(D, 3 * PATCH_SIZE**2)  # 128 -> 768 pixels per patch

    def mask(self, embedded, keep):
        # embedded: [b, n, d]; keep: [b, n, 1] (1 = visible)
        return embedded * keep + self.mask_token.expand_as(embedded) * (1.0 - keep)

    def forward(self, encoded, text, text_bias):
        # [b, n, d] attending to text [b, len, d] -> predicted patch pixels [b, n, 3*p*p]
        return self.output(self.layer(encoded, None, text, text_bias))


class VqaHead(nn.Module):
    """heads.rs: Linear d->2d, GELU, LN (burn default eps 1e-5), Linear 2d->answers."""

    def __init__(self, answers: int):
        super().__init__()
        self.hidden = nn.Linear(D, 2 * D)
        self.norm = nn.LayerNorm(2 * D, eps=1e-5)
        self.output = nn.Linear(2 * D, answers)

    def forward(self, fused_cls):
        return self.output(self.norm(F.gelu(self.hidden(fused_cls))))


class ConvBn(nn.Module):
    """grid.rs ConvBn: 3x3 conv (padding 1), BatchNorm (burn defaults: eps 1e-5, momentum 0.1), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


SPATIAL_GRID, SPATIAL_HIDDEN, SPATIAL_POOL_SCALE = 8, 256, 16.0


def cell_coordinates():
    axis = torch.linspace(-1, 1, SPATIAL_GRID)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], 1)  # [cells, 2], row by row


class GridEncoder(nn.Module):
    """grid.rs: BatchNorm CNN down to an 8x8 grid, each cell joined with its (x, y)."""

    def __init__(self):
        super().__init__()
        convs, channels = [], 3
        for layer in range(int(math.log2(IMAGE_SIZE // SPATIAL_GRID))):  # stride 2 down to the grid
            convs.append(ConvBn(channels, 32 if layer == 0 else 64, 2))
            channels = 32 if layer == 0 else 64
        convs.append(ConvBn(channels, D, 1))
        self.convs = nn.ModuleList(convs)
        self.register_buffer("coordinates", cell_coordinates())
        self.cell = nn.Linear(D + 2, D)
        self.cell_norm = nn.LayerNorm(D, eps=1e-5)

    def forward(self, images):
        x = images
        for conv in self.convs:
            x = conv(x)
        features = x.flatten(2).transpose(1, 2)  # [b, cells, D]
        xy = self.coordinates.expand(len(x), -1, -1)
        return self.cell_norm(F.relu(self.cell(torch.cat([features, xy], 2))))


class SpatialVqa(nn.Module):
    """spatial.rs: anchor attention over the grid cells, cells scored relative to it, pooled."""

    def __init__(self, answers: int):
        super().__init__()
        self.register_buffer("coordinates", cell_coordinates())
        self.question_norm = nn.LayerNorm(D, eps=1e-5)
        self.anchor_key, self.anchor_query = nn.Linear(D, D), nn.Linear(D, D)
        self.scored_cell = nn.Linear(D, D)
        self.scored_context = nn.Linear(2 * D + 2, D, bias=False)
        self.scored_offset = nn.Linear(3, D, bias=False)  # dx, dy, distance
        self.scored_hidden, self.score = nn.Linear(D, D), nn.Linear(D, 1)
        self.answer_hidden = nn.Linear(5 * D + 2, SPATIAL_HIDDEN)
        self.answer = nn.Linear(SPATIAL_HIDDEN, answers)

    def forward(self, cells, question):
        b = len(cells)
        question = self.question_norm(question)
        logits = (self.anchor_key(cells) @ self.anchor_query(question)[:, :, None]) / math.sqrt(D)
        weights = torch.softmax(logits, 1).transpose(1, 2)  # [b, 1, cells]
        anchor = (weights @ cells).reshape(b, D)
        anchor_at = (weights @ self.coordinates).reshape(b, 2)
        offsets = self.coordinates[None] - anchor_at[:, None]
        offsets = torch.cat([offsets, (offsets.pow(2).sum(2, keepdim=True) + 1e-6).sqrt()], 2)
        context = torch.cat([question, anchor, anchor_at], 1)
        scored = F.relu(self.scored_cell(cells) + self.scored_context(context)[:, None] + self.scored_offset(offsets))
        scored = F.relu(self.scored_hidden(scored))
        best = (torch.softmax(self.score(scored), 1).transpose(1, 2) @ cells).reshape(b, D)
        total = scored.sum(1) / SPATIAL_POOL_SCALE
        largest = scored.max(1).values
        joined = torch.cat([question, anchor, anchor_at, best, total, largest], 1)
        return self.answer(F.relu(self.answer_hidden(joined)))


class DecoderLayer(nn.Module):
    """decoder.rs: pre-LN causal self-attention, cross-attention to image, FFN."""

    def __init__(self):
        super().__init__()
        self.self_norm = nn.LayerNorm(D, eps=1e-5)
        self.self_attention = Attention(D, DECODER_HEADS)
        self.cross_norm = nn.LayerNorm(D, eps=1e-5)
        self.cross_attention = Attention(D, DECODER_HEADS, D)
        self.ff_norm = nn.LayerNorm(D, eps=1e-5)
        self.feed_forward = FeedForward(D, DECODER_INTERMEDIATE)

    def forward(self, x, image, causal):
        h = self.self_norm(x)
        x = x + self.self_attention(h, h, causal)
        x = x + self.cross_attention(self.cross_norm(x), image)
        return x + self.feed_forward(self.ff_norm(x))


class CaptionDecoder(nn.Module):
    """decoder.rs: token + position embeddings, decoder layers, LN, tied output."""

    def __init__(self, vocab: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, D)
        self.position_embedding = nn.Embedding(DECODER_MAX_LEN, D)
        self.layers = nn.ModuleList(DecoderLayer() for _ in range(DECODER_LAYERS))
        self.norm = nn.LayerNorm(D, eps=1e-5)
        for table in (self.token_embedding, self.position_embedding):
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, ids, image):
        # ids: [b, len]; image: [b, n, d] -> logits [b, len, vocab]
        b, n = ids.shape
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(n).expand(b, n))
        causal = causal_bias(n)
        for layer in self.layers:
            x = layer(x, image, causal)
        return self.norm(x) @ self.token_embedding.weight.t()


class EdgeVlm(nn.Module):
    """vlm.rs: the whole model (the decoder is present in every task, as in burn)."""

    def __init__(self, vocab: int = VOCAB, answers: int = 0, grid: bool = False):
        super().__init__()
        self.vision = Vit()
        self.text = Bert(vocab)
        self.fusion = Fusion()
        self.itc = ItcHead()
        self.itm = nn.Linear(D, 2)
        self.mlm = MlmHead(vocab)
        self.mim = MimHead()
        self.decoder = CaptionDecoder(vocab)
        self.vqa = VqaHead(answers) if answers > 0 else None
        self.spatial_vqa = SpatialVqa(answers) if answers > 0 else None
        self.grid = GridEncoder() if grid else None

    def fused_cls(self, text, mask, image):
        return self.fusion(text, mask, image)[:, 0]  # [b, d]


# ---------------------------------------------------------------------------
# Objectives (host/src/train/objectives.rs) and steps (steps.rs)
# ---------------------------------------------------------------------------


def weighted_cross_entropy(logits, targets, weights):
    """logits [n, c], targets [n], weights [n]; sum(-w log p) / max(sum w, 1)."""
    picked = logits.log_softmax(dim=1).gather(1, targets[:, None])[:, 0]
    return -(picked * weights).sum() / weights.sum().clamp_min(1.0)


def contrastive(model, image_tokens, text_states):
    """Symmetric InfoNCE; also returns the detached similarities for ITM mining."""
    b = image_tokens.shape[0]
    img = l2_normalize(model.itc.image_proj(image_tokens[:, 0]))  # [b, e]
    txt = l2_normalize(model.itc.text_proj(text_states[:, 0]))  # [b, e]
    sims = img @ txt.t()  # [b, b]
    logits = sims * model.itc.scale()
    diag, ones = torch.arange(b), torch.ones(b)
    loss = (weighted_cross_entropy(logits, diag, ones) + weighted_cross_entropy(logits.t(), diag, ones)) / 2
    return loss, sims.detach()


def hard_negatives(sims):
    """One index != own per row, drawn with probability ∝ exp(sim / 0.1)."""
    w = (sims / 0.1).exp()
    w.fill_diagonal_(0.0)
    return torch.multinomial(w, 1)[:, 0]


def matching(model, image_tokens, text_states, text_mask, sims):
    """ITM: B positives, B (text, hard-negative image), B (image, hard-negative text)."""
    b = image_tokens.shape[0]
    own = torch.arange(b)
    neg_image = hard_negatives(sims.t())  # per text, an image
    neg_text = hard_negatives(sims)  # per image, a text
    image_idx = torch.cat([own, neg_image, own])  # [3b]
    text_idx = torch.cat([own, own, neg_text])  # [3b]
    labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)])
    images = image_tokens.index_select(0, image_idx)  # [3b, n, d]
    texts = text_states.index_select(0, text_idx)  # [3b, len, d]
    masks = text_mask.index_select(0, text_idx)  # [3b, len]
    logits = model.itm(model.fused_cls(texts, masks, images))  # [3b, 2]
    return weighted_cross_entropy(logits, labels, torch.ones(3 * b))


def mask_tokens(ids, mask, vocab):
    """BERT masking: 15% of real non-special tokens; 80% [MASK], 10% random, 10% kept."""
    special = (ids == CLS) | (ids == SEP) | (ids == PAD)
    chosen = (mask > 0) & ~special & (torch.rand(ids.shape) < 0.15)
    roll = torch.rand(ids.shape)
    corrupted = torch.where(chosen & (roll < 0.8), torch.full_like(ids, MASK), ids)
    corrupted = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), torch.randint_like(ids, vocab), corrupted)
    return corrupted, torch.where(chosen, ids, 0), chosen.float()


def masked_language_model(model, image_tokens, corrupted, mask, targets, weights):
    text = model.text(corrupted, mask)
    fused = model.fusion(text, mask, image_tokens)
    logits = model.mlm(fused, model.text.word_embeddings.weight)  # [b, len, vocab]
    return weighted_cross_entropy(logits.flatten(0, 1), targets.flatten(), weights.flatten())


def masked_image_features(model, images, text_states, text_mask):
    """Hide 30% of patches at the ViT input; regress their per-patch-normalised pixels. MSE."""
    target = model.vision.patchify(images)  # [b, patches, 3*p*p]
    b, patches, d_target = target.shape
    mean = target.mean(dim=2, keepdim=True)
    var = (target - mean).pow(2).mean(dim=2, keepdim=True)
    target = (target - mean) / (var + 1e-6).sqrt()
    embedded = model.vision.embed(images)  # [b, n, d]
    n = patches + 1
    hidden = max(1, round(patches * MIM_RATIO))  # 5 of 16
    chosen = torch.rand(b, patches).argsort(dim=1)[:, :hidden] + 1  # patch positions, never [CLS]
    keep = torch.ones(b, n).scatter_(1, chosen, 0.0)[:, :, None]  # [b, n, 1]
    encoded = model.vision.encode(model.mim.mask(embedded, keep))
    predicted = model.mim(encoded, text_states, padding_bias(text_mask))[:, 1:]  # [b, patches, 3*p*p]
    return ((predicted - target).pow(2) * (1.0 - keep[:, 1:])).sum() / (b * hidden * d_target)


def pretrain_loss(model, batch):
    images, ids, mask = batch["images"], batch["ids"], batch["mask"]
    image_tokens = model.vision(images)
    text_states = model.text(ids, mask)
    itc, sims = contrastive(model, image_tokens, text_states)
    itm = matching(model, image_tokens, text_states, mask, sims)
    corrupted, targets, weights = mask_tokens(ids, mask, VOCAB)
    mlm = masked_language_model(model, image_tokens, corrupted, mask, targets, weights)
    mim = masked_image_features(model, images, text_states, mask)
    return itc + itm + mlm + mim


def vqa_loss(model, batch):
    image_tokens = model.vision(batch["images"])  # [images, n, d], once per image
    image_tokens = image_tokens.index_select(0, batch["row_image"])  # [questions, n, d]
    text = model.text(batch["ids"], batch["mask"])
    logits = model.vqa(model.fused_cls(text, batch["mask"], image_tokens))  # [questions, answers]
    return weighted_cross_entropy(logits, batch["answers"], torch.ones(len(batch["answers"])))


def spatial_vqa_loss(model, batch):
    cells = model.grid(batch["images"]).index_select(0, batch["row_image"])  # once per image
    mask = batch["mask"]
    states = model.text(batch["ids"], mask)
    question = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
    logits = model.spatial_vqa(cells, question)
    return weighted_cross_entropy(logits, batch["answers"], torch.ones(len(batch["answers"])))


def caption_loss(model, batch):
    ids, mask = batch["ids"], batch["mask"]
    image = model.vision(batch["images"])
    logits = model.decoder(ids[:, :-1], image)  # [b, len-1, vocab]
    return weighted_cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), mask[:, 1:].flatten().float())


# ---------------------------------------------------------------------------
# Data, optimizer step, timing
# ---------------------------------------------------------------------------


def random_text(rows: int):
    """[CLS] tokens [SEP] [PAD]..., real lengths 8..16: ids (long) and mask (float) [rows, 16]."""
    lengths = torch.randint(8, SEQ_LEN + 1, (rows,))
    pos = torch.arange(SEQ_LEN)[None]
    ids = torch.randint(MASK + 1, VOCAB, (rows, SEQ_LEN))
    ids[:, 0] = CLS
    ids = torch.where(pos == (lengths[:, None] - 1), torch.full_like(ids, SEP), ids)
    ids = torch.where(pos >= lengths[:, None], torch.full_like(ids, PAD), ids)
    return ids, (pos < lengths[:, None]).float()


def make_batch(bench: str):
    if bench in ("vqa", "vqa-spatial"):
        images, per_image = (16, 8) if bench == "vqa" else (16, 16)
        ids, mask = random_text(images * per_image)
        return {
            "images": torch.randn(images, 3, IMAGE_SIZE, IMAGE_SIZE),
            "row_image": torch.arange(images).repeat_interleave(per_image),
            "ids": ids,
            "mask": mask,
            "answers": torch.randint(0, ANSWERS, (images * per_image,)),
        }
    ids, mask = random_text(32)
    return {"images": torch.randn(32, 3, IMAGE_SIZE, IMAGE_SIZE), "ids": ids, "mask": mask}


BENCHES = {
    # name: (loss fn, images per step, questions per step, VQA answers in the model, grid encoder)
    "pretrain": (pretrain_loss, 32, None, 0, False),
    "vqa": (vqa_loss, 16, 128, ANSWERS, False),
    "vqa-spatial": (spatial_vqa_loss, 16, 256, ANSWERS, True),
    "caption": (caption_loss, 32, None, 0, False),
}


@torch.no_grad()
def clip_per_parameter(params, max_norm: float):
    """burn's GradientClipping::Norm: each parameter's gradient clipped to L2 norm max_norm."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch._foreach_norm(grads)
    scales = [(max_norm / (n + 1e-6)).clamp(max=1.0) for n in norms]
    torch._foreach_mul_(grads, scales)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def busy_seconds():
    """(CPU seconds all processes spent busy, CPU seconds this process spent), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    me = resource.getrusage(resource.RUSAGE_SELF)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), me.ru_utime + me.ru_stime


def run_one(bench: str, threads: int, warmup: int, steps: int, clip: bool, device: str = "cpu"):
    rss_before = peak_rss_mib()  # torch itself (the PyPI wheel maps its CUDA libraries too)
    # Every parameter, batch and tensor made inside the losses then lives on the GPU;
    # loss.item() in each step waits for the GPU, so the step times are complete.
    torch.set_default_device(device)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    loss_fn, images, questions, answers, grid = BENCHES[bench]
    model = EdgeVlm(VOCAB, answers, grid).train()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=ADAM_EPS, weight_decay=WEIGHT_DECAY)
    batches = [make_batch(bench) for _ in range(4)]

    def step(i):
        loss = loss_fn(model, batches[i % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            clip_per_parameter(params, GRAD_CLIP)
        opt.step()
        return loss.item()

    for i in range(warmup):
        step(i)
    times = []
    busy0, wall0 = busy_seconds(), time.perf_counter()
    for i in range(steps):
        t0 = time.perf_counter()
        loss = step(i)
        times.append(time.perf_counter() - t0)
    total = sum(times)
    busy1, wall = busy_seconds(), time.perf_counter() - wall0
    # Cores kept busy by other processes while timing: should be ~0 for a trustworthy figure.
    others = ((busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / wall if busy0 and busy1 else None
    return {
        "bench": bench,
        "threads": threads,
        "steps": steps,
        "params": sum(p.numel() for p in params),
        "ms_per_step_mean": 1e3 * total / steps,
        "ms_per_step_median": 1e3 * sorted(times)[steps // 2],
        "images_per_s": images * steps / total,
        "questions_per_s": questions * steps / total if questions else None,
        "final_loss": loss,
        "other_cpu_cores": others,
        "rss_after_import_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "device": device,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
    }


def main():
    global USE_SDPA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--bench",
        default="pretrain,vqa,vqa-spatial,caption",
        help="comma list of pretrain,vqa,vqa-spatial,caption",
    )
    ap.add_argument("--threads", default="2,1", help="comma list of intra-op thread counts")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-clip", action="store_true", help="skip per-parameter grad-norm clipping (1.0)")
    ap.add_argument("--sdpa", action="store_true", help="use F.scaled_dot_product_attention (not burn's math)")
    ap.add_argument("--in-process", action="store_true", help="run all in this process (RSS is then cumulative)")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cuda (for comparing with EDGEVLM_BACKEND=cuda)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    USE_SDPA = args.sdpa
    benches = [b for b in args.bench.split(",") if b]
    threads = [int(t) for t in args.threads.split(",") if t]
    for b in benches:
        if b not in BENCHES:
            ap.error(f"unknown bench {b!r}")

    load = os.getloadavg()[0]
    if not args.child and load > 0.5:
        print(f"warning: load average {load:.2f}: another process is using the CPU; multi-thread "
              "timings are then unreliable (OpenMP threads wait on each other)", file=sys.stderr)

    if args.child or args.in_process:
        if args.child:  # one (bench, threads) per child: fix the inter-op pool too
            torch.set_num_interop_threads(1)
        results = [run_one(b, t, args.warmup, args.steps, not args.no_clip, args.device)
                   for t in threads for b in benches]
        if args.child:
            print("RESULT " + json.dumps(results[0]))
            return
    else:
        results = []
        for t in threads:
            for b in benches:
                cmd = [sys.executable, __file__, "--child", "--bench", b, "--threads", str(t),
                       "--warmup", str(args.warmup), "--steps", str(args.steps), "--device", args.device]
                cmd += ["--no-clip"] * args.no_clip + ["--sdpa"] * args.sdpa
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                line = next(l for l in out.splitlines() if l.startswith("RESULT "))
                results.append(json.loads(line[len("RESULT "):]))
                print(f"  done {b} threads={t}", file=sys.stderr)

    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "grad_clip_per_param": None if args.no_clip else GRAD_CLIP,
        "attention": "sdpa" if args.sdpa else "explicit (as burn)",
        "warmup": args.warmup,
        "steps": args.steps,
        "cpus": os.cpu_count(),
        "load_average_at_start": load,
    }
    print(f"torch {info['torch']}  clip={info['grad_clip_per_param']}  attention={info['attention']}  "
          f"warmup={args.warmup} steps={args.steps}")
    print(f"{'bench':<9} {'thr':>3} {'params':>9} {'ms/step':>8} {'median':>8} {'img/s':>8} {'q/s':>8} "
          f"{'RSS MiB':>8} {'(import)':>8} {'others':>6}")
    for r in results:
        q = f"{r['questions_per_s']:8.1f}" if r["questions_per_s"] else f"{'-':>8}"
        print(f"{r['bench']:<9} {r['threads']:>3} {r['params']:>9} {r['ms_per_step_mean']:8.1f} "
              f"{r['ms_per_step_median']:8.1f} {r['images_per_s']:8.1f} {q} {r['peak_rss_mib']:8.0f} "
              f"{r['rss_after_import_mib']:8.0f} {r['other_cpu_cores'] or 0:6.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
