//! Tensor names: Hugging Face (safetensors) ↔ llama.cpp (GGUF), from one table read both
//! ways. GGUF loading with LoRA, GGUF export, fine-tuning from a GGUF and merging an adapter
//! into a GGUF all name tensors through here.

/// Per-layer modules: (Hugging Face, under `model.layers.N.`; GGUF, under `blk.N.`).
const LAYER_MODULES: &[(&str, &str)] = &[
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "ffn_norm"),
];

/// Whole-model tensors: (Hugging Face, GGUF).
const MODEL_TENSORS: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// `model.layers.N.<module>.<kind>` → `blk.N.<module>.<kind>`; `None` for any other name.
pub(crate) fn layer_hf_to_gguf(hf: &str) -> Option<String> {
    let (layer, rest) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let (_, gguf) = LAYER_MODULES.iter().find(|(h, _)| *h == module)?;
    Some(format!("blk.{layer}.{gguf}.{kind}"))
}

/// `blk.N.<module>.<kind>` → `model.layers.N.<module>.<kind>`; `None` for any other name.
pub(crate) fn layer_gguf_to_hf(gguf: &str) -> Option<String> {
    let (layer, rest) = gguf.strip_prefix("blk.")?.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let (hf, _) = LAYER_MODULES.iter().find(|(_, g)| *g == module)?;
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Any Hugging Face tensor name a GGUF holds → its GGUF name.
pub(crate) fn hf_to_gguf(hf: &str) -> Option<String> {
    match MODEL_TENSORS.iter().find(|(h, _)| *h == hf) {
        Some((_, g)) => Some((*g).to_string()),
        None => layer_hf_to_gguf(hf),
    }
}

/// Any GGUF tensor name → its Hugging Face name.
pub(crate) fn gguf_to_hf(gguf: &str) -> Option<String> {
    match MODEL_TENSORS.iter().find(|(_, g)| *g == gguf) {
        Some((h, _)) => Some((*h).to_string()),
        None => layer_gguf_to_hf(gguf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        assert_eq!(
            hf_to_gguf("model.layers.3.self_attn.o_proj.weight").as_deref(),
            Some("blk.3.attn_output.weight")
        );
        assert_eq!(
            gguf_to_hf("blk.0.attn_q.bias").as_deref(),
            Some("model.layers.0.self_attn.q_proj.bias")
        );
        assert_eq!(
            hf_to_gguf("lm_head.weight").as_deref(),
            Some("output.weight")
        );
        assert_eq!(layer_hf_to_gguf("lm_head.weight"), None);
        assert_eq!(
            gguf_to_hf("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_to_gguf("model.layers.0.mlp.experts.0.w1.weight"), None);
        assert_eq!(gguf_to_hf("blk.0.unknown.weight"), None);
        // Every entry round-trips.
        for (h, _) in LAYER_MODULES {
            let hf = format!("model.layers.7.{h}.weight");
            assert_eq!(gguf_to_hf(&hf_to_gguf(&hf).unwrap()).as_deref(), Some(&*hf));
        }
        for (h, _) in MODEL_TENSORS {
            assert_eq!(gguf_to_hf(&hf_to_gguf(h).unwrap()).as_deref(), Some(*h));
        }
    }
}
