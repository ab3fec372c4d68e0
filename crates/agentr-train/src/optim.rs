//! AdamW with decoupled weight decay, whose moments can be saved and restored, and the
//! learning-rate schedule (linear warm-up, then cosine decay).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{CpuStorage, DType, Device, InplaceOp2, InplaceOp3, Layout, Tensor, Var};

use crate::TrainError;
use crate::fused::{elements, slice};
use crate::parallel::for_each_chunk;

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (0 = plain Adam, the Agent-R reference's setting).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The optimizer state: moments per parameter name and the number of updates taken.
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<(String, Var)>,
    first: HashMap<String, Tensor>,
    second: HashMap<String, Tensor>,
    updates: u64,
}

impl AdamW {
    /// A fresh optimizer over named parameters.
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self, TrainError> {
        let mut first = HashMap::new();
        let mut second = HashMap::new();
        for (name, var) in &params {
            first.insert(name.clone(), var.zeros_like()?);
            second.insert(name.clone(), var.zeros_like()?);
        }
        Ok(AdamW {
            config,
            params,
            first,
            second,
            updates: 0,
        })
    }

    /// Updates taken so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// One update with learning rate `lr` from `grads` (by parameter name; parameters without
    /// a gradient are left as they are, moments included).
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, lr: f64) -> Result<(), TrainError> {
        self.scaled_step(grads, lr, 1.0)
    }

    /// [`AdamW::step`] on `grads` clipped to global L2 norm `max_norm`, as
    /// [`clip_global_norm`] would clip them, but with the scale applied inside the update
    /// instead of in scaled copies of every gradient. Returns the norm before clipping.
    pub fn clipped_step(
        &mut self,
        grads: &HashMap<String, Tensor>,
        lr: f64,
        max_norm: f64,
    ) -> Result<f64, TrainError> {
        let norm = global_norm(grads)?;
        self.scaled_step(grads, lr, clip_scale(norm, max_norm))?;
        Ok(norm)
    }

    fn scaled_step(
        &mut self,
        grads: &HashMap<String, Tensor>,
        lr: f64,
        scale: f64,
    ) -> Result<(), TrainError> {
        self.updates += 1;
        let t = self.updates as i32;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let bias1 = 1.0 - beta1.powi(t);
        let bias2 = 1.0 - beta2.powi(t);
        for (name, var) in &self.params {
            let Some(grad) = grads.get(name) else {
                continue;
            };
            let (m, v) = (&self.first[name], &self.second[name]);
            if var.device().is_cpu() && var.dtype() == DType::F32 {
                // In place and split between the threads: three passes over memory instead
                // of about fifteen, none of them on one core while the other waits.
                for (moment, decay, square) in [(m, beta1, false), (v, beta2, true)] {
                    moment.inplace_op2(
                        grad,
                        &MomentUpdate {
                            decay: decay as f32,
                            scale: scale as f32,
                            square,
                        },
                    )?;
                }
                let update = ParameterUpdate {
                    lr: lr as f32,
                    keep: (1.0 - lr * weight_decay) as f32,
                    bias1: bias1 as f32,
                    bias2: bias2 as f32,
                    eps: eps as f32,
                };
                var.as_tensor().inplace_op3(m, v, &update)?;
            } else {
                let grad = if scale == 1.0 {
                    grad.clone()
                } else {
                    (grad * scale)?
                };
                let m = ((m * beta1)? + (&grad * (1.0 - beta1))?)?;
                let v = ((v * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
                let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + eps)?)?;
                let decayed = (var.as_tensor() * (1.0 - lr * weight_decay))?;
                var.set(&(decayed - (update * lr)?)?)?;
                self.first.insert(name.clone(), m);
                self.second.insert(name.clone(), v);
            }
        }
        Ok(())
    }

    /// Writes the moments to a safetensors file (`m.<name>`, `v.<name>`) atomically.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, _) in &self.params {
            tensors.insert(format!("m.{name}"), self.first[name].clone());
            tensors.insert(format!("v.{name}"), self.second[name].clone());
        }
        agentr_envs::atomic::write_with(path, |tmp| {
            candle_core::safetensors::save(&tensors, tmp).map_err(std::io::Error::other)
        })
        .map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Restores moments written by [`AdamW::save`] and the update count.
    pub fn load(&mut self, path: &Path, updates: u64, device: &Device) -> Result<(), TrainError> {
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| TrainError::BadFile {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        for (name, _) in &self.params {
            for (prefix, store) in [("m", &mut self.first), ("v", &mut self.second)] {
                let key = format!("{prefix}.{name}");
                let tensor = tensors.get(&key).ok_or_else(|| TrainError::BadFile {
                    path: path.to_owned(),
                    message: format!("missing {key}"),
                })?;
                store.insert(name.clone(), tensor.clone());
            }
        }
        self.updates = updates;
        Ok(())
    }
}

