//! Device selection: `cpu` (burn's pure-Rust `flex` backend), `wgpu` (Vulkan / Metal / DX12), or
//! `auto` (a wgpu adapter that is a real GPU, else the CPU). Never `Device::default()`: it picks
//! wgpu whenever compiled, even with no adapter, and then panics in a worker thread.

use anyhow::{Result, bail};
use burn::prelude::*;
use burn::tensor::wgpu::wgpu::DeviceType;

/// The device kinds `--device` and `experiment.device` accept (`libtorch` needs the `libtorch`
/// cargo feature; without it, selecting it fails with the build command).
pub const KINDS: [&str; 4] = ["auto", "cpu", "wgpu", "libtorch"];

/// Which burn backend a [`Selected`] device runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend.
    Flex,
    /// burn's wgpu backend (Vulkan, Metal, DX12).
    Wgpu,
    /// LibTorch's CPU kernels through burn's `tch` backend.
    LibTorch,
}

pub struct Selected {
    pub device: Device,
    pub backend: Backend,
    /// Threads of the CPU backend's pool (0 on a GPU): `RAYON_NUM_THREADS` for flex,
    /// `OMP_NUM_THREADS` for LibTorch (each calling thread gets such a pool), else one per core.
    pub threads: usize,
    /// Human-readable description, written into the results.
    pub name: String,
    /// Why this device was chosen (for `auto`).
    pub reason: String,
}

impl Selected {
    /// Sizes the CPU pool that tensor ops started from the calling thread use, where the backend
    /// has one pool per calling thread: LibTorch (OpenMP), whose stage-graph workers would
    /// otherwise each start a pool as large as the machine and oversubscribe it (1.15× slower on a
    /// shortened safety run on 2 cores). flex shares one rayon pool across threads and wgpu runs on
    /// the GPU, so for them this does nothing.
    pub fn use_threads_on_this_thread(&self, n: usize) {
        #[cfg(feature = "libtorch")]
        if self.backend == Backend::LibTorch {
            tch::set_num_threads(n.max(1) as i32);
        }
        let _ = n;
    }

    /// The device as the stage cache keys it: its name, and on LibTorch also the threads each
    /// stage's pool gets, since LibTorch's kernels sum in another order with another count (flex
    /// shares one pool, already in the name).
    pub fn cache_name(&self, stage_threads: usize) -> String {
        match self.backend {
            Backend::LibTorch => format!("{}, {stage_threads} per stage", self.name),
            _ => self.name.clone(),
        }
    }
}

/// The thread count a CPU pool sized by the environment variable `var` gets.
fn pool_threads(var: &str) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    std::env::var(var).ok().and_then(|s| s.parse::<usize>().ok()).filter(|&n| n > 0).unwrap_or(cores)
}

fn cpu(reason: String) -> Selected {
    let threads = pool_threads("RAYON_NUM_THREADS");
    Selected { device: Device::flex(), backend: Backend::Flex, threads, name: format!("cpu (burn flex, {threads} threads)"), reason }
}

/// Selects the device named by `kind` (`auto`, `cpu`, `wgpu`).
pub fn select(kind: &str) -> Result<Selected> {
    match kind {
        "cpu" => Ok(cpu("requested".into())),
        "wgpu" | "auto" => {
            // wgpu's adapter probing may panic inside drivers on odd systems; treat that as "none".
            let probe = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
            match probe {
                Ok(Ok((device, setup))) => {
                    let info = setup.adapter.get_info();
                    let name = format!("wgpu {} ({:?}, {:?})", info.name, info.device_type, info.backend);
                    let real_gpu = !matches!(info.device_type, DeviceType::Cpu);
                    if kind == "auto" && !real_gpu {
                        Ok(cpu(format!("the only wgpu adapter is a software renderer ({name}); flex is faster")))
                    } else {
                        Ok(Selected { device, backend: Backend::Wgpu, threads: 0, name, reason: if kind == "auto" { "a GPU adapter was found".into() } else { "requested".into() } })
                    }
                }
                Ok(Err(e)) if kind == "auto" => Ok(cpu(format!("no wgpu adapter: {e}"))),
                Err(_) if kind == "auto" => Ok(cpu("wgpu adapter probing failed".into())),
                Ok(Err(e)) => bail!("--device wgpu: no wgpu adapter could be initialised ({e}); on Linux install the Vulkan loader (libvulkan1) and a driver, or use --device cpu"),
                Err(_) => bail!("--device wgpu: adapter probing panicked; use --device cpu"),
            }
        }
        "libtorch" => libtorch(),
        other => bail!("unknown device `{other}`: expected one of {}", KINDS.join(", ")),
    }
}

/// LibTorch's CPU kernels through burn's `tch` backend (burn's own autodiff on top), compiled only
/// with the `libtorch` cargo feature. LibTorch sizes its own (OpenMP) thread pool.
#[cfg(feature = "libtorch")]
#[allow(deprecated)] // burn 0.22 marks burn-tch deprecated (to be removed upstream); it is optional here.
fn libtorch() -> Result<Selected> {
    // Per calling thread: `s2rm run` gives each of the stage graph's two workers half of them
    // (`Selected::use_threads_on_this_thread`).
    let threads = pool_threads("OMP_NUM_THREADS");
    Ok(Selected { device: Device::libtorch(), backend: Backend::LibTorch, threads, name: format!("cpu (burn tch / LibTorch, {threads} threads)"), reason: "requested".into() })
}

#[cfg(not(feature = "libtorch"))]
fn libtorch() -> Result<Selected> {
    bail!("--device libtorch: this binary was built without LibTorch; build with `cargo build --features libtorch` (PyTorch 2.9.0 in the Python environment, LIBTORCH_USE_PYTORCH=1), e.g. `make bench-libtorch`, or use --device cpu")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build without LibTorch refuses `libtorch` with the command that builds it.
    #[cfg(not(feature = "libtorch"))]
    #[test]
    fn libtorch_without_the_feature_names_the_build_command() {
        let err = select("libtorch").err().expect("no LibTorch in this build").to_string();
        assert!(err.contains("--features libtorch") && err.contains("--device cpu"), "{err}");
    }

    /// flex's stage keys are its name alone (the committed runs' caches stay valid); LibTorch's
    /// add the threads a stage gets, so `--sequential` (all of them) and two workers (half each)
    /// never share a cache entry computed in another summation order.
    #[test]
    fn only_libtorch_stage_keys_name_the_threads_per_stage() {
        let flex = cpu("requested".into());
        assert_eq!(flex.cache_name(1), flex.name);
        assert_eq!(flex.cache_name(2), flex.name);
        let tch = Selected { backend: Backend::LibTorch, name: "cpu (burn tch / LibTorch, 2 threads)".into(), ..cpu(String::new()) };
        assert_ne!(tch.cache_name(1), tch.cache_name(2));
        assert!(tch.cache_name(2).starts_with(&tch.name), "{}", tch.cache_name(2));
    }

    #[test]
    fn unknown_kinds_are_refused_with_the_list() {
        let err = select("tpu").err().expect("unknown kind").to_string();
        assert!(err.contains("auto, cpu, wgpu, libtorch"), "{err}");
    }
}
