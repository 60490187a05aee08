//! AdamW with decoupled weight decay, the cosine learning-rate schedule with linear
//! warmup, and global-norm gradient clipping.
//!
//! Our own (small) AdamW rather than candle_nn's: a checkpoint must carry the moment
//! estimates for a resumed run to continue on the same loss curve, and candle_nn's
//! optimizer does not expose them.

use candle_core::{Tensor, Var};

/// AdamW state over a fixed list of parameters.
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// First and second moment estimates, one per parameter.
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Updates applied so far (bias correction).
    pub t: usize,
}

impl AdamW {
    /// PyTorch's defaults (β = 0.9, 0.999, ε = 1e-8) with `weight_decay`.
    pub fn new(params: &[&Var], weight_decay: f64) -> candle_core::Result<Self> {
        Ok(Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            m: params
                .iter()
                .map(|p| p.zeros_like())
                .collect::<candle_core::Result<_>>()?,
            v: params
                .iter()
                .map(|p| p.zeros_like())
                .collect::<candle_core::Result<_>>()?,
            t: 0,
        })
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, params: &[&Var], grads: &[Tensor], lr: f64) -> candle_core::Result<()> {
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t as i32);
        let c2 = 1.0 - self.beta2.powi(self.t as i32);
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let m = ((&self.m[i] * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let m_hat = (&m / c1)?;
            let v_hat = (&v / c2)?;
            let adam = (m_hat / (v_hat.sqrt()? + self.eps)?)?;
            let decayed = (p.as_tensor() * (1.0 - lr * self.weight_decay))?;
            p.set(&(decayed - (adam * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// Learning rate before optimizer step `step` (0-based) of `total`: linear warmup over
/// `warmup` steps (the first step already gets `lr/warmup`, not 0), then cosine decay to 0.
pub fn lr_at(step: usize, total: usize, warmup: usize, lr: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Global L2 norm of `grads`.
pub fn global_norm(grads: &[Tensor]) -> candle_core::Result<f64> {
    let mut sum = 0f64;
    for g in grads {
        sum += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok(sum.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(lr_at(0, 100, 10, 1.0), 0.1);
        assert_eq!(lr_at(9, 100, 10, 1.0), 1.0);
        assert_eq!(lr_at(10, 100, 10, 1.0), 1.0);
        assert!((lr_at(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert!(lr_at(99, 100, 10, 1.0) < 0.001);
        assert_eq!(lr_at(0, 5, 0, 2.0), 2.0);
    }

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // First step: m̂ = g, v̂ = g², so the update is lr·g/(|g|+ε) plus decay lr·wd·p.
        let p = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let g = Tensor::new(&[0.5f32, -4.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(&[&p], 0.1).unwrap();
        opt.step(&[&p], std::slice::from_ref(&g), 0.01).unwrap();
        let got = p.as_tensor().to_vec1::<f32>().unwrap();
        let want = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        assert_eq!(opt.t, 1);
        let z = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        assert!((global_norm(&[g, z]).unwrap() - (16.25f64).sqrt()).abs() < 1e-6);
    }
}
