//! Choosing the next token ([`Sampler`]) and withholding stop strings ([`StopBuffer`]).

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

use super::SamplingParams;

/// Temperature / top-k / top-p sampling with a repetition penalty, seeded: the same seed,
/// prompt and model give the same tokens. Temperature 0 (or below 1e-5) is greedy.
pub(crate) struct Sampler {
    processor: LogitsProcessor,
    penalty: f32,
    last_n: usize,
}

impl Sampler {
    pub fn new(p: &SamplingParams) -> Self {
        let temperature = f64::from(p.temperature);
        let top_p = f64::from(p.top_p);
        let nucleus = top_p > 0.0 && top_p < 1.0;
        let sampling = if temperature < 1e-5 {
            Sampling::ArgMax
        } else {
            match (p.top_k > 0, nucleus) {
                (true, true) => Sampling::TopKThenTopP {
                    k: p.top_k,
                    p: top_p,
                    temperature,
                },
                (true, false) => Sampling::TopK {
                    k: p.top_k,
                    temperature,
                },
                (false, true) => Sampling::TopP {
                    p: top_p,
                    temperature,
                },
                (false, false) => Sampling::All { temperature },
            }
        };
        Self {
            processor: LogitsProcessor::from_sampling(p.seed, sampling),
            penalty: p.repetition_penalty,
            last_n: p.repeat_last_n,
        }
    }

    /// Pick the next token from 1-D `logits`; `context` is every token so far (prompt and
    /// completion), of which the last `repeat_last_n` are penalised.
    pub fn sample(&mut self, logits: &Tensor, context: &[u32]) -> candle_core::Result<u32> {
        let logits = logits.to_dtype(candle_core::DType::F32)?;
        let logits = if (self.penalty - 1.0).abs() > f32::EPSILON && self.last_n > 0 {
            let start = context.len().saturating_sub(self.last_n);
            candle_transformers::utils::apply_repeat_penalty(
                &logits,
                self.penalty,
                &context[start..],
            )?
        } else {
            logits
        };
        self.processor.sample(&logits)
    }
}

/// What [`StopBuffer::push`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Released {
    /// Text that is certainly not part of a stop string: stream it.
    pub text: String,
    /// A stop string was found: `text` ends right before it; generation ends.
    pub stopped: bool,
}

/// Withholds stop strings from the stream, even when one is split across tokens: the
/// longest tail of the pending text that could still become a stop string is held back
/// until the next piece decides it.
pub(crate) struct StopBuffer {
    stops: Vec<String>,
    pending: String,
}

impl StopBuffer {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    pub fn push(&mut self, piece: &str) -> Released {
        self.pending.push_str(piece);
        if self.stops.is_empty() {
            return Released {
                text: std::mem::take(&mut self.pending),
                stopped: false,
            };
        }
        // Earliest occurrence of any stop string.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let text = self.pending[..at].to_string();
            self.pending.clear();
            return Released {
                text,
                stopped: true,
            };
        }
        // Longest suffix of `pending` that is a proper prefix of some stop string.
        let hold_from = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.pending.len());
        let text = self.pending[..hold_from].to_string();
        self.pending.drain(..hold_from);
        Released {
            text,
            stopped: false,
        }
    }

    /// Generation ended without a stop string: whatever was held back is plain text.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut b = StopBuffer::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let r = b.push(p);
            out.push_str(&r.text);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&b.flush());
        (out, false)
    }

    #[test]
    fn stop_string_split_across_tokens_is_withheld() {
        assert_eq!(
            run(&["</answer>"], &["Paris", "</", "ans", "wer>", "more"]),
            ("Paris".to_string(), true)
        );
        assert_eq!(
            run(&["\n\nQ:"], &["a\n", "\nQ", ":x"]),
            ("a".to_string(), true)
        );
        // A prefix that turns out not to be a stop string is released.
        assert_eq!(
            run(&["</answer>"], &["a </", "b> c"]),
            ("a </b> c".to_string(), false)
        );
        // Held-back text is flushed at the end.
        assert_eq!(
            run(&["STOP"], &["ends with ST"]),
            ("ends with ST".to_string(), false)
        );
        // Earliest of several stop strings wins; multi-byte text is cut on char boundaries.
        assert_eq!(
            run(&["。", "END"], &["年假", "五天。E", "ND"]),
            ("年假五天".to_string(), true)
        );
    }

    #[test]
    fn held_back_text_is_never_a_stop_string_prefix_of_released_text() {
        let stops = vec!["abc".to_string()];
        let mut b = StopBuffer::new(&stops);
        assert_eq!(b.push("xa").text, "x");
        assert_eq!(b.push("b").text, "");
        let r = b.push("c");
        assert_eq!(
            r,
            Released {
                text: String::new(),
                stopped: true
            }
        );
    }

    #[test]
    fn greedy_and_seeded_sampling() {
        let logits = Tensor::new(&[0.1f32, 3.0, 0.2, 2.9], &Device::Cpu).unwrap();
        let greedy = SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.0,
            ..Default::default()
        };
        assert_eq!(Sampler::new(&greedy).sample(&logits, &[]).unwrap(), 1);
        // A strong repetition penalty on token 1 makes token 3 the greedy choice.
        let penalised = SamplingParams {
            repetition_penalty: 2.0,
            ..greedy.clone()
        };
        assert_eq!(Sampler::new(&penalised).sample(&logits, &[1]).unwrap(), 3);
        // Same seed, same draws; top_k = 2 never picks outside the two best.
        let hot = SamplingParams {
            temperature: 5.0,
            top_k: 2,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |p: &SamplingParams| {
            let mut s = Sampler::new(p);
            (0..50)
                .map(|_| s.sample(&logits, &[]).unwrap())
                .collect::<Vec<_>>()
        };
        let a = draw(&hot);
        assert_eq!(a, draw(&hot));
        assert!(a.iter().all(|&t| t == 1 || t == 3), "{a:?}");
        assert!(a.contains(&1) && a.contains(&3), "{a:?}");
    }
}
