"""PyTorch counterpart of agentr-train's tiny models, for BENCHMARKS.md.

Two jobs, both on the CPU:

* ``check DIR``: loads ``DIR/config.json`` and ``DIR/model.safetensors`` written by
  ``cargo run --release -p agentr-train --example torch_parity`` and checks that this module
  computes the same masked loss and logits as agentr for the token ids and mask stored in
  ``DIR/parity.json`` (so both sides time the same architecture), then that one AdamW step with
  the same hyper-parameters moves the loss the same way.
* ``time``: times one training step (forward, masked loss, backward, global-norm clipping,
  AdamW) and generation (one sample, and four samples sharing one prefill), at the shapes
  agentr's ``cargo bench -p agentr-train --bench train`` uses, and prints JSON.

Written for this project; the architecture follows Hugging Face's Llama conventions
(half-split rotary layout, RMSNorm, SwiGLU, grouped-query attention, tied embeddings).
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


class Llama(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg["num_key_value_heads"]
        self.head_dim = hidden // self.heads
        kv_width = self.kv_heads * self.head_dim
        self.embed = torch.nn.Embedding(cfg["vocab_size"], hidden)
        self.layers = torch.nn.ModuleList()
        for _ in range(cfg["num_hidden_layers"]):
            layer = torch.nn.Module()
            layer.ln1 = torch.nn.Parameter(torch.ones(hidden))
            layer.q = torch.nn.Linear(hidden, hidden, bias=False)
            layer.k = torch.nn.Linear(hidden, kv_width, bias=False)
            layer.v = torch.nn.Linear(hidden, kv_width, bias=False)
            layer.o = torch.nn.Linear(hidden, hidden, bias=False)
            layer.ln2 = torch.nn.Parameter(torch.ones(hidden))
            layer.gate = torch.nn.Linear(hidden, cfg["intermediate_size"], bias=False)
            layer.up = torch.nn.Linear(hidden, cfg["intermediate_size"], bias=False)
            layer.down = torch.nn.Linear(cfg["intermediate_size"], hidden, bias=False)
            self.layers.append(layer)
        self.norm = torch.nn.Parameter(torch.ones(hidden))
        if not cfg["tie_word_embeddings"]:
            self.lm_head = torch.nn.Linear(hidden, cfg["vocab_size"], bias=False)
        half = self.head_dim // 2
        inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(half, dtype=torch.float64) * 2 / self.head_dim)
        angles = torch.arange(cfg["max_position_embeddings"], dtype=torch.float64)[:, None] * inv_freq
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def load_hf(self, tensors):
        """Copies Hugging Face-named tensors into this module (names as agentr writes them)."""
        own = {"model.embed_tokens.weight": self.embed.weight, "model.norm.weight": self.norm}
        if not self.cfg["tie_word_embeddings"]:
            own["lm_head.weight"] = self.lm_head.weight
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}."
            own[p + "input_layernorm.weight"] = layer.ln1
            own[p + "post_attention_layernorm.weight"] = layer.ln2
            for short, module in [("q", layer.q), ("k", layer.k), ("v", layer.v), ("o", layer.o)]:
                own[p + f"self_attn.{short}_proj.weight"] = module.weight
            for short, module in [("gate", layer.gate), ("up", layer.up), ("down", layer.down)]:
                own[p + f"mlp.{short}_proj.weight"] = module.weight
        missing = sorted(set(own) - set(tensors))
        extra = sorted(set(tensors) - set(own))
        if missing or extra:
            raise SystemExit(f"tensor names differ: missing {missing}, unexpected {extra}")
        with torch.no_grad():
            for name, param in own.items():
                param.copy_(tensors[name])

    def rms(self, x, weight):
        eps = self.cfg["rms_norm_eps"]
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    def rotate(self, x, start):
        seq = x.shape[2]
        cos = self.cos[start : start + seq]
        sin = self.sin[start : start + seq]
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def forward(self, ids, cache=None):
        batch, seq = ids.shape
        start = 0 if cache is None or not cache else cache[0][0].shape[2]
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            h = self.rms(x, layer.ln1)
            q = layer.q(h).view(batch, seq, self.heads, self.head_dim).transpose(1, 2)
            k = layer.k(h).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
            v = layer.v(h).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
            q, k = self.rotate(q, start), self.rotate(k, start)
            if cache is not None:
                if len(cache) > i:
                    k = torch.cat([cache[i][0], k], 2)
                    v = torch.cat([cache[i][1], v], 2)
                    cache[i] = (k, v)
                else:
                    cache.append((k, v))
            # The fused kernel PyTorch users would reach for; GQA through enable_gqa.
            if seq > 1 and k.shape[2] != seq:
                raise ValueError("prefill after a cached prefix is not needed here")
            a = F.scaled_dot_product_attention(q, k, v, is_causal=seq > 1, enable_gqa=True)
            x = x + layer.o(a.transpose(1, 2).reshape(batch, seq, -1))
            h = self.rms(x, layer.ln2)
            x = x + layer.down(F.silu(layer.gate(h)) * layer.up(h))
        x = self.rms(x, self.norm)
        head = self.embed.weight if self.cfg["tie_word_embeddings"] else self.lm_head.weight
        return x @ head.t()


def masked_loss(logits, targets, mask):
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return (nll * mask.flatten()).sum() / mask.sum().clamp(min=1)


def optimizer(model, lr):
    # agentr's AdamW defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def train_step(model, opt, ids, mask):
    logits = model(ids)
    loss = masked_loss(logits, ids, mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def check(directory):
    cfg = json.load(open(f"{directory}/config.json"))
    parity = json.load(open(f"{directory}/parity.json"))
    model = Llama(cfg)
    model.load_hf(load_file(f"{directory}/model.safetensors"))
    ids = torch.tensor(parity["ids"])
    targets = torch.tensor(parity["targets"])
    mask = torch.tensor(parity["mask"], dtype=torch.float32)
    with torch.no_grad():
        logits = model(ids)
    expected = torch.tensor(parity["logits_first_row"])
    logit_diff = (logits[0, :, :8] - expected).abs().max().item()
    loss = masked_loss(logits, targets, mask).item()
    opt = optimizer(model, parity["lr"])
    logits = model(ids)
    step_loss = masked_loss(logits, targets, mask)
    opt.zero_grad()
    step_loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), parity["clip"])
    opt.step()
    with torch.no_grad():
        after = masked_loss(model(ids), targets, mask).item()
    report = {
        "max_logit_difference": logit_diff,
        "loss": {"torch": loss, "agentr": parity["loss"]},
        "loss_after_one_step": {"torch": after, "agentr": parity["loss_after_step"]},
    }
    print(json.dumps(report, indent=2))
    ok = (
        logit_diff < 1e-3
        and abs(loss - parity["loss"]) < 1e-4
        and abs(after - parity["loss_after_step"]) < 1e-3
    )
    if not ok:
        raise SystemExit("agentr and PyTorch disagree: the timings would not compare the same model")
    print("parity: same logits, loss and AdamW step")


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(preset_dir, repeats):
    torch.manual_seed(0)
    cfg = json.load(open(f"{preset_dir}/config.json"))
    model = Llama(cfg)
    model.load_hf(load_file(f"{preset_dir}/model.safetensors"))
    gen = torch.Generator().manual_seed(0)
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "train": [], "generate": []}
    opt = optimizer(model, 1e-4)
    for batch, seq in [(1, 128), (4, 256), (8, 512)]:
        ids = torch.randint(3, cfg["vocab_size"], (batch, seq), generator=gen)
        mask = torch.ones(batch, seq)
        seconds = median_time(lambda: train_step(model, opt, ids, mask), repeats)
        results["train"].append({"batch": batch, "seq": seq, "seconds": seconds, "tokens_per_s": batch * seq / seconds})
    prompt = torch.randint(3, cfg["vocab_size"], (1, 512), generator=gen)
    new_tokens = 64
    for n in [1, 4]:

        @torch.no_grad()
        def run():
            cache = []
            logits = model(prompt, cache)
            cache = [(k.expand(n, -1, -1, -1).contiguous(), v.expand(n, -1, -1, -1).contiguous()) for k, v in cache]
            nxt = torch.multinomial(F.softmax(logits[:, -1], -1).expand(n, -1), 1, generator=gen)
            for _ in range(new_tokens - 1):
                logits = model(nxt, cache)
                nxt = torch.multinomial(F.softmax(logits[:, -1], -1), 1, generator=gen)

        seconds = median_time(run, repeats)
        results["generate"].append(
            {"samples": n, "prompt": 512, "new_tokens": new_tokens, "seconds": seconds,
             "decoded_tokens_per_s_including_prefill": n * new_tokens / seconds}
        )
    print(json.dumps(results, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check")
    c.add_argument("dir")
    t = sub.add_parser("time")
    t.add_argument("dir", help="a model folder written by the torch_parity example (tiny-s)")
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = parser.parse_args()
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    if args.command == "check":
        check(args.dir)
    else:
        timing(args.dir, args.repeats)


if __name__ == "__main__":
    main()
