//! s2rm — a reproduction harness for *Sequence to Sequence Reward Modeling: Improving RLHF by
//! Language Feedback* (Zhou et al., AAAI 2025). One module per pipeline stage; see README.md.

pub mod bench;
pub mod data;
pub mod device;
pub mod eval;
pub mod frame;
pub mod fused;
pub mod grid;
pub mod model;
pub mod pretrained;
pub mod report;
pub mod reward;
pub mod runner;
pub mod sample;
pub mod schedule;
pub mod spec;
pub mod stages;
pub mod text;
pub mod train;
pub mod util;
pub mod world;
