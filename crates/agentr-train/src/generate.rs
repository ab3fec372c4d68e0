//! Sampling from the model: one shared prefill for `n` samples, a KV cache, temperature and
//! top-p, stop tokens and stop strings, and the reference's context budget.

use std::sync::Mutex;

use agentr_envs::Message;
use agentr_envs::rng::Rng;
use candle_core::{D, Tensor};
use serde::{Deserialize, Serialize};

use crate::{ChatTokenizer, KvCache, Llama, TrainError};

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Most new tokens per sample.
    pub max_new_tokens: usize,
    /// 0 means greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    pub top_p: f64,
    /// A sample ends when its text contains one of these (the stop string is cut off).
    pub stop: Vec<String>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 256,
            temperature: 1.0,
            top_p: 1.0,
            stop: Vec::new(),
        }
    }
}

/// Picks a token from `logits` (one row) with temperature and top-p.
///
/// Sorting the whole vocabulary (SmolLM2's 49,152 tokens) by probability for every sampled
/// token took a third of the time of sampling four continuations, so without a nucleus to cut
/// (`top_p` of 1 or more) the draw is one pass in vocabulary order, and with one only the most
/// likely tokens are sorted: the first `k` of the descending order (ties by token id), found by partial
/// selection, `k` doubling until they hold `top_p` of the probability.
fn sample_token(logits: &[f32], temperature: f64, top_p: f64, rng: &mut Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32)
    };
    if temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| ((f64::from(l) - f64::from(max)) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    if !(total.is_finite() && total > 0.0) {
        return argmax();
    }
    // A NaN keeps every token, as it always did.
    if top_p >= 1.0 || top_p.is_nan() {
        return draw(weights.iter().copied().enumerate(), total, rng);
    }
    let descending = |a: &u32, b: &u32| {
        weights[*b as usize]
            .total_cmp(&weights[*a as usize])
            .then(a.cmp(b))
    };
    let mut order: Vec<u32> = (0..weights.len() as u32).collect();
    let mut sorted = 0;
    let mut kept = 0.0;
    let cut = loop {
        let k = (sorted * 2).max(64).min(order.len());
        if k < order.len() {
            order[sorted..].select_nth_unstable_by(k - sorted, descending);
        }
        order[sorted..k].sort_unstable_by(descending);
        let reached = order[sorted..k].iter().position(|&i| {
            kept += weights[i as usize] / total;
            kept >= top_p
        });
        match reached {
            Some(at) => break sorted + at + 1,
            None if k == order.len() => break k,
            None => sorted = k,
        }
    };
    let nucleus = &order[..cut];
    let mass: f64 = nucleus.iter().map(|&i| weights[i as usize]).sum();
    draw(
        nucleus.iter().map(|&i| (i as usize, weights[i as usize])),
        mass,
        rng,
    )
}

/// The first token, in the order given, at which the running sum of weights reaches a uniform
/// draw from `[0, mass)`; the last token with weight if rounding leaves the draw unreached.
fn draw(weights: impl Iterator<Item = (usize, f64)>, mass: f64, rng: &mut Rng) -> u32 {
    let mut target = rng.unit_f64() * mass;
    let mut last = None;
    for (index, weight) in weights {
        if weight > 0.0 {
            target -= weight;
            last = Some(index);
            if target <= 0.0 {
                break;
            }
        }
    }
    last.map_or(0, |i| i as u32)
}

/// Drops the oldest response/observation pairs after the first observation until the prompt
/// leaves room for `reserve` new tokens within `budget` (the Agent-R reference's rule). The
/// instruction, `Ok.` and first observation always stay.
pub fn fit_conversation(
    tokenizer: &ChatTokenizer,
    messages: &[Message],
    budget: usize,
    reserve: usize,
) -> Result<Vec<Message>, TrainError> {
    let mut kept = messages.to_vec();
    loop {
        let length = tokenizer.render_prompt(&kept)?.len();
        if length + reserve <= budget || kept.len() < 5 {
            return Ok(kept);
        }
        kept.drain(3..5);
    }
}

