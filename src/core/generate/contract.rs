//! The contract every [`Generator`] must keep, as one test helper: in-process models run
//! it on SmolLM2 and on tiny random weights; the OpenAI-compatible client runs it against
//! a small server on 127.0.0.1 backed by SmolLM2 on candle (`openai/tests.rs`).
//!
//! Assumes a generator that produces a few tokens of text for a short question before
//! any end-of-sequence (true for real models; the tiny random test models are chosen so).

use std::ops::ControlFlow;

use super::{ChatMessage, FinishReason, GenerateError, GenerationStats, Generator, SamplingParams};

fn run(
    g: &dyn Generator,
    msgs: &[ChatMessage],
    p: &SamplingParams,
) -> (Vec<String>, GenerationStats) {
    let mut pieces = Vec::new();
    let stats = g
        .generate(msgs, p, &mut |t| {
            pieces.push(t.to_string());
            ControlFlow::Continue(())
        })
        .unwrap_or_else(|e| panic!("{}: generate failed: {e}", g.model_id()));
    (pieces, stats)
}

/// How [`Generator::count_prompt_tokens`] relates to the prompt tokens a generation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// The generator tokenises with the model's own tokenizer and template: the count is
    /// the prompt (within 10 %, for templates that render slightly differently when
    /// generating).
    Exact,
    /// The generator cannot see the model's tokenizer (a remote server) and estimates.
    /// Prompts are fitted to the context by this estimate, so undercounting is what
    /// overflows a context: it may undercount by at most 10 %; overcounting only wastes
    /// context, and is bounded loosely (at most twice the tokens, plus 16).
    Estimate,
}

impl Counting {
    /// Why `counted` is not an acceptable count for a prompt of `actual` tokens, if it is
    /// not.
    fn violation(self, counted: usize, actual: usize) -> Option<String> {
        match self {
            Counting::Exact if actual.abs_diff(counted) > counted / 10 + 2 => Some(format!(
                "count_prompt_tokens {counted} is not within 10 % of the generated prompt's \
                 {actual} tokens"
            )),
            Counting::Estimate if counted + actual / 10 < actual => Some(format!(
                "the estimate {counted} undercounts the generated prompt's {actual} tokens \
                 by more than 10 %: prompts fitted by it overflow the context"
            )),
            Counting::Estimate if counted > 2 * actual + 16 => Some(format!(
                "the estimate {counted} is more than twice the generated prompt's {actual} \
                 tokens (+16): it wastes the context"
            )),
            _ => None,
        }
    }
}

fn check_stats(
    g: &dyn Generator,
    counting: Counting,
    msgs: &[ChatMessage],
    p: &SamplingParams,
    s: &GenerationStats,
) {
    let id = g.model_id();
    assert!(
        s.completion_tokens <= p.max_tokens,
        "{id}: {s:?} exceeds max_tokens"
    );
    assert!(
        s.ttft_ms >= 0.0 && s.ttft_ms <= s.total_ms,
        "{id}: ttft > total: {s:?}"
    );
    assert!(s.total_ms > 0.0 && s.tokens_per_s >= 0.0, "{id}: {s:?}");
    let counted = g.count_prompt_tokens(msgs).unwrap();
    assert!(s.prompt_tokens > 0, "{id}: {s:?}");
    if let Some(why) = counting.violation(counted, s.prompt_tokens) {
        panic!("{id}: {why}");
    }
    if s.finish == FinishReason::Length {
        assert_eq!(
            s.completion_tokens, p.max_tokens,
            "{id}: Length before max_tokens"
        );
    }
}

