"""Checks that a model folder written by `agentr train --lora-rank R` works with Hugging Face
tools unchanged (issue 24). Run by bench/hf_interop.sh, which prepares WORK:

  WORK/model           `agentr train` output (config.json, model.safetensors, tokenizer files,
                       adapter/ with the PEFT adapter)
  WORK/gold.jsonl      agentr samples (expert episodes)
  WORK/revise.jsonl    agentr samples (revisions, with `loss: false` assistant turns)
  WORK/rendered.jsonl  agentr's token ids and loss masks of those samples, in the same order
                       (the render_samples example)

Checks, one PASS/FAIL line each; the exit status is 1 if any fails:
  a. transformers loads the tokenizer and model (no missing/unexpected weights), and the
     `text-generation` pipeline, greedy, answers chat prompts as `agentr generate` does,
     stopping at the end of turn;
  b. PEFT loads the adapter on its base (named in adapter_config.json), and the merged
     weights equal agentr's merged model.safetensors;
  c. TRL's SFTTrainer with `assistant_only_loss=True` tokenizes the samples into the same ids
     and loss masks agentr trains on, and trains 2 steps.

Usage: python bench/hf_interop.py WORK --agentr PATH/TO/agentr [--checks abc]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import datasets
import peft
import torch
import transformers
import trl
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

PROMPTS = [
    "Goal: craft stick.",
    "Crafting commands:\ncraft 4 oak planks using 1 oak log\ncraft 4 stick using 2 planks\n\n"
    "Goal: craft stick.",
    "What is the capital of France?",
    "Name three primary colors.",
]
MAX_NEW_TOKENS = 32
WEIGHT_TOLERANCE = 1e-5

results = []
summary = {}


def report(name, ok, detail):
    results.append((name, ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_generation(model_dir, agentr):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    expected = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    found = {k: getattr(tokenizer, k) for k in expected}
    report(
        "a1 AutoTokenizer",
        found == expected and bool(tokenizer.chat_template),
        f"{type(tokenizer).__name__}, {found}, chat template "
        f"{'present' if tokenizer.chat_template else 'MISSING'}",
    )
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, output_loading_info=True
    )
    model.eval()
    problems = {k: sorted(v) for k, v in info.items() if v}
    report(
        "a2 AutoModelForCausalLM",
        not problems,
        f"{type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters, "
        + (f"loading problems {problems}" if problems else "no missing/unexpected/mismatched weights"),
    )

    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    stop_ids = set(model.generation_config.eos_token_id or [])
    text_matches = id_matches = ended = overran = 0
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        out = generator(
            messages, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, return_full_text=False
        )
        hf_text = out[0]["generated_text"]
        # The same greedy generation through generate(), for the token ids.
        prompt_ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            generated = model.generate(
                **prompt_ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False
            )
        new_ids = generated[0, prompt_ids["input_ids"].shape[1]:].tolist()
        ours = subprocess.run(
            [agentr, "generate", "--model", model_dir, "--prompt", prompt,
             "--max-tokens", str(MAX_NEW_TOKENS)],
            check=True, capture_output=True, text=True,
        ).stdout
        ours = ours[:-1] if ours.endswith("\n") else ours
        # agentr prints the decoded text; its ids are those text's tokens plus the stop token.
        our_ids = tokenizer.encode(ours, add_special_tokens=False)
        hf_content = [t for t in new_ids if t not in stop_ids]
        stopped = bool(new_ids) and new_ids[-1] in stop_ids
        past_end = any(t in stop_ids for t in new_ids[:-1])
        text_matches += hf_text == ours
        id_matches += our_ids == hf_content
        ended += stopped and new_ids[-1] == end_of_turn
        overran += past_end
        print(
            f"  prompt {prompt!r}: {len(new_ids)} new tokens, "
            f"{'ended with <|im_end|>' if stopped else 'hit max_new_tokens'}, "
            f"{'same text' if hf_text == ours else 'DIFFERENT text'}\n"
            f"    transformers: {hf_text!r}\n    agentr:       {ours!r}",
            flush=True,
        )
    n = len(PROMPTS)
    report(
        "a3 pipeline text = agentr generate",
        text_matches == n and id_matches == n,
        f"{text_matches}/{n} texts and {id_matches}/{n} token-id sequences equal "
        f"(greedy, max_new_tokens={MAX_NEW_TOKENS})",
    )
    report(
        "a4 stops at <|im_end|>",
        overran == 0 and ended > 0,
        f"{ended}/{n} answers ended their turn with <|im_end|> within {MAX_NEW_TOKENS} tokens, "
        f"{overran} generated past a stop token",
    )
    summary["generation"] = {
        "prompts": n, "same_text": text_matches, "same_ids": id_matches,
        "ended_with_im_end": ended, "past_stop": overran,
    }


def check_adapter(model_dir):
    adapter_dir = os.path.join(model_dir, "adapter")
    with open(os.path.join(adapter_dir, "adapter_config.json"), encoding="utf-8") as f:
        base = json.load(f)["base_model_name_or_path"]
    merged_peft = peft.AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=torch.float32)
    report("b1 AutoPeftModelForCausalLM", True, f"adapter loaded on base {base}")
    merged = merged_peft.merge_and_unload().state_dict()
    ours = load_file(os.path.join(model_dir, "model.safetensors"))
    # A tied lm_head is the embedding itself; it may be absent from one side.
    only_hf = sorted(k for k in set(merged) - set(ours) if not k.startswith("lm_head."))
    only_ours = sorted(set(ours) - set(merged))
    worst, worst_key, changed = 0.0, None, 0.0
    base_weights = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    for key in sorted(set(merged) & set(ours)):
        diff = (merged[key].float() - ours[key].float()).abs().max().item()
        if diff > worst:
            worst, worst_key = diff, key
        if key in base_weights:
            changed = max(changed, (ours[key].float() - base_weights[key].float()).abs().max().item())
    compared = len(set(merged) & set(ours))
    ok = not only_hf and not only_ours and worst <= WEIGHT_TOLERANCE and changed > 0
    report(
        "b2 merge_and_unload = agentr's merged weights",
        ok,
        f"{compared} tensors compared, max |difference| {worst:.3g}"
        + (f" (in {worst_key})" if worst_key else "")
        + f", tolerance {WEIGHT_TOLERANCE:g}; the adapter moved weights by up to {changed:.3g} "
        f"from the base"
        + (f"; only in PEFT's: {only_hf}" if only_hf else "")
        + (f"; only in agentr's: {only_ours}" if only_ours else ""),
    )
    summary["adapter"] = {
        "tensors": compared, "max_abs_difference": worst, "tolerance": WEIGHT_TOLERANCE,
        "max_abs_lora_update": changed,
    }


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else None


def check_trl(work, model_dir, tokenizer):
    files = [os.path.join(work, "gold.jsonl"), os.path.join(work, "revise.jsonl")]
    rendered = read_jsonl(os.path.join(work, "rendered.jsonl"))
    longest = max(len(r["ids"]) for r in rendered)
    cache = os.path.join(work, "hf-datasets")
    try:
        dataset = datasets.load_dataset("json", data_files=files, split="train", cache_dir=cache)
    except datasets.exceptions.DatasetGenerationError as e:
        # The json loader takes the first file's schema for all: `meta` holds other keys in
        # expert episodes (done) than in revise's samples (kind, leaf, ...), and a struct cast
        # cannot add or drop keys. Declaring `meta` a string keeps each row's meta as JSON text.
        print(
            f"NOTE c0 load_dataset('json', data_files=[gold, revise]) fails: "
            f"{type(e.__cause__ or e).__name__}: {str(e.__cause__ or e).splitlines()[0]} "
            f"(meta differs between the files); loading with features "
            f"{{messages: [{{role, content, loss: bool}}], meta: string}} instead",
            flush=True,
        )
        features = datasets.Features({
            "messages": datasets.List({
                "role": datasets.Value("string"),
                "content": datasets.Value("string"),
                "loss": datasets.Value("bool"),
            }),
            "meta": datasets.Value("string"),
        })
        dataset = datasets.load_dataset(
            "json", data_files=files, split="train", cache_dir=cache, features=features
        )
        summary["dataset_note"] = "meta differs between gold and revise files; loaded with explicit features"
    config = trl.SFTConfig(
        output_dir=os.path.join(work, "trl"),
        assistant_only_loss=True,
        max_length=longest,
        max_steps=2,
        per_device_train_batch_size=1,
        learning_rate=1e-5,
        report_to=[],
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    started = time.time()
    trainer = trl.SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    prepared = trainer.train_dataset
    print(
        f"  TRL prepared {len(prepared)} of {len(dataset)} rows in {time.time() - started:.0f}s, "
        f"columns {prepared.column_names}, max_length {longest}",
        flush=True,
    )
    # TRL 1.16 folds `assistant_masks` into `labels` (-100 outside the mask) and drops it.
    same, shown = 0, 0
    if len(prepared) == len(rendered):
        for i, (row, ref) in enumerate(zip(prepared, rendered)):
            ids = row["input_ids"]
            if "assistant_masks" in row:
                mask = list(row["assistant_masks"])
            else:
                mask = [int(label != -100) for label in row["labels"]]
                if any(l not in (-100, t) for l, t in zip(row["labels"], ids)):
                    mask = None
            if ids == ref["ids"] and mask == ref["mask"]:
                same += 1
            elif shown < 5:
                shown += 1
                where = first_difference(ids, ref["ids"])
                what = "ids"
                if where is None:
                    what = "mask"
                    where = first_difference(mask or [], ref["mask"])
                lo = max(0, (where or 0) - 3)
                print(
                    f"  row {i}: {what} differ first at position {where} "
                    f"(TRL {len(ids)} tokens, agentr {len(ref['ids'])}); "
                    f"TRL ids {ids[lo:lo + 8]} mask {(mask or [])[lo:lo + 8]}, "
                    f"agentr ids {ref['ids'][lo:lo + 8]} mask {ref['mask'][lo:lo + 8]}",
                    flush=True,
                )
    trained_tokens = sum(sum(r["mask"]) for r in rendered)
    report(
        "c1 TRL tokenized dataset = agentr render",
        same == len(rendered) and len(prepared) == len(rendered),
        f"{same}/{len(rendered)} samples with equal input_ids and loss masks "
        f"({len(prepared)} rows kept by TRL; {sum(len(r['ids']) for r in rendered)} tokens, "
        f"{trained_tokens} trained; longest {longest})",
    )
    started = time.time()
    outcome = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    ok = trainer.state.global_step == 2 and all(l == l and l < 100 for l in losses)
    report(
        "c2 SFTTrainer trains",
        ok,
        f"{trainer.state.global_step} steps in {time.time() - started:.0f}s, losses {losses}, "
        f"train_loss {outcome.training_loss:.4f}",
    )
    summary["trl"] = {
        "samples": len(rendered), "rows_kept": len(prepared), "same_ids_and_mask": same,
        "tokens": sum(len(r["ids"]) for r in rendered), "trained_tokens": trained_tokens,
        "max_length": longest, "steps": trainer.state.global_step, "losses": losses,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work")
    parser.add_argument("--agentr", required=True, help="the agentr binary")
    parser.add_argument("--checks", default="abc", help="which checks to run (default abc)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model_dir = os.path.abspath(os.path.join(args.work, "model"))
    checks = {
        "a": lambda: check_generation(model_dir, args.agentr),
        "b": lambda: check_adapter(model_dir),
        "c": lambda: check_trl(args.work, model_dir, AutoTokenizer.from_pretrained(model_dir)),
    }
    for name, check in checks.items():
        if name not in args.checks:
            continue
        try:
            check()
        except Exception as e:  # a crash fails its check; the others still run
            report(f"{name} (crashed)", False, f"{type(e).__name__}: {e}")

    versions = {
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "peft": peft.__version__,
        "trl": trl.__version__, "datasets": datasets.__version__,
    }
    passed = sum(ok for _, ok in results)
    print("\n=== summary (for BENCHMARKS.md) ===")
    print("Hugging Face interop (bench/hf_interop.sh): " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    g, a, t = summary.get("generation"), summary.get("adapter"), summary.get("trl")
    if g:
        print(f"- pipeline('text-generation'), greedy, {MAX_NEW_TOKENS} new tokens: {g['same_text']}/"
              f"{g['prompts']} answers equal to `agentr generate` (text), {g['same_ids']}/{g['prompts']} "
              f"(token ids); {g['ended_with_im_end']} ended with <|im_end|>, {g['past_stop']} ran past it")
    if a:
        print(f"- PEFT AutoPeftModelForCausalLM + merge_and_unload: {a['tensors']} tensors, max |difference| "
              f"from agentr's merged weights {a['max_abs_difference']:.3g} (tolerance {a['tolerance']:g}; "
              f"LoRA update up to {a['max_abs_lora_update']:.3g})")
    if summary.get("dataset_note"):
        print("- datasets: load_dataset('json', data_files=[gold, revise]) needs explicit features "
              "(meta holds other keys in each file); messages load unchanged")
    if t:
        print(f"- TRL SFTTrainer(assistant_only_loss=True, max_length={t['max_length']}): "
              f"{t['same_ids_and_mask']}/{t['samples']} samples with agentr's ids and loss mask "
              f"({t['tokens']} tokens, {t['trained_tokens']} trained), {t['rows_kept']} rows kept; "
              f"{t['steps']} steps, losses {[round(l, 4) for l in t['losses']]}")
    print(f"- checks: {passed}/{len(results)} passed")
    print(json.dumps({"versions": versions, **summary, "passed": passed, "checks": len(results)}))
    sys.exit(0 if passed == len(results) and results else 1)


if __name__ == "__main__":
    main()
