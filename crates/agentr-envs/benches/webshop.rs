//! WebShop throughput and search latency on synthetic catalogues of 1,000 and 100,000
//! products: episode steps per second (the oracle's actions for the test goals, precomputed,
//! replayed as reset + steps; their mean reward is printed too) and the latency of single searches (p50 / p99 over the goals'
//! instruction texts and product titles). Prints one JSON object per catalogue size.
//!
//! Not a criterion benchmark: percentiles are the figure of interest. The index is built on
//! the first run into `$AGENTR_HOME/webshop` (its build time is printed too).

use std::sync::Arc;
use std::time::Instant;

use agentr_envs::episode::{RolloutOptions, rollout};
use agentr_envs::webshop::{ShopData, WebShop, WebShopOracle, synthetic};
use agentr_envs::{EnvError, Environment, Expert, Split, TaskId, assets};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let cache = assets::agentr_home().join("webshop");
    for products in [1_000usize, 100_000] {
        let started = Instant::now();
        let data = Arc::new(
            ShopData::synthetic(products, synthetic::DEFAULT_SEED, Some(&cache)).expect("shop"),
        );
        let load_seconds = started.elapsed().as_secs_f64();
        let mut env = WebShop::new(Arc::clone(&data));
        let oracle = WebShopOracle::new(Arc::clone(&data));
        let tasks: Vec<TaskId> = env.task_ids(Split::Test);
        let mut oracle_reward = 0.0;
        let episodes: Vec<(TaskId, Vec<String>)> = tasks
            .iter()
            .map(|&task| {
                let episode =
                    rollout::<EnvError, _>(&mut env, task, RolloutOptions::default(), |c| {
                        oracle.respond(c)
                    })
                    .expect("oracle episode");
                oracle_reward += episode.reward;
                (
                    task,
                    episode.responses().map(|r| env.extract_action(r)).collect(),
                )
            })
            .collect();
        let steps: usize = episodes.iter().map(|(_, a)| a.len()).sum();
        let mut passes = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            for (task, actions) in &episodes {
                env.reset(*task).expect("reset");
                for action in actions {
                    std::hint::black_box(env.step(action).expect("step"));
                }
            }
            passes.push(started.elapsed().as_secs_f64());
        }
        passes.sort_by(f64::total_cmp);
        // Instruction texts (what agents often search for) and titles, timed apart.
        let goals = data.goals().iter().take(1000);
        let instructions: Vec<String> = goals.clone().map(|g| g.instruction_text.clone()).collect();
        let titles: Vec<String> = goals.map(|g| g.name.to_lowercase()).collect();
        let time_searches = |queries: &[String]| -> Vec<f64> {
            let mut latencies: Vec<f64> = queries
                .iter()
                .map(|query| {
                    let started = Instant::now();
                    std::hint::black_box(data.index().search(query).expect("search"));
                    started.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            latencies.sort_by(f64::total_cmp);
            latencies
        };
        let by_instruction = time_searches(&instructions);
        let by_title = time_searches(&titles);
        let mut latencies = [by_instruction.clone(), by_title.clone()].concat();
        latencies.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({
                "products": products,
                "goals": data.goals().len(),
                "load_seconds_incl_index": load_seconds,
                "episodes": episodes.len(),
                "oracle_mean_reward": oracle_reward / episodes.len() as f64,
                "steps": steps,
                "steps_per_second": steps as f64 / passes[passes.len() / 2],
                "searches": latencies.len(),
                "search_ms_p50": percentile(&latencies, 0.5),
                "search_ms_p99": percentile(&latencies, 0.99),
                "search_ms_max": latencies.last(),
                "instruction_search_ms_p50_p99": [percentile(&by_instruction, 0.5), percentile(&by_instruction, 0.99)],
                "title_search_ms_p50_p99": [percentile(&by_title, 0.5), percentile(&by_title, 0.99)],
            })
        );
    }
}
