//! End to end at toy scale: tokenizer, model, fine-tuning, generation, policy and judge.

use agentr_envs::Message;
use agentr_mcts::{Policy, SampleRequest};
use agentr_revise::{Judge, JudgeRequest, Label, StepView};
use agentr_train::{
    ChatTokenizer, GenerationConfig, GenerationRequest, Llama, ModelAgent, ModelConfig, SftConfig,
    TrainData, generate, train,
};
use candle_core::Device;

fn conversation(i: usize) -> Vec<Message> {
    vec![
        Message::user(format!("Goal: craft item {i}.")),
        Message::assistant(
            format!(
                "Thought: item {i} needs {} logs.\nAction: get {} logs",
                i + 1,
                i + 1
            ),
            true,
        ),
    ]
}

/// A tokenizer of `vocab` tokens and a model from `config` (given the vocabulary size),
/// trained on the 20 conversations; `on_step` sees every step.
fn trained(
    vocab: usize,
    config: impl FnOnce(usize) -> ModelConfig,
    seed: u64,
    sft: SftConfig,
    on_step: &mut dyn FnMut(&agentr_train::StepReport) -> bool,
) -> (ChatTokenizer, Llama) {
    let texts: Vec<String> = (0..20)
        .flat_map(|i| conversation(i).into_iter().map(|m| m.content))
        .collect();
    let tokenizer = ChatTokenizer::train(texts.iter(), vocab).unwrap();
    let mut model = Llama::new(config(tokenizer.vocab_size()), &Device::Cpu, seed).unwrap();
    let data = TrainData {
        agent: (0..20)
            .map(|i| tokenizer.render(&conversation(i)).unwrap())
            .collect(),
        general: Vec::new(),
    };
    let dir = std::env::temp_dir().join(format!("agentr-learn-{seed}-{}", std::process::id()));
    train(&mut model, &data, &sft, &dir, false, on_step).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (tokenizer, model)
}