/// Keys and values of recent prompts, so a prompt that extends one of them (the next round of
/// an episode, a sibling in a search tree, anything after the instruction) only prefills its
/// new tokens. Holds the `capacity` most recently used prompts; safe to share between threads.
pub struct PrefixCache {
    capacity: usize,
    /// Least recently used first.
    entries: Mutex<Vec<(Vec<u32>, KvCache)>>,
}

impl PrefixCache {
    /// An empty cache of `capacity` prompts (0 disables it).
    pub fn new(capacity: usize) -> Self {
        PrefixCache {
            capacity,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The cached state of the longest prefix `prompt` shares with a cached prompt, cut so at
    /// least one token of `prompt` is left to run (its logits start the generation).
    fn lookup(&self, prompt: &[u32]) -> Result<Option<(usize, KvCache)>, TrainError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let best = entries
            .iter()
            .enumerate()
            .map(|(index, (tokens, _))| {
                let shared = tokens
                    .iter()
                    .zip(prompt)
                    .take_while(|(a, b)| a == b)
                    .count();
                (index, shared.min(prompt.len().saturating_sub(1)))
            })
            .max_by_key(|&(_, shared)| shared);
        let Some((index, shared)) = best.filter(|&(_, shared)| shared > 0) else {
            return Ok(None);
        };
        let entry = entries.remove(index);
        let state = entry.1.truncate(shared)?;
        entries.push(entry);
        Ok(Some((shared, state)))
    }

    fn store(&self, prompt: &[u32], state: &KvCache) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(tokens, _)| tokens.as_slice() != prompt);
        if entries.len() >= self.capacity {
            entries.remove(0);
        }
        entries.push((prompt.to_vec(), state.clone()));
    }
}

/// What one generation call samples: `n` continuations of `prompt` (token ids) with
/// `config`'s settings. Sample `i` draws from the generator seeded by (`seed`, `i`), so each is
/// reproducible alone and equals its own batch-1 decode.
#[derive(Debug, Clone, Copy)]
pub struct GenerationRequest<'a> {
    /// The prompt's token ids (a rendered conversation, [`ChatTokenizer::render_prompt`]).
    pub prompt: &'a [u32],
    /// How many continuations.
    pub n: usize,
    /// Sampling settings.
    pub config: &'a GenerationConfig,
    /// Seed of the samples' generators.
    pub seed: u64,
}

/// Generates the `request`ed continuations with one shared prefill and batched decoding.
pub fn generate(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    request: &GenerationRequest<'_>,
) -> Result<Vec<String>, TrainError> {
    generate_with_cache(model, tokenizer, request, &PrefixCache::new(0))
}

/// [`generate`], prefilling only what `prefixes` does not already hold, and remembering this
/// prompt's state there.
pub fn generate_with_cache(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    request: &GenerationRequest<'_>,
    prefixes: &PrefixCache,
) -> Result<Vec<String>, TrainError> {
    let samples = generate_detailed(model, tokenizer, request, prefixes)?;
    Ok(samples.into_iter().map(|sample| sample.text).collect())
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model wrote an end token, or the text reached a stop string (cut off).
    Stop,
    /// The sample reached `max_new_tokens` or the model's context length.
    Length,
}

impl FinishReason {
    /// `stop` or `length`, as OpenAI-compatible servers report it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One sample of [`generate_detailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The text (without the end token or the stop string).
    pub text: String,
    /// Tokens sampled (the end token not counted; a stop string's tokens counted).
    pub tokens: usize,
    /// Why the sample ended.
    pub finish: FinishReason,
}

/// [`generate_with_cache`], also reporting each sample's token count and why it ended (what a
/// server needs for `usage` and `finish_reason`).
pub fn generate_detailed(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    request: &GenerationRequest<'_>,
    prefixes: &PrefixCache,
) -> Result<Vec<Generated>, TrainError> {
    let GenerationRequest {
        prompt,
        n,
        config,
        seed,
    } = *request;
    if n == 0 {
        return Ok(Vec::new());
    }
    if prompt.is_empty() {
        return Err(TrainError::Config(
            "generation needs a non-empty prompt".into(),
        ));
    }
    let limit = model.config().max_position_embeddings;
    if prompt.len() >= limit {
        return Err(TrainError::Config(format!(
            "the prompt has {} tokens; the model takes at most {limit}",
            prompt.len()
        )));
    }
    let max_new = config.max_new_tokens.min(limit - prompt.len());
    let (last, cache) = prefill(model, prompt, prefixes)?;
    let rngs: Vec<Rng> = (0..n as u64).map(|i| Rng::from_parts(&[seed, i])).collect();
    decode(model, tokenizer, last, &cache, rngs, max_new, config)
}

