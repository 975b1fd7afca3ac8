//! Which implementation runs a model: the fused CPU kernels ([`crate::fused`], the whole-block
//! op of [`crate::block`]) or candle's composed operations.
//!
//! An explicit option of each model ([`crate::CausalLm::set_engine`]), so one process can run
//! the same model both ways (the tests compare them); the environment variables
//! `UNLEARN_NO_FUSED` (every fused kernel off) and `UNLEARN_NO_FUSED_BLOCK` (the block op
//! off, the per-operation kernels on) are overrides of the default ([`Engine::from_env`]),
//! for A/B measurements of a whole run (reports/performance.md).
//!
//! The choice is made while the graph is built: a model's graph-building methods run inside
//! [`with`], and the kernels ask [`current`]. The gradients of a graph come from the ops it
//! was built with, so a backward pass needs no engine; code that builds graph parts later (a
//! recomputed block in the backward) captures [`current`] and enters it again. Both paths give
//! the same values up to rounding, and each is deterministic.

use std::cell::Cell;

/// The implementation choice: see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Engine {
    /// The fused per-operation kernels (RMSNorm, linear, attention, SwiGLU, rotary, the
    /// output projection with log-probabilities, AdamW), on contiguous f32 CPU tensors.
    pub fused_kernels: bool,
    /// The whole block as one op (needs `fused_kernels`).
    pub fused_block: bool,
}

impl Engine {
    /// Every fused path on (where the tensors allow it: f32 on the CPU).
    pub const FUSED: Engine = Engine { fused_kernels: true, fused_block: true };
    /// The fused per-operation kernels, each block composed from them.
    pub const FUSED_OPS: Engine = Engine { fused_kernels: true, fused_block: false };
    /// candle's composed operations only (what CUDA and other dtypes always run).
    pub const COMPOSED: Engine = Engine { fused_kernels: false, fused_block: false };

    /// [`Engine::FUSED`] unless the environment says otherwise: `UNLEARN_NO_FUSED` set (to
    /// anything) switches every fused path off, `UNLEARN_NO_FUSED_BLOCK` the block op. Read
    /// once per process.
    pub fn from_env() -> Engine {
        static ENV: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
        *ENV.get_or_init(|| {
            let kernels = std::env::var_os("UNLEARN_NO_FUSED").is_none();
            Engine {
                fused_kernels: kernels,
                fused_block: kernels && std::env::var_os("UNLEARN_NO_FUSED_BLOCK").is_none(),
            }
        })
    }

    /// Whether the whole-block op may run (it is built from the fused kernels).
    pub fn block(self) -> bool {
        self.fused_kernels && self.fused_block
    }

    pub(crate) fn to_bits(self) -> u8 {
        u8::from(self.fused_kernels) | (u8::from(self.fused_block) << 1)
    }

    pub(crate) fn from_bits(b: u8) -> Engine {
        Engine { fused_kernels: b & 1 != 0, fused_block: b & 2 != 0 }
    }
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::from_env()
    }
}

thread_local! {
    static CURRENT: Cell<Option<Engine>> = const { Cell::new(None) };
}

/// The engine of the graph being built on this thread: the innermost [`with`], else
/// [`Engine::from_env`].
pub fn current() -> Engine {
    CURRENT.with(|c| c.get()).unwrap_or_else(Engine::from_env)
}

/// Runs `f` with `engine` as this thread's [`current`] engine (restored afterwards, also when
/// `f` panics).
pub fn with<R>(engine: Engine, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Engine>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(Some(engine))));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_nests_and_restores() {
        let outer = current();
        with(Engine::COMPOSED, || {
            assert_eq!(current(), Engine::COMPOSED);
            with(Engine::FUSED_OPS, || assert_eq!(current(), Engine::FUSED_OPS));
            assert_eq!(current(), Engine::COMPOSED);
        });
        assert_eq!(current(), outer);
        let r = std::panic::catch_unwind(|| with(Engine::COMPOSED, || panic!("inside")));
        assert!(r.is_err());
        assert_eq!(current(), outer, "a panic inside `with` restores the engine");
    }

    #[test]
    fn bits_round_trip() {
        for e in
            [Engine::FUSED, Engine::FUSED_OPS, Engine::COMPOSED, Engine { fused_kernels: false, fused_block: true }]
        {
            assert_eq!(Engine::from_bits(e.to_bits()), e);
        }
        assert!(!Engine { fused_kernels: false, fused_block: true }.block());
    }
}