fn contiguous_f32_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("the fused AdamW update takes contiguous f32 tensors"),
    }
}

/// Elements per piece of work when an optimizer pass is split between threads.
const CHUNK: usize = 1 << 16;

/// `moment = decay · moment + (1 − decay) · g` (or `g²` with `square`), where `g` is the
/// gradient times `scale`, in place.
struct MomentUpdate {
    decay: f32,
    scale: f32,
    square: bool,
}

impl InplaceOp2 for MomentUpdate {
    fn name(&self) -> &'static str {
        "agentr-adamw-moment"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
    ) -> candle_core::Result<()> {
        let moment = contiguous_f32_mut(dst, dst_l)?;
        let grad = slice(grad, grad_l, "the fused AdamW update")?;
        if moment.len() != grad.len() {
            candle_core::bail!(
                "moment of {} for a gradient of {}",
                moment.len(),
                grad.len()
            );
        }
        let (decay, rest, scale) = (self.decay, 1.0 - self.decay, self.scale);
        for_each_chunk(moment, CHUNK, |index, moment| {
            let grad = &grad[index * CHUNK..][..moment.len()];
            for (m, &g) in moment.iter_mut().zip(grad) {
                // Unclipped, `g · 1` is `g` exactly.
                let g = g * scale;
                let g = if self.square { g * g } else { g };
                *m = decay * *m + rest * g;
            }
        });
        Ok(())
    }
}

/// `p = keep · p − lr · (m / bias1) / (sqrt(v / bias2) + eps)`, in place.
struct ParameterUpdate {
    lr: f32,
    keep: f32,
    bias1: f32,
    bias2: f32,
    eps: f32,
}

impl InplaceOp3 for ParameterUpdate {
    fn name(&self) -> &'static str {
        "agentr-adamw-update"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        m: &CpuStorage,
        m_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> candle_core::Result<()> {
        let param = contiguous_f32_mut(dst, dst_l)?;
        let (m, v) = (
            slice(m, m_l, "the fused AdamW update")?,
            slice(v, v_l, "the fused AdamW update")?,
        );
        if param.len() != m.len() || param.len() != v.len() {
            candle_core::bail!("AdamW moments do not match a parameter of {}", param.len());
        }
        for_each_chunk(param, CHUNK, |index, param| {
            let start = index * CHUNK;
            let (m, v) = (&m[start..][..param.len()], &v[start..][..param.len()]);
            for ((p, &m), &v) in param.iter_mut().zip(m).zip(v) {
                let step = (m / self.bias1) / ((v / self.bias2).sqrt() + self.eps);
                *p = self.keep * *p - self.lr * step;
            }
        });
        Ok(())
    }
}