/// Samples one continuation per generator in `rngs`, all from the state `cache` whose next
/// token has the logits `last`, decoding them as one batch (finished samples leave it).
fn decode(
    model: &Llama,
    tokenizer: &ChatTokenizer,
    last: Vec<f32>,
    cache: &KvCache,
    mut rngs: Vec<Rng>,
    max_new: usize,
    config: &GenerationConfig,
) -> Result<Vec<Generated>, TrainError> {
    let n = rngs.len();
    let device = model.device();
    let mut rows: Vec<Vec<f32>> = vec![last; n];
    let mut cache = cache.repeat_batch(n)?;
    let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut texts: Vec<Option<String>> = vec![None; n];
    // Rows of the batch still generating, by sample index.
    let mut active: Vec<usize> = (0..n).collect();
    let stop_tokens = [tokenizer.turn_end(), tokenizer.end_of_text()];
    for _ in 0..max_new {
        let mut next = Vec::with_capacity(active.len());
        let mut still: Vec<usize> = Vec::with_capacity(active.len());
        let mut keep_rows: Vec<u32> = Vec::with_capacity(active.len());
        for (row, &sample) in active.iter().enumerate() {
            let token = sample_token(
                &rows[row],
                config.temperature,
                config.top_p,
                &mut rngs[sample],
            );
            if stop_tokens.contains(&token) {
                texts[sample] = Some(tokenizer.decode(&outputs[sample])?);
                continue;
            }
            outputs[sample].push(token);
            if !config.stop.is_empty() {
                let text = tokenizer.decode(&outputs[sample])?;
                if let Some(at) = config
                    .stop
                    .iter()
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    texts[sample] = Some(text[..at].to_owned());
                    continue;
                }
            }
            next.push(token);
            still.push(sample);
            keep_rows.push(row as u32);
        }
        if still.is_empty() {
            break;
        }
        if still.len() != active.len() {
            cache = cache.select_batch(&keep_rows)?;
        }
        active = still;
        let input = Tensor::from_vec(next, (active.len(), 1), device)?;
        rows = model
            .forward_last(&input, Some(&mut cache))?
            .to_vec2::<f32>()?;
    }
    (0..n)
        .map(|sample| {
            let (text, finish) = match texts[sample].take() {
                Some(text) => (text, FinishReason::Stop),
                None => (tokenizer.decode(&outputs[sample])?, FinishReason::Length),
            };
            Ok(Generated {
                text,
                tokens: outputs[sample].len(),
                finish,
            })
        })
        .collect()
}

/// Runs `prompt` through the model, prefilling only what `prefixes` does not already hold and
/// remembering its state there: the last position's logits and the cache after the prompt.
fn prefill(
    model: &Llama,
    prompt: &[u32],
    prefixes: &PrefixCache,
) -> Result<(Vec<f32>, KvCache), TrainError> {
    let (reused, mut cache) = prefixes.lookup(prompt)?.unwrap_or_default();
    let fresh = &prompt[reused..];
    let input = Tensor::from_vec(fresh.to_vec(), (1, fresh.len()), model.device())?;
    // Only the last position's logits are needed.
    let last = model.forward_last(&input, Some(&mut cache))?;
    prefixes.store(prompt, &cache);
    Ok((last.squeeze(0)?.to_vec1::<f32>()?, cache))
}

/// The logits of the token after `prompt` (non-empty, shorter than the model's context), with
/// [`PrefixCache`] reuse: what a scored judge reads its verdict from.
pub fn next_token_logits(
    model: &Llama,
    prompt: &[u32],
    prefixes: &PrefixCache,
) -> Result<Vec<f32>, TrainError> {
    let limit = model.config().max_position_embeddings;
    if prompt.is_empty() || prompt.len() > limit {
        return Err(TrainError::Config(format!(
            "a prompt of {} tokens; the model takes 1 to {limit}",
            prompt.len()
        )));
    }
    Ok(prefill(model, prompt, prefixes)?.0)
}

