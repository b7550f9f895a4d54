//! Device selection: `cpu` (burn's pure-Rust `flex` backend), `wgpu` (Vulkan / Metal / DX12), or
//! `auto` (a wgpu adapter that is a real GPU, else the CPU). Never `Device::default()`: it picks
//! wgpu whenever compiled, even with no adapter, and then panics in a worker thread.

use anyhow::{Result, bail};
use burn::prelude::*;
use burn::tensor::wgpu::wgpu::DeviceType;

pub struct Selected {
    pub device: Device,
    /// Human-readable description, written into the results.
    pub name: String,
    /// Why this device was chosen (for `auto`).
    pub reason: String,
}

fn cpu(reason: String) -> Selected {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    Selected { device: Device::flex(), name: format!("cpu (burn flex, {threads} threads)"), reason }
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
                        Ok(Selected { device, name, reason: if kind == "auto" { "a GPU adapter was found".into() } else { "requested".into() } })
                    }
                }
                Ok(Err(e)) if kind == "auto" => Ok(cpu(format!("no wgpu adapter: {e}"))),
                Err(_) if kind == "auto" => Ok(cpu("wgpu adapter probing failed".into())),
                Ok(Err(e)) => bail!("--device wgpu: no wgpu adapter could be initialised ({e}); on Linux install the Vulkan loader (libvulkan1) and a driver, or use --device cpu"),
                Err(_) => bail!("--device wgpu: adapter probing panicked; use --device cpu"),
            }
        }
        other => bail!("unknown device `{other}`: expected auto, cpu or wgpu"),
    }
}