/// Learning rate at optimizer step `step` (0-based) of `total`: linear warm-up over
/// `warmup` steps to `peak`, then cosine decay to `floor` at the last step.
pub fn learning_rate(step: u64, total: u64, warmup: u64, peak: f64, floor: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
/// ([`AdamW::clipped_step`] clips inside the update without writing scaled copies.)
pub fn clip_global_norm(
    grads: &mut HashMap<String, Tensor>,
    max_norm: f64,
) -> Result<f64, TrainError> {
    let norm = global_norm(grads)?;
    let scale = clip_scale(norm, max_norm);
    if scale != 1.0 {
        for grad in grads.values_mut() {
            *grad = (&*grad * scale)?;
        }
    }
    Ok(norm)
}

/// The factor that brings a global norm of `norm` down to `max_norm` (1 when it is below, not
/// finite, or `max_norm` is not positive).
fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if norm.is_finite() && norm > max_norm && max_norm > 0.0 {
        max_norm / norm
    } else {
        1.0
    }
}

/// The L2 norm of all the tensors together, their squared sums added in the order of their
/// names: a map's own order changes from one process to the next, and f64 sums in another
/// order can differ in the last bit (a resumed run logged other norms than an uninterrupted
/// one).
fn global_norm(grads: &HashMap<String, Tensor>) -> Result<f64, TrainError> {
    let mut names: Vec<&String> = grads.keys().collect();
    names.sort();
    let mut total = 0.0f64;
    for name in names {
        total += squared_sum(&grads[name])?;
    }
    Ok(total.sqrt())
}