/// Mean log-probability per token the model gives `continuation` after `prompt` (for tests and
/// diagnostics).
pub fn continuation_logprob(
    model: &Llama,
    prompt: &[u32],
    continuation: &[u32],
) -> Result<f64, TrainError> {
    let all: Vec<u32> = prompt.iter().chain(continuation).copied().collect();
    let input = Tensor::from_vec(all.clone(), (1, all.len()), model.device())?;
    let logits = model.forward(&input, None)?.squeeze(0)?;
    let log_probs = {
        let max = logits.max_keepdim(D::Minus1)?;
        let shifted = logits.broadcast_sub(&max)?;
        let norm = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        shifted.broadcast_sub(&norm)?.to_vec2::<f32>()?
    };
    let total: f64 = continuation
        .iter()
        .enumerate()
        .map(|(k, &token)| f64::from(log_probs[prompt.len() - 1 + k][token as usize]))
        .sum();
    Ok(total / continuation.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};

    #[test]
    fn greedy_takes_the_argmax_and_top_p_restricts_the_choice() {
        let mut rng = Rng::new(1);
        assert_eq!(sample_token(&[0.1, 2.0, -1.0], 0.0, 1.0, &mut rng), 1);
        // With top-p 0.5 only the dominant token can come out.
        for _ in 0..100 {
            assert_eq!(sample_token(&[5.0, 0.0, 0.0], 1.0, 0.5, &mut rng), 0);
        }
        // At temperature 1 over equal logits every token shows up.
        let mut seen = [false; 3];
        for _ in 0..200 {
            seen[sample_token(&[1.0, 1.0, 1.0], 1.0, 1.0, &mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    /// The sampler as it was before partial selection, with the whole vocabulary sorted: the
    /// reference for the nucleus.
    fn fully_sorted_sample(logits: &[f32], temperature: f64, top_p: f64, rng: &mut Rng) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i, ((f64::from(l) - f64::from(max)) / temperature).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut kept = 0.0;
        let mut cut = probs.len();
        for (index, (_, p)) in probs.iter().enumerate() {
            kept += p / total;
            if kept >= top_p {
                cut = index + 1;
                break;
            }
        }
        let nucleus = &probs[..cut];
        let mass: f64 = nucleus.iter().map(|p| p.1).sum();
        let mut target = rng.unit_f64() * mass;
        for &(index, p) in nucleus {
            target -= p;
            if target <= 0.0 {
                return index as u32;
            }
        }
        nucleus.last().map_or(0, |&(i, _)| i as u32)
    }

    /// Without a nucleus the draw follows the probabilities (a pass in vocabulary order).
    #[test]
    fn sampling_without_a_nucleus_follows_the_probabilities() {
        let logits = [0.0, 2f32.ln(), 3f32.ln(), f32::NEG_INFINITY, 4f32.ln()];
        let mut counts = [0usize; 5];
        let mut rng = Rng::new(7);
        let draws = 40_000;
        for _ in 0..draws {
            counts[sample_token(&logits, 1.0, 1.0, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[3], 0);
        for (token, weight) in [(0, 1.0), (1, 2.0), (2, 3.0), (4, 4.0)] {
            let share = counts[token] as f64 / draws as f64;
            assert!((share - weight / 10.0).abs() < 0.01, "{token}: {counts:?}");
        }
    }

    #[test]
    fn reused_prefixes_give_the_same_generations() {
        let config = crate::ModelConfig {
            vocab_size: 300,
            max_position_embeddings: 256,
            ..crate::model::tests::small(true)
        };
        let model = Llama::new(config, &candle_core::Device::Cpu, 3).unwrap();
        let tokenizer = ChatTokenizer::train(["get 2 oak logs and craft"].iter(), 300).unwrap();
        let greedy = GenerationConfig {
            max_new_tokens: 12,
            temperature: 0.0,
            ..GenerationConfig::default()
        };
        let cache = PrefixCache::new(2);
        let base: Vec<u32> = (0..40).map(|i| 3 + (i * 7) % 250).collect();
        let mut longer = base.clone();
        longer.extend([9, 8, 7, 6]);
        let mut other = base[..10].to_vec();
        other.extend([5, 5, 5]);
        for prompt in [&base, &longer, &base, &other, &longer, &base[..1].to_vec()] {
            let request = GenerationRequest {
                prompt,
                n: 2,
                config: &greedy,
                seed: 0,
            };
            let fresh = generate(&model, &tokenizer, &request).unwrap();
            let cached = generate_with_cache(&model, &tokenizer, &request, &cache).unwrap();
            assert_eq!(fresh, cached, "prompt of {} tokens", prompt.len());
        }
        // The longest shared prefix is found, and one token is always left to run.
        let (shared, state) = cache.lookup(&longer).unwrap().unwrap();
        assert_eq!((shared, state.len()), (longer.len() - 1, longer.len() - 1));
        let mut extended = longer.clone();
        extended.push(4);
        assert_eq!(cache.lookup(&extended).unwrap().unwrap().0, longer.len());
        assert!(cache.lookup(&[200]).unwrap().is_none());
        // Capacity 2: the least recently used prompt went.
        assert_eq!(cache.entries.lock().unwrap().len(), 2);
    }

    /// Sampling n continuations as one batch gives each the tokens it would get alone with
    /// its own generator: batching changes the speed, not the samples.
    #[test]
    fn batched_sampling_equals_sampling_one_at_a_time() {
        let config = crate::ModelConfig {
            vocab_size: 300,
            max_position_embeddings: 256,
            ..crate::model::tests::small(true)
        };
        let model = Llama::new(config, &candle_core::Device::Cpu, 9).unwrap();
        let tokenizer =
            ChatTokenizer::train(["get 2 oak logs and craft a stick"].iter(), 300).unwrap();
        let sampling = GenerationConfig {
            max_new_tokens: 16,
            temperature: 1.0,
            top_p: 0.95,
            ..GenerationConfig::default()
        };
        let prompt: Vec<u32> = (0..30).map(|i| 3 + (i * 11) % 250).collect();
        let none = PrefixCache::new(0);
        for seed in 0..4 {
            let batched = generate_detailed(
                &model,
                &tokenizer,
                &GenerationRequest {
                    prompt: &prompt,
                    n: 4,
                    config: &sampling,
                    seed,
                },
                &none,
            )
            .unwrap();
            let (last, cache) = prefill(&model, &prompt, &none).unwrap();
            for (i, sample) in batched.iter().enumerate() {
                let alone = decode(
                    &model,
                    &tokenizer,
                    last.clone(),
                    &cache,
                    vec![Rng::from_parts(&[seed, i as u64])],
                    16,
                    &sampling,
                )
                .unwrap();
                assert_eq!(&alone[0], sample, "seed {seed}, sample {i}");
            }
            // Different generators give different samples (the test is not vacuous).
            assert!(batched.windows(2).any(|w| w[0] != w[1]), "seed {seed}");
        }
    }

    proptest! {
        /// With a nucleus to cut, partial selection picks what sorting every token picked,
        /// draw for draw, across the doublings of `k` and with many tied logits.
        #[test]
        fn the_nucleus_is_the_fully_sorted_one(
            steps in proptest::collection::vec(-16i32..16, 1..400),
            smooth in proptest::collection::vec(-30.0f32..30.0, 1..400),
            temperature in 0.05f64..4.0,
            top_p in 0.0f64..1.0,
            seed in any::<u64>(),
        ) {
            let tied: Vec<f32> = steps.iter().map(|&s| s as f32 * 0.5).collect();
            for logits in [&tied, &smooth] {
                let mut ours = Rng::new(seed);
                let mut reference = Rng::new(seed);
                for _ in 0..3 {
                    prop_assert_eq!(
                        sample_token(logits, temperature, top_p, &mut ours),
                        fully_sorted_sample(logits, temperature, top_p, &mut reference)
                    );
                }
            }
        }

        #[test]
        fn sampling_never_panics(
            logits in proptest::collection::vec(any::<f32>(), 1..20),
            temperature in any::<f64>(),
            top_p in any::<f64>(),
            seed in any::<u64>(),
        ) {
            let token = sample_token(&logits, temperature, top_p, &mut Rng::new(seed));
            prop_assert!((token as usize) < logits.len());
        }
    }
}
