//! The experiment's stage graph, run by a fixed number of worker threads.
//!
//! Each stage is one chain of small tensor ops that keeps about one core busy, so on a 2-core
//! machine two stages at once take little longer than one. Running them as a graph rather than in
//! fixed pairs keeps both workers busy: when SFT finishes before the judge, seed 1's reward models
//! start at once instead of waiting for the judge. A free worker takes the first task, in list
//! order, whose inputs are done; with one worker the tasks run exactly in list order.
//!
//! Results do not depend on the schedule: a task's arithmetic depends only on its inputs (each
//! stage has its own seed, no RNG is shared), and rayon splits each matmul by pool size, not by
//! load. `tests/pipeline.rs` compares one worker against two byte for byte.

use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Condvar, Mutex};

type Work<'a, V> = Box<dyn FnOnce(&[Arc<V>]) -> Result<V> + Send + 'a>;

/// One stage: its key, the keys of the tasks whose outputs it reads, and the work, which gets
/// those outputs in the order of `after`.
pub struct Task<'a, K, V> {
    key: K,
    after: Vec<K>,
    work: Work<'a, V>,
}

pub fn task<'a, K, V>(key: K, after: &[K], work: impl FnOnce(&[Arc<V>]) -> Result<V> + Send + 'a) -> Task<'a, K, V>
where
    K: Clone,
{
    Task { key, after: after.to_vec(), work: Box::new(work) }
}

struct State<'a, K, V> {
    pending: Vec<Option<Task<'a, K, V>>>,
    done: BTreeMap<K, Arc<V>>,
    /// How many tasks that read each output have not finished yet.
    readers: BTreeMap<K, usize>,
    error: Option<anyhow::Error>,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

/// Runs `tasks` on `workers` threads and returns every output by key. A task may only name tasks
/// listed before it (so the list order is a valid sequential order and the graph has no cycle).
/// Once every task that reads an output has finished, `release` is called on it (to drop the
/// models in it that nothing will read again, so that memory does not grow with the seeds).
/// The first error (or panic) stops the scheduling of new tasks; tasks already running finish,
/// then it is returned (or resumed). A worker calls `before` with a task's key on its own thread
/// just before running it (to size a per-thread pool for that task).
pub fn run<'a, K, V>(
    workers: usize,
    tasks: Vec<Task<'a, K, V>>,
    release: impl Fn(&mut V) + Sync,
    before: impl Fn(&K) + Sync,
) -> Result<BTreeMap<K, V>>
where
    K: Ord + Clone + Debug + Send + Sync,
    V: Send + Sync,
{
    let mut seen: BTreeSet<K> = BTreeSet::new();
    for t in &tasks {
        if let Some(missing) = t.after.iter().find(|k| !seen.contains(k)) {
            bail!("stage graph: {:?} reads {missing:?}, which is not listed before it", t.key);
        }
        if !seen.insert(t.key.clone()) {
            bail!("stage graph: {:?} is listed twice", t.key);
        }
    }
    let mut readers: BTreeMap<K, usize> = BTreeMap::new();
    for k in tasks.iter().flat_map(|t| &t.after) {
        *readers.entry(k.clone()).or_default() += 1;
    }
    let state = Mutex::new(State { pending: tasks.into_iter().map(Some).collect(), done: BTreeMap::new(), readers, error: None, panic: None });
    let wake = Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| worker(&state, &wake, &release, &before));
        }
    });
    let st = state.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = st.panic {
        std::panic::resume_unwind(p);
    }
    if let Some(e) = st.error {
        return Err(e);
    }
    // Every task has finished, so the map holds the only reference to each output.
    Ok(st.done.into_iter().map(|(k, v)| (k, Arc::into_inner(v).expect("no task still holds an output"))).collect())
}