/// The sum of a tensor's squared elements. On the CPU, f64 sums over fixed chunks, split
/// between the threads and added in chunk order: the same result on any number of threads.
fn squared_sum(tensor: &Tensor) -> Result<f64, TrainError> {
    if !(tensor.device().is_cpu() && tensor.dtype() == DType::F32) {
        let sum = tensor.to_dtype(DType::F32)?.sqr()?.sum_all()?;
        return Ok(f64::from(sum.to_scalar::<f32>()?));
    }
    let data = elements(tensor)?;
    let data: &[f32] = &data;
    let mut partial = vec![0.0f64; data.len().div_ceil(CHUNK)];
    for_each_chunk(&mut partial, 1, |index, sum| {
        let chunk = &data[index * CHUNK..data.len().min((index + 1) * CHUNK)];
        sum[0] = chunk.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    });
    Ok(partial.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        let lr = |s| learning_rate(s, 100, 10, 1.0, 0.0);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(10) - 1.0).abs() < 1e-12);
        assert!(lr(55) < 0.6 && lr(55) > 0.4);
        assert!(lr(100).abs() < 1e-12);
        assert!((learning_rate(5, 10, 0, 2.0, 1.0) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn adamw_minimises_a_quadratic_and_clipping_bounds_the_norm() {
        let device = Device::Cpu;
        let var = Var::new(&[3.0f32, -2.0], &device).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], AdamWConfig::default()).unwrap();
        for _ in 0..300 {
            let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let mut map =
                HashMap::from([("w".to_owned(), grads.get(var.as_tensor()).unwrap().clone())]);
            let norm = clip_global_norm(&mut map, 1.0).unwrap();
            assert!(norm.is_finite());
            let clipped: f32 = map["w"]
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(clipped.sqrt() <= 1.0 + 1e-5);
            opt.step(&map, 0.05).unwrap();
        }
        let w = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(w.iter().all(|x| x.abs() < 0.05), "{w:?}");
        assert_eq!(opt.updates(), 300);
    }

    /// The in-place CPU update follows the AdamW formula, written out here for one tensor.
    #[test]
    fn fused_update_follows_the_formula() {
        let device = Device::Cpu;
        let init: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let var = Var::new(init.as_slice(), &device).unwrap();
        let config = AdamWConfig {
            weight_decay: 0.1,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], config).unwrap();
        let (mut p, mut m, mut v) = (init.clone(), vec![0f32; 50], vec![0f32; 50]);
        for step in 1..=3 {
            let g: Vec<f32> = (0..50).map(|i| ((i * step) as f32 * 0.11).cos()).collect();
            let grads =
                HashMap::from([("w".to_owned(), Tensor::new(g.as_slice(), &device).unwrap())]);
            opt.step(&grads, 0.01).unwrap();
            let (b1, b2) = (1.0 - 0.9f32.powi(step), 1.0 - 0.999f32.powi(step));
            for i in 0..50 {
                m[i] = 0.9 * m[i] + 0.1 * g[i];
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
                p[i] = p[i] * (1.0 - 0.01 * 0.1) - 0.01 * (m[i] / b1) / ((v[i] / b2).sqrt() + 1e-8);
            }
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for (a, b) in got.iter().zip(&p) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    /// Clipping inside the update gives the same weights, bit for bit, as clipping copies of
    /// the gradients first and then stepping, and reports the same norm, over several chunks
    /// of work (the last one partial), with and without clipping.
    #[test]
    fn clipped_step_equals_clipping_then_stepping() {
        let device = Device::Cpu;
        let n = 2 * CHUNK + 17;
        let init: Vec<f32> = (0..n).map(|i| (i as f32 * 0.013).sin()).collect();
        for max_norm in [0.5, 1e9] {
            let (inside, outside) = (
                Var::new(init.as_slice(), &device).unwrap(),
                Var::new(init.as_slice(), &device).unwrap(),
            );
            let config = AdamWConfig {
                weight_decay: 0.1,
                ..AdamWConfig::default()
            };
            let mut opt_inside = AdamW::new(vec![("w".into(), inside.clone())], config).unwrap();
            let mut opt_outside = AdamW::new(vec![("w".into(), outside.clone())], config).unwrap();
            for step in 1..=3 {
                let g: Vec<f32> = (0..n).map(|i| ((i * step) as f32 * 0.007).cos()).collect();
                let expected = g
                    .iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum::<f64>()
                    .sqrt();
                let grads =
                    HashMap::from([("w".to_owned(), Tensor::new(g.as_slice(), &device).unwrap())]);
                let norm = opt_inside.clipped_step(&grads, 0.01, max_norm).unwrap();
                let mut clipped = grads.clone();
                let clipped_norm = clip_global_norm(&mut clipped, max_norm).unwrap();
                opt_outside.step(&clipped, 0.01).unwrap();
                assert_eq!(norm, clipped_norm);
                assert!(
                    (norm - expected).abs() <= 1e-9 * expected,
                    "{norm} vs {expected}"
                );
            }
            let (a, b) = (
                inside.as_tensor().to_vec1::<f32>().unwrap(),
                outside.as_tensor().to_vec1::<f32>().unwrap(),
            );
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(a.iter().zip(&init).any(|(x, y)| x != y));
        }
    }

    /// Regression: the norm was summed in the map's order, which differs between processes
    /// (and maps), so a resumed run logged other gradient norms than an uninterrupted one.
    /// One squared sum of 1 and eight of 2⁻⁵³ add up to 1 in name order (each small one is
    /// lost against the 1), and to 1 + 2⁻⁵⁰ with the small ones first.
    #[test]
    fn the_global_norm_does_not_depend_on_the_maps_order() {
        let device = Device::Cpu;
        let small = 2f32.powi(-27);
        for _ in 0..20 {
            let mut grads =
                HashMap::from([("a".to_owned(), Tensor::new(&[1.0f32], &device).unwrap())]);
            for name in ["b", "c", "d", "e", "f", "g", "h", "i"] {
                let tensor = Tensor::new(&[small, small], &device).unwrap();
                grads.insert(name.to_owned(), tensor);
            }
            assert_eq!(clip_global_norm(&mut grads, 10.0).unwrap(), 1.0);
        }
    }

    #[test]
    fn weight_decay_shrinks_weights_without_gradient_signal() {
        let device = Device::Cpu;
        let var = Var::new(&[1.0f32], &device).unwrap();
        let config = AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], config).unwrap();
        let zero = HashMap::from([("w".to_owned(), var.zeros_like().unwrap())]);
        opt.step(&zero, 0.1).unwrap();
        let w = var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((w - 0.95).abs() < 1e-6, "{w}");
    }
}
