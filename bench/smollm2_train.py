"""PyTorch + PEFT counterpart of ``cargo run --release -p agentr-train --example training_step``.

Loads a Hugging Face model folder (a SmolLM2-135M-Instruct checkpoint written by agentr) with
transformers, optionally puts PEFT LoRA adapters on the seven projections (rank r, alpha 2r,
no dropout), and times optimizer steps on ``--batch`` sequences of ``--seq`` random token ids
(loss on every position, AdamW at lr 1e-4, gradients clipped to norm 1), as the agentr example
does. Prints one JSON line: the median step time after a first, untimed step, tokens/s and
the process's peak resident memory.

Written for this project. Usage: python smollm2_train.py MODEL [--lora-rank R] [--batch N]
[--seq N] [--steps N] [--threads N] [--checkpointing]
"""

import argparse
import json
import resource
import statistics
import time

import torch
from transformers import LlamaForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--lora-rank", type=int)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(5)
    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    model.config.use_cache = False
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if args.lora_rank:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=args.lora_rank,
            lora_alpha=2 * args.lora_rank,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        model = get_peft_model(model, lora)
        if args.checkpointing:
            model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(100, vocab - 100, (args.batch, args.seq + 1), generator=generator)
    inputs, targets = ids[:, :-1], ids[:, 1:]
    seconds = []
    for step in range(max(args.steps, 2)):
        started = time.perf_counter()
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step > 0:
            seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    print(
        json.dumps(
            {
                "model": args.model,
                "lora_rank": args.lora_rank,
                "batch": args.batch,
                "seq": args.seq,
                "checkpointing": args.checkpointing,
                "threads": args.threads,
                "torch": torch.__version__,
                "timed_steps": len(seconds),
                "step_seconds": median,
                "tokens_per_second": args.batch * args.seq / median,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