fn logits(model: &Llama, ids: &candle_core::Tensor) -> Vec<f32> {
    model
        .forward(ids, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// Two small layers over a vocabulary of `vocab_size`.
fn small(vocab_size: usize) -> ModelConfig {
    ModelConfig {
        vocab_size,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 1024,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: true,
        model_type: agentr_train::ModelType::Llama,
        attention_bias: false,
        rope_scaling: None,
    }
}

/// The judge's question about the first step of goal 1, `get 2 logs`, answered `observation`.
fn first_step(observation: &str) -> JudgeRequest<'_> {
    JudgeRequest {
        env: "textcraft",
        task: agentr_envs::TaskId(0),
        node: &[0],
        task_description: "Goal: craft item 1.",
        history: Vec::new(),
        step: StepView {
            response: "Action: get 2 logs",
            action: "get 2 logs",
            observation,
        },
        rejected: agentr_envs::textcraft::is_rejection("Goal: craft item 1.", observation),
    }
}

fn agent() -> ModelAgent {
    let sft = SftConfig {
        epochs: 80,
        lr: 5e-3,
        batch_tokens: 256,
        checkpoint_every: 10_000,
        ..SftConfig::default()
    };
    let (tokenizer, model) = trained(300, small, 5, sft, &mut |_| true);
    let mut agent = ModelAgent::new(model, tokenizer, std::path::Path::new("memory"));
    agent.generation.max_new_tokens = 40;
    agent
}

/// `n` samples of `agent`'s model for `prompt`, seed 0.
fn complete(
    agent: &ModelAgent,
    prompt: &[u32],
    n: usize,
    config: &GenerationConfig,
) -> Vec<String> {
    let request = GenerationRequest {
        prompt,
        n,
        config,
        seed: 0,
    };
    generate(&agent.model, &agent.tokenizer, &request).unwrap()
}

#[test]
fn a_trained_model_reproduces_its_data_and_serves_as_policy_and_judge() {
    let agent = agent();
    let greedy = GenerationConfig {
        max_new_tokens: 40,
        temperature: 0.0,
        ..GenerationConfig::default()
    };
    for i in [3, 11, 17] {
        let prompt = agent
            .tokenizer
            .render_prompt(&conversation(i)[..1])
            .unwrap();
        let out = complete(&agent, &prompt, 1, &greedy);
        assert_eq!(out[0], conversation(i)[1].content, "item {i}");
    }
    // Several samples from one prefill; a stop string cuts them.
    let prompt = agent
        .tokenizer
        .render_prompt(&conversation(5)[..1])
        .unwrap();
    let stop = GenerationConfig {
        stop: vec!["\nAction:".into()],
        ..greedy.clone()
    };
    let cut = complete(&agent, &prompt, 3, &stop);
    assert_eq!(cut, vec!["Thought: item 5 needs 6 logs."; 3]);

    // As a search policy: n responses, reproducible for a seed.
    let request = SampleRequest {
        conversation: &conversation(7)[..1],
        n: 4,
        temperature: 1.0,
        seed: 9,
    };
    let first = agent.sample(&request).unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(first, agent.sample(&request).unwrap());

    // As a judge it answers (this toy model never learned to judge, so the label is whatever
    // its text parses to), and it records its name.
    let judgement = agent.judge(&first_step("Got 2 logs")).unwrap();
    assert!(judgement.parsed || judgement.label == Label::Uncertain);
    assert_eq!(agent.name(), "model:memory");

    // Saved and loaded, it gives the same greedy answers.
    let dir = std::env::temp_dir().join(format!("agentr-agent-{}", std::process::id()));
    agent.save(&dir).unwrap();
    let loaded = ModelAgent::load(&dir, &Device::Cpu).unwrap();
    let prompt = agent
        .tokenizer
        .render_prompt(&conversation(11)[..1])
        .unwrap();
    assert_eq!(
        complete(&loaded, &prompt, 1, &greedy),
        complete(&agent, &prompt, 1, &greedy)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tiny_s_learns_a_fixed_sample_set_and_reloads_exactly() {
    let sft = SftConfig {
        epochs: 8,
        lr: 2e-3,
        batch_tokens: 512,
        checkpoint_every: 10_000,
        ..SftConfig::default()
    };
    let mut losses = Vec::new();
    let tiny_s = |vocab| ModelConfig::preset("tiny-s", vocab).unwrap();
    let (_, model) = trained(400, tiny_s, 11, sft, &mut |r| {
        losses.push(r.loss);
        true
    });
    let first = losses[0];
    let last = *losses.last().unwrap();
    assert!(
        last < first / 3.0,
        "masked loss went from {first:.3} to {last:.3}"
    );

    let dir = std::env::temp_dir().join(format!("agentr-tiny-s-{}", std::process::id()));
    model.save(&dir).unwrap();
    let loaded = Llama::load(&dir, &Device::Cpu).unwrap();
    let ids = candle_core::Tensor::new(&[[1u32, 5, 9, 20, 33]], &Device::Cpu).unwrap();
    assert_eq!(logits(&model, &ids), logits(&loaded, &ids));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model taught to end verifier answers with `Judgment: Bad` after rejected steps and
/// `Judgment: Good` otherwise: scored, its verdict is the label it prefers after `Judgment:`;
/// written, its answer parses to the same labels.
#[test]
fn a_scored_judge_gives_the_label_the_model_prefers() {
    use agentr_revise::judge_prompt;
    use agentr_train::JudgeAnswer;

    let observations: Vec<(String, Label)> = (0..12)
        .map(|i| match i % 2 {
            0 => (format!("Got {} logs", i + 1), Label::Good),
            _ => (format!("Could not find item {i}"), Label::Bad),
        })
        .collect();
    let requests: Vec<JudgeRequest> = observations
        .iter()
        .map(|(observation, _)| first_step(observation))
        .collect();
    let conversations: Vec<Vec<Message>> = requests
        .iter()
        .zip(&observations)
        .map(|(request, (_, label))| {
            let word = match label {
                Label::Bad => "Bad",
                _ => "Good",
            };
            let mut messages = judge_prompt(request);
            messages.push(Message::assistant(format!("Judgment: {word}"), true));
            messages
        })
        .collect();
    let texts: Vec<&str> = conversations
        .iter()
        .flatten()
        .map(|m| m.content.as_str())
        .collect();
    let tokenizer = ChatTokenizer::train(texts.iter(), 400).unwrap();
    let mut model = Llama::new(small(tokenizer.vocab_size()), &Device::Cpu, 8).unwrap();
    let data = TrainData {
        agent: conversations
            .iter()
            .map(|c| tokenizer.render(c).unwrap())
            .collect(),
        general: Vec::new(),
    };
    let sft = SftConfig {
        epochs: 40,
        lr: 5e-3,
        batch_tokens: 4096,
        checkpoint_every: 10_000,
        ..SftConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("agentr-judge-{}", std::process::id()));
    train(&mut model, &data, &sft, &dir, false, &mut |_| true).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let mut agent = ModelAgent::new(model, tokenizer, std::path::Path::new("judge"));
    for answer in [JudgeAnswer::Scored, JudgeAnswer::Written] {
        agent.judge_answer = answer;
        for (request, (observation, label)) in requests.iter().zip(&observations) {
            let judgement = agent.judge(request).unwrap();
            assert!(judgement.parsed, "{answer:?} {observation}: {judgement:?}");
            assert_eq!(
                judgement.label, *label,
                "{answer:?} {observation}: {judgement:?}"
            );
            if answer == JudgeAnswer::Scored {
                assert!(judgement.rationale.starts_with("scored after `Judgment:`"));
            }
        }
    }
    assert_eq!(agent.name(), "model:judge");
    agent.judge_answer = JudgeAnswer::Scored;
    assert_eq!(agent.name(), "model:judge (scored)");
    // The threshold decides: every probability of Bad is above 0 and below 1.
    for (bad_above, label) in [(0.0, Label::Bad), (1.0, Label::Good)] {
        agent.bad_above = bad_above;
        for request in &requests {
            assert_eq!(
                agent.judge(request).unwrap().label,
                label,
                "bad_above {bad_above}"
            );
        }
    }
}
