#!/usr/bin/env python3
"""Load the adapter `cargo bench --bench finetune` trained (ZHIKU_BENCH_FT_OUT) into Python
peft on the same base and compare its logits with zhiku's on the same ids.

  python3 bench/finetune_peft_check.py BASE_DIR ADAPTER_DIR

BASE_DIR: the Hugging Face folder the bench trained on (make_random_qwen2.py output);
ADAPTER_DIR: ZHIKU_BENCH_FT_OUT (adapter_config.json, adapter_model.safetensors,
zhiku_logits.json). Exits 1 when the logits disagree beyond bf16 precision or the argmax
differs anywhere.
"""
import json, sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

base_dir, adapter_dir = sys.argv[1], sys.argv[2]
z = json.load(open(f"{adapter_dir}/zhiku_logits.json"))
ids = torch.tensor([z["ids"]])
ours = torch.tensor(z["logits"])
dev = "cuda" if torch.cuda.is_available() else "cpu"
model = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).to(dev)
peft_model = PeftModel.from_pretrained(model, adapter_dir).eval()
with torch.no_grad():
    theirs = peft_model(input_ids=ids.to(dev)).logits[0].float().cpu()
    merged = peft_model.merge_and_unload()(input_ids=ids.to(dev)).logits[0].float().cpu()
diff = (theirs - ours).abs().max().item()
scale = theirs.abs().max().item()
same_argmax = bool((theirs.argmax(-1) == ours.argmax(-1)).all())
merge_diff = (merged - theirs).abs().max().item()
print(f"RESULT peft vs zhiku logits: max |diff| {diff:.4g} (max |logit| {scale:.4g}), "
      f"argmax equal: {same_argmax}; peft merged vs unmerged {merge_diff:.3g}")
# zhiku trained and evaluated with a bf16 base on CUDA (f32 on the CPU): allow bf16 rounding.
sys.exit(0 if same_argmax and diff <= 0.02 * max(scale, 1.0) else 1)
