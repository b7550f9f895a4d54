//! Drawing a safety world: the task table, then pairs, SFT rows, corpus documents and OOD
//! prompts from it.

use super::*;

fn refusal(rng: &mut SplitMix64) -> String {
    let r = REFUSALS[rng.below(REFUSALS.len())];
    if rng.below(2) == 0 {
        r.to_string()
    } else {
        format!("{r} {}", REDIRECTS[rng.below(REDIRECTS.len())])
    }
}

impl SafetyTable {
    pub(crate) fn build(spec: &WorldSpec, words: Vec<String>, rng: &mut SplitMix64) -> SafetyTable {
        let z = sizes(spec);
        let word_set: BTreeSet<String> = words.iter().cloned().collect();
        let mut it = words.into_iter();
        let mut take = |n: usize| -> Vec<String> { it.by_ref().take(n).collect() };
        let verbs = [take(z.verbs_b), take(z.verbs_h)];
        let objects = take(z.objects);
        let ood_objects = take(spec.n_ood_tasks);
        let mut rest = take(usize::MAX);
        let step_objects = rest.split_off(rest.len() / 2);
        let actions = rest;
        // Training names: the tasks of a kind take its verbs in turn (so at most TASKS_PER_VERB
        // each), and a verb never repeats an object.
        let mut kinds: Vec<bool> = (0..spec.n_tasks).map(|i| i < z.n_h).collect();
        rng.shuffle(&mut kinds);
        let mut ood_kinds: Vec<bool> = (0..spec.n_ood_tasks).map(|i| i < z.o_h).collect();
        rng.shuffle(&mut ood_kinds);
        let mut objects_of: [Vec<Vec<&String>>; 2] = [0, 1].map(|k| {
            (0..verbs[k].len())
                .map(|_| {
                    let mut o: Vec<&String> = objects.iter().collect();
                    rng.shuffle(&mut o);
                    o
                })
                .collect()
        });
        let mut seen_of_kind = [0usize; 2];
        let mut tasks = Vec::with_capacity(kinds.len() + ood_kinds.len());
        for &harmful in &kinds {
            let k = harmful as usize;
            let v = seen_of_kind[k] % verbs[k].len();
            seen_of_kind[k] += 1;
            let object = objects_of[k][v]
                .pop()
                .expect("objects >= TASKS_PER_VERB")
                .clone();
            tasks.push(Task {
                verb: verbs[k][v].clone(),
                object,
                harmful,
                held_out: false,
                steps: Vec::new(),
            });
        }
        for (j, &harmful) in ood_kinds.iter().enumerate() {
            let pool = &verbs[harmful as usize];
            let verb = pool[rng.below(pool.len())].clone();
            tasks.push(Task {
                verb,
                object: ood_objects[j].clone(),
                harmful,
                held_out: true,
                steps: Vec::new(),
            });
        }
        let mut step_owner = BTreeMap::new();
        for (ti, task) in tasks.iter_mut().enumerate() {
            // Terminates: at most half of the grid is ever taken (`Sizes::side`).
            while task.steps.len() < spec.steps_per_task {
                let s = format!(
                    "{} {}",
                    actions[rng.below(actions.len())],
                    step_objects[rng.below(step_objects.len())]
                );
                if !step_owner.contains_key(&s) {
                    step_owner.insert(s.clone(), ti);
                    task.steps.push(s);
                }
            }
        }
        let by_name = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("{} {}", t.verb, t.object), i))
            .collect();
        let train_by_kind = [false, true].map(|h| {
            (0..spec.n_tasks)
                .filter(|&i| tasks[i].harmful == h)
                .collect()
        });
        SafetyTable {
            tasks,
            n_train: spec.n_tasks,
            steps_per_task: spec.steps_per_task,
            words: word_set,
            actions,
            step_objects,
            by_name,
            step_owner,
            train_by_kind,
        }
    }

    /// A training template other than the task's SFT one.
    fn pair_prompt(&self, ti: usize, rng: &mut SplitMix64) -> String {
        let sft = ti % TRAIN_TEMPLATES.len();
        let r = rng.below(TRAIN_TEMPLATES.len() - 1);
        self.task_prompt(ti, TRAIN_TEMPLATES[if r >= sft { r + 1 } else { r }])
    }

    /// A step that is none of task `ti`'s steps and not in `avoid`: half the time a step of another
    /// training task of the same kind (plausible), else step words recombined into a non-step.
    pub(super) fn wrong_step(&self, ti: usize, avoid: &[String], rng: &mut SplitMix64) -> String {
        let peers = &self.train_by_kind[self.tasks[ti].harmful as usize];
        // Terminates: at least half the recombinations are non-steps (`Sizes::side`).
        loop {
            let cand = if peers.len() > 1 && rng.below(2) == 0 {
                let other = peers[rng.below(peers.len())];
                if other == ti {
                    continue;
                }
                self.tasks[other].steps[rng.below(self.steps_per_task)].clone()
            } else {
                let c = format!(
                    "{} {}",
                    self.actions[rng.below(self.actions.len())],
                    self.step_objects[rng.below(self.step_objects.len())]
                );
                if self.step_owner.contains_key(&c) {
                    continue;
                }
                c
            };
            if !avoid.contains(&cand) {
                return cand;
            }
        }
    }

    /// Task `ti`'s steps with `k` of them, at random positions, replaced by wrong steps.
    fn steps_with_wrong(&self, ti: usize, k: usize, rng: &mut SplitMix64) -> Vec<String> {
        let mut s = self.tasks[ti].steps.clone();
        let mut pos: Vec<usize> = (0..s.len()).collect();
        rng.shuffle(&mut pos);
        for &p in &pos[..k] {
            s[p] = self.wrong_step(ti, &s, rng);
        }
        s
    }

    pub(crate) fn draft_pair(&self, spec: &WorldSpec, rng: &mut SplitMix64) -> Draft {
        let s = self.steps_per_task;
        let harmful = rng.next_f64() < spec.harmful_pair_share;
        let pool = &self.train_by_kind[harmful as usize];
        let ti = pool[rng.below(pool.len())];
        let prompt = self.pair_prompt(ti, rng);
        let (a, b, edit_step) = if harmful {
            // A compliance gives at least one harmful step.
            let k = rng.below(s);
            (
                refusal(rng),
                answer(&self.steps_with_wrong(ti, k, rng)),
                None,
            )
        } else if rng.next_f64() < spec.benign_refusal_pair_rate {
            let k = rng.below(s + 1);
            (
                refusal(rng),
                answer(&self.steps_with_wrong(ti, k, rng)),
                None,
            )
        } else if spec.correction == "minimal_edit" {
            // Flip the correctness of one step: the golds differ by STEP_CORRECT + STEP_WRONG.
            let a = self.steps_with_wrong(ti, rng.below(s + 1), rng);
            let i = rng.below(s);
            let mut b = a.clone();
            let correct = &self.tasks[ti].steps[i];
            b[i] = if &a[i] == correct {
                self.wrong_step(ti, &a, rng)
            } else {
                correct.clone()
            };
            (answer(&a), answer(&b), Some(i))
        } else {
            // Two independent answers with different numbers of wrong steps.
            let ka = rng.below(s + 1);
            let kb = (ka + 1 + rng.below(s)) % (s + 1);
            (
                answer(&self.steps_with_wrong(ti, ka, rng)),
                answer(&self.steps_with_wrong(ti, kb, rng)),
                None,
            )
        };
        Draft {
            prompt,
            a,
            b,
            kind: if harmful { "harmful" } else { "benign" },
            edit_step,
        }
    }

    /// A training task's SFT prompt (its reserved template) with the gold-best response.
    pub(crate) fn draft_sft(&self, rng: &mut SplitMix64) -> (String, String) {
        let ti = rng.below(self.n_train);
        let prompt = self.task_prompt(ti, TRAIN_TEMPLATES[ti % TRAIN_TEMPLATES.len()]);
        let task = &self.tasks[ti];
        (
            prompt,
            if task.harmful {
                refusal(rng)
            } else {
                answer(&task.steps)
            },
        )
    }

    /// A training prompt and two responses: mostly the correct answer (harmful tasks too: the base
    /// model knows the steps, RLHF is what should teach refusing), half the time repeated verbatim.
    pub(crate) fn draft_corpus(&self, rng: &mut SplitMix64) -> String {
        let ti = rng.below(self.n_train);
        let prompt = self.task_prompt(ti, TRAIN_TEMPLATES[rng.below(TRAIN_TEMPLATES.len())]);
        let u = rng.next_f64();
        let r1 = if u < 0.6 {
            answer(&self.tasks[ti].steps)
        } else if u < 0.8 {
            refusal(rng)
        } else {
            answer(&self.steps_with_wrong(ti, 1, rng))
        };
        let r2 = if rng.below(2) == 0 {
            r1.clone()
        } else {
            answer(&self.steps_with_wrong(ti, rng.below(self.steps_per_task + 1), rng))
        };
        format!("{prompt} {r1} {r2}")
    }

    /// `ood_tasks`: held-out tasks with training templates; `ood_templates`: training tasks with
    /// held-out templates. Each a seeded shuffle of all combinations, cut to `cap`.
    pub(crate) fn ood_prompts(
        &self,
        cap: usize,
        rng: &mut SplitMix64,
    ) -> BTreeMap<String, Vec<String>> {
        let held: Vec<String> = (self.n_train..self.tasks.len())
            .flat_map(|ti| TRAIN_TEMPLATES.iter().map(move |t| self.task_prompt(ti, t)))
            .collect();
        let tmpl: Vec<String> = (0..self.n_train)
            .flat_map(|ti| OOD_TEMPLATES.iter().map(move |t| self.task_prompt(ti, t)))
            .collect();
        let mut out = BTreeMap::new();
        for (name, mut v) in [("ood_tasks", held), ("ood_templates", tmpl)] {
            if !v.is_empty() {
                rng.shuffle(&mut v);
                v.truncate(cap);
                out.insert(name.to_string(), v);
            }
        }
        out
    }
}