/// Check `g` against the contract, its prompt token counts by the rule `counting`; panics
/// with the broken rule.
pub fn check_generator(g: &dyn Generator, counting: Counting) {
    let id = g.model_id().to_string();
    let msgs = [
        ChatMessage::system("You are a helpful assistant. Answer briefly."),
        ChatMessage::user("What is the capital of France?"),
    ];
    let greedy = SamplingParams {
        max_tokens: 12,
        temperature: 0.0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        ..Default::default()
    };

    // Greedy determinism; pieces are non-empty; stats sane.
    let (pieces, stats) = run(g, &msgs, &greedy);
    let text: String = pieces.concat();
    check_stats(g, counting, &msgs, &greedy, &stats);
    assert!(
        pieces.iter().all(|p| !p.is_empty()),
        "{id}: empty piece streamed"
    );
    assert!(
        pieces.len() <= stats.completion_tokens.max(1),
        "{id}: more pieces than tokens"
    );
    let (again, _) = run(g, &msgs, &greedy);
    assert_eq!(
        again.concat(),
        text,
        "{id}: greedy generation is not deterministic"
    );
    assert!(
        pieces.len() >= 2,
        "{id}: too little text to check stop strings: {pieces:?}"
    );

    // Same seed and parameters, same text (sampling on).
    let sampled = SamplingParams {
        max_tokens: 10,
        temperature: 0.9,
        top_p: 0.95,
        top_k: 40,
        repetition_penalty: 1.1,
        seed: 1234,
        ..Default::default()
    };
    let (a, sa) = run(g, &msgs, &sampled);
    let (b, _) = run(g, &msgs, &sampled);
    assert_eq!(
        a.concat(),
        b.concat(),
        "{id}: same seed gave different text"
    );
    check_stats(g, counting, &msgs, &sampled, &sa);

    // max_tokens: 3 → Length with at most 3 tokens.
    let three = SamplingParams {
        max_tokens: 3,
        ..greedy.clone()
    };
    let (_, s3) = run(g, &msgs, &three);
    assert_eq!(s3.finish, FinishReason::Length, "{id}: {s3:?}");
    assert!(s3.completion_tokens <= 3, "{id}: {s3:?}");

    // A stop string straddling two streamed pieces is withheld, and the text before it
    // is exactly the greedy text up to it.
    let i = pieces.len() / 2;
    let left = pieces[i - 1].chars().last().unwrap();
    let right = pieces[i].chars().next().unwrap();
    let stop = format!("{left}{right}");
    let cut = text.find(&stop).unwrap();
    let with_stop = SamplingParams {
        stop: vec![stop.clone()],
        ..greedy.clone()
    };
    let (sp, ss) = run(g, &msgs, &with_stop);
    let stopped = sp.concat();
    assert!(
        !stopped.contains(&stop),
        "{id}: stop string {stop:?} in output {stopped:?}"
    );
    assert_eq!(
        stopped,
        text[..cut],
        "{id}: text before the stop string {stop:?} differs"
    );
    assert_eq!(ss.finish, FinishReason::Stop, "{id}: {ss:?}");
    check_stats(g, counting, &msgs, &with_stop, &ss);

    // Callback Break → Cancelled, nothing streamed after it.
    let mut calls = 0;
    let sc = g
        .generate(&msgs, &greedy, &mut |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(sc.finish, FinishReason::Cancelled, "{id}: {sc:?}");
    assert_eq!(calls, 1, "{id}: text streamed after Break");
    check_stats(g, counting, &msgs, &greedy, &sc);

    // A prompt longer than the context → ContextOverflow.
    let ctx = g.context_length();
    let long = [ChatMessage::user("lorem ipsum ".repeat(ctx + 10))];
    match g.generate(&long, &greedy, &mut |_| ControlFlow::Continue(())) {
        Err(GenerateError::ContextOverflow {
            context_length,
            prompt_tokens,
            ..
        }) => {
            assert_eq!(context_length, ctx, "{id}");
            assert!(prompt_tokens > ctx, "{id}");
        }
        other => panic!("{id}: expected ContextOverflow for a {ctx}+ token prompt, got {other:?}"),
    }

    // Non-ASCII input streams valid text (pieces are &str: UTF-8 by construction; check
    // they concatenate to the same text on a second run, i.e. nothing is lost or split).
    let zh = [ChatMessage::user("年假怎么计算？请用中文回答。")];
    let (p1, _) = run(g, &zh, &greedy);
    let (p2, _) = run(g, &zh, &greedy);
    assert_eq!(p1.concat(), p2.concat(), "{id}");
    assert!(p1.iter().all(|p| !p.is_empty()), "{id}");
}

#[cfg(test)]
mod tests {
    use super::Counting;

    #[test]
    fn counting_rules() {
        // Exact: within 10 % (+2) either way.
        assert!(Counting::Exact.violation(100, 108).is_none());
        assert!(Counting::Exact.violation(100, 92).is_none());
        assert!(Counting::Exact.violation(100, 120).is_some());
        assert!(Counting::Exact.violation(100, 80).is_some());
        // Estimate: at most 10 % under, at most 2× + 16 over.
        assert!(Counting::Estimate.violation(90, 100).is_none());
        assert!(Counting::Estimate.violation(89, 100).is_some());
        assert!(Counting::Estimate.violation(216, 100).is_none());
        assert!(Counting::Estimate.violation(217, 100).is_some());
        assert!(Counting::Estimate.violation(36, 30).is_none());
    }
}