fn worker<K, V>(state: &Mutex<State<'_, K, V>>, wake: &Condvar, release: &(impl Fn(&mut V) + Sync), before: &(impl Fn(&K) + Sync))
where
    K: Ord + Clone,
{
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let mut st = lock();
        let (task, inputs) = loop {
            if st.error.is_some() || st.panic.is_some() {
                return;
            }
            let ready = st.pending.iter().position(|t| t.as_ref().is_some_and(|t| t.after.iter().all(|k| st.done.contains_key(k))));
            if let Some(i) = ready {
                let task = st.pending[i].take().expect("a pending task");
                let inputs: Vec<Arc<V>> = task.after.iter().map(|k| Arc::clone(&st.done[k])).collect();
                break (task, inputs);
            }
            if st.pending.iter().all(Option::is_none) {
                return;
            }
            // Some task is running and will wake us when it is done (the list order guarantees
            // that every pending task's inputs are pending or running, never missing).
            st = wake.wait(st).unwrap_or_else(|e| e.into_inner());
        };
        drop(st);
        let Task { key, after, work } = task;
        before(&key);
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&inputs)));
        drop(inputs);
        let mut st = lock();
        match out {
            Ok(Ok(v)) => {
                st.done.insert(key, Arc::new(v));
                for k in &after {
                    let left = st.readers.get_mut(k).expect("counted");
                    *left -= 1;
                    if *left == 0 {
                        // The last reader has dropped its reference, so this one is the only one.
                        release(Arc::get_mut(st.done.get_mut(k).expect("an input is done")).expect("no reader left"));
                    }
                }
            }
            Ok(Err(e)) => {
                st.error.get_or_insert(e);
            }
            Err(p) => {
                st.panic.get_or_insert(p);
            }
        }
        drop(st);
        wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A diamond with a slow left branch: the outputs are the same with one worker and with
    /// three, and with one worker the tasks run in list order.
    #[test]
    fn outputs_do_not_depend_on_the_number_of_workers() {
        let go = |workers: usize| {
            let order = Mutex::new(Vec::new());
            let log = |k: &'static str| order.lock().unwrap().push(k);
            let tasks = vec![
                task("a", &[], |_| {
                    log("a");
                    Ok(2)
                }),
                task("b", &["a"], |i: &[Arc<i64>]| {
                    std::thread::sleep(Duration::from_millis(30));
                    log("b");
                    Ok(*i[0] * 10)
                }),
                task("c", &["a"], |i: &[Arc<i64>]| {
                    log("c");
                    Ok(*i[0] + 1)
                }),
                task("d", &["b", "c"], |i: &[Arc<i64>]| {
                    log("d");
                    Ok(*i[0] - *i[1])
                }),
            ];
            let released = Mutex::new(Vec::new());
            let out = run(workers, tasks, |v: &mut i64| released.lock().unwrap().push(*v), |_| {}).unwrap();
            let mut released = released.into_inner().unwrap();
            released.sort();
            // a is read by b and c, b and c by d; d, read by nobody, is never released.
            assert_eq!(released, [2, 3, 20]);
            (out, order.into_inner().unwrap())
        };
        let (one, order) = go(1);
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(one, BTreeMap::from([("a", 2), ("b", 20), ("c", 3), ("d", 17)]));
        let (three, order) = go(3);
        assert_eq!(three, one);
        // b sleeps, so with several workers c (ready at the same time) finishes first.
        assert_eq!(order, ["a", "c", "b", "d"]);
    }

    #[test]
    fn the_first_error_stops_the_graph_and_is_returned() {
        let ran = Mutex::new(Vec::new());
        let tasks = vec![
            task("a", &[], |_| Ok(1)),
            task("b", &["a"], |_: &[Arc<i32>]| bail!("stage b failed")),
            task("c", &["b"], |_: &[Arc<i32>]| {
                ran.lock().unwrap().push("c");
                Ok(3)
            }),
        ];
        let e = run(2, tasks, |_| {}, |_| {}).err().expect("b fails");
        assert_eq!(format!("{e}"), "stage b failed");
        assert!(ran.lock().unwrap().is_empty(), "a task after a failed input ran");
    }

    #[test]
    fn a_task_reading_a_later_or_unknown_task_is_rejected() {
        let tasks = vec![task("a", &["b"], |_: &[Arc<i32>]| Ok(1)), task("b", &[], |_| Ok(2))];
        let e = run(2, tasks, |_| {}, |_| {}).err().expect("a reads b, listed after it");
        assert!(format!("{e}").contains("\"a\" reads \"b\""), "{e}");
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panic_in_a_task_reaches_the_caller() {
        let tasks = vec![task("a", &[], |_: &[Arc<i32>]| panic!("boom"))];
        let _ = run(2, tasks, |_| {}, |_| {});
    }
}
