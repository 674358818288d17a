//! Coverage: which of the lab's HITs keep excluded workers out, which of
//! their HIT types reach the queue, and how an unguarded HIT is guarded.
//!
//! A HIT is sorted by its `QualificationRequirements` against the pool's
//! qualification:
//! - [`Class::Ours`]: it requires the pool's qualification with `DoesNotExist`;
//! - [`Class::OtherList`]: it requires some other qualification with
//!   `DoesNotExist` (another pool's list, say): left alone;
//! - [`Class::Unguarded`]: no `DoesNotExist` requirement at all, so the
//!   workers the lab excluded can take it.
//!
//! MTurk shows whatever other tools posted, so odd values (a comparator this
//! version does not know, a value comparator without values, a locale
//! requirement) are sorted like any other, never refused, and counted.
//!
//! `coverage` (the CLI) lists the sorting; `coverage --fix` and the watch's
//! `GuardUnguardedHits` add the pool's requirement to live unguarded HITs
//! ([`plan_fix`], [`fix`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_mturk::types::Comparator;
use serde::Serialize;

use crate::ids::{HitId, HitTypeId, QualificationTypeId};
use crate::ledger::{self, HistoryLeftOut, Ledger, LedgerError, SubscribedBy, Subscription};
use crate::mturk::{Hit, Mturk, MturkError, Requirement};
use crate::ops::subscribe;

/// MTurk's system Locale qualification.
pub const LOCALE_QUALIFICATION: &str = "00000000000000000071";

/// A HIT takes at most this many requirements, so one that has them all
/// cannot take the pool's as well.
pub const MAX_REQUIREMENTS: usize = 10;

/// The pool's lists: its own qualification, the lab's earlier exclusion
/// qualifications carried into it (`adopt --from-qualification`), and the
/// HITs a guard moved under its requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLists {
    pub own: QualificationTypeId,
    pub carried: Vec<QualificationTypeId>,
    /// HITs `coverage --fix` or the watch's guard moved under the pool's
    /// requirement: a requirement added later does not make their earlier
    /// submissions the pool's.
    pub moved: BTreeSet<HitId>,
}

impl PoolLists {
    /// The pool's own qualification only.
    pub fn own(own: QualificationTypeId) -> PoolLists {
        PoolLists {
            own,
            carried: Vec::new(),
            moved: BTreeSet::new(),
        }
    }

    /// The pool's qualification and what the ledger's `LISTS` item holds.
    /// Read after listing HITs: a guard records a HIT as moved before it
    /// moves it, so every HIT listed in its new HIT type is known as moved.
    pub async fn read(
        ledger: &Ledger,
        own: &QualificationTypeId,
    ) -> Result<PoolLists, LedgerError> {
        let lists = ledger.lists().await?;
        Ok(PoolLists {
            own: own.clone(),
            carried: lists.carried,
            moved: lists.moved,
        })
    }

    fn carries(&self, qualification: &str) -> bool {
        self.carried.iter().any(|q| q.as_str() == qualification)
    }
}

/// How a HIT keeps the lab's excluded workers out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// It requires the pool's qualification with DoesNotExist.
    Ours,
    /// It requires another qualification with DoesNotExist (another list).
    OtherList,
    /// It requires an earlier list carried into the pool with DoesNotExist,
    /// not the pool's own: its workers are the pool's (the watch covers it,
    /// history included), but workers the pool excluded since can take it.
    Carried,
    /// No DoesNotExist requirement at all: excluded workers can take it.
    Unguarded,
}

impl Class {
    /// As `coverage` prints it.
    pub fn label(self) -> &'static str {
        match self {
            Class::Ours => "ours",
            Class::OtherList => "another list's",
            Class::Carried => "an earlier list's",
            Class::Unguarded => "unguarded",
        }
    }

    /// Workers the pool excluded can take it: it needs the pool's
    /// requirement (`coverage --fix`), and counts as unguarded.
    pub fn admits_excluded(self) -> bool {
        matches!(self, Class::Unguarded | Class::Carried)
    }

    /// Its earlier workers belong to the pool (unless a guard moved it here).
    pub fn brings_history(self) -> bool {
        matches!(self, Class::Ours | Class::Carried)
    }
}

/// A HIT's class, and how many of its requirements hold odd values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sorted {
    pub class: Class,
    pub odd_requirements: usize,
}

/// Whether one requirement holds a value worth counting: one this version
/// does not know, one MTurk would not accept as written, or a locale
/// requirement (legitimate, but it narrows who can see the HIT, so the lab
/// may want to know).
pub fn is_odd(r: &Requirement) -> bool {
    let values = r.integer_values.len() + r.locale_values.len();
    let values_fit = match r.comparator.as_str() {
        "Exists" | "DoesNotExist" => values == 0,
        "In" | "NotIn" => values > 0,
        c if Comparator::values().contains(&c) => values == 1,
        _ => false,
    };
    !values_fit
        || r.qualification_type_id.trim().is_empty()
        || r.qualification_type_id == LOCALE_QUALIFICATION
        || !r.locale_values.is_empty()
}

/// Sorts a HIT by its requirements against the pool's qualification.
/// Only `DoesNotExist` keeps the qualification's holders out: value
/// comparators also fail for workers who lack the qualification, so no
/// lab writes "not excluded" with them (see DESIGN.md).
pub fn classify(requirements: &[Requirement], lists: &PoolLists) -> Sorted {
    let does_not_exist = |r: &&Requirement| r.comparator == "DoesNotExist";
    let class = if requirements
        .iter()
        .filter(does_not_exist)
        .any(|r| r.qualification_type_id == lists.own.as_str())
    {
        Class::Ours
    } else if requirements
        .iter()
        .filter(does_not_exist)
        .any(|r| lists.carries(&r.qualification_type_id))
    {
        Class::Carried
    } else if requirements.iter().any(|r| does_not_exist(&r)) {
        Class::OtherList
    } else {
        Class::Unguarded
    };
    Sorted {
        class,
        odd_requirements: requirements.iter().filter(|r| is_odd(r)).count(),
    }
}

/// The requirement `coverage --fix` adds: the pool's qualification must not
/// exist, guarding discovery, preview and accept.
pub fn pool_requirement(pool: &QualificationTypeId) -> Requirement {
    Requirement {
        qualification_type_id: pool.to_string(),
        comparator: "DoesNotExist".into(),
        actions_guarded: Some("DiscoverPreviewAndAccept".into()),
        ..Requirement::default()
    }
}

/// How many HITs of each class, and how much was odd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub hits: usize,
    pub ours: usize,
    pub other_list: usize,
    /// Guarded only by an earlier list carried into the pool.
    pub carried: usize,
    pub unguarded: usize,
    /// Assignable and open to workers the pool excluded (unguarded, or
    /// guarded only by a carried list): the `UnguardedHits` metric.
    pub live_unguarded: usize,
    pub odd_requirements: usize,
    pub hits_with_odd_requirements: usize,
}

impl Counts {
    pub fn add(&mut self, hit: &Hit, sorted: Sorted) {
        self.hits += 1;
        match sorted.class {
            Class::Ours => self.ours += 1,
            Class::OtherList => self.other_list += 1,
            Class::Carried => self.carried += 1,
            Class::Unguarded => self.unguarded += 1,
        }
        if sorted.class.admits_excluded() && hit.status.is_offered() {
            self.live_unguarded += 1;
        }
        self.odd_requirements += sorted.odd_requirements;
        if sorted.odd_requirements > 0 {
            self.hits_with_odd_requirements += 1;
        }
    }
}

/// The HITs MTurk lists that may have submissions (disposed ones left
/// out), each with its class.
pub fn sort_hits(hits: Vec<Hit>, lists: &PoolLists) -> (Vec<(Hit, Sorted)>, Counts) {
    let mut counts = Counts::default();
    let sorted: Vec<(Hit, Sorted)> = hits
        .into_iter()
        .filter(|h| h.status.may_have_submissions())
        .map(|h| {
            let s = classify(&h.requirements, lists);
            counts.add(&h, s);
            (h, s)
        })
        .collect();
    (sorted, counts)
}

/// A HIT type's subscription, as `coverage` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionLine {
    pub active: bool,
    pub by: SubscribedBy,
    pub subscribed_at: Option<String>,
    /// A covering subscription whose earlier submissions are not all excluded yet.
    pub backfill_due: bool,
    /// What its last backfill left out as the lab's history (`adopt`).
    #[serde(skip_serializing_if = "HistoryLeftOut::is_empty")]
    pub history_left_out: HistoryLeftOut,
}

impl From<&Subscription> for SubscriptionLine {
    fn from(s: &Subscription) -> Self {
        SubscriptionLine {
            active: s.active,
            by: s.subscribed_by,
            subscribed_at: s.subscribed_at.map(ledger::stamp),
            backfill_due: s.backfill_due,
            history_left_out: s.history_left_out,
        }
    }
}

/// One live HIT, as `coverage` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct HitLine {
    pub hit_id: HitId,
    pub hit_type_id: HitTypeId,
    pub title: Option<String>,
    pub class: Class,
    pub odd_requirements: usize,
    /// `None`: the ledger has no record of its HIT type (not subscribed).
    pub subscription: Option<SubscriptionLine>,
    /// The HIT itself, for a fix.
    #[serde(skip)]
    pub hit: Hit,
}

/// What `coverage` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Survey {
    pub qualification_type_id: QualificationTypeId,
    /// Every HIT MTurk lists (live or not).
    pub counts: Counts,
    /// The live (Assignable) HITs, unguarded first.
    pub live: Vec<HitLine>,
    /// Earlier lists carried into the pool: HITs they guard are ours.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub carried_lists: Vec<QualificationTypeId>,
    /// What the watch left out as the lab's history, over every HIT type
    /// (live HITs or not).
    pub history_left_out: HistoryLeftOut,
    #[serde(skip)]
    pub lists: PoolLists,
}

/// Lists the lab's HITs (every page, through the one limiter) and the
/// ledger's subscriptions, and sorts the live HITs.
pub async fn survey(
    mturk: &Mturk,
    ledger: &Ledger,
    pool: &QualificationTypeId,
) -> Result<Survey, SurveyError> {
    let hits = mturk.hits().await?;
    let subscriptions: HashMap<HitTypeId, Subscription> = ledger
        .subscriptions()
        .await?
        .into_iter()
        .map(|s| (s.hit_type_id.clone(), s))
        .collect();
    let lists = PoolLists::read(ledger, pool).await?;
    let mut history_left_out = HistoryLeftOut::default();
    for s in subscriptions.values() {
        history_left_out.add(s.history_left_out);
    }
    let (sorted, counts) = sort_hits(hits, &lists);
    let mut live: Vec<HitLine> = sorted
        .into_iter()
        .filter(|(h, _)| h.status.is_offered())
        .map(|(h, s)| HitLine {
            hit_id: h.hit_id.clone(),
            hit_type_id: h.hit_type_id.clone(),
            title: h.title.clone(),
            class: s.class,
            odd_requirements: s.odd_requirements,
            subscription: subscriptions
                .get(&h.hit_type_id)
                .map(SubscriptionLine::from),
            hit: h,
        })
        .collect();
    // Unguarded first: they need the lab; stable within a class.
    live.sort_by_key(|l| std::cmp::Reverse(l.class.admits_excluded()));
    Ok(Survey {
        qualification_type_id: pool.clone(),
        counts,
        live,
        carried_lists: lists.carried.clone(),
        history_left_out,
        lists,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SurveyError {
    #[error(transparent)]
    Mturk(#[from] MturkError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// One HIT type to make, and the live HITs to move to it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedType {
    /// The HIT type the HITs have now.
    pub hit_type_id: HitTypeId,
    pub title: Option<String>,
    pub hit_ids: Vec<HitId>,
    #[serde(skip)]
    hits: Vec<Hit>,
}

/// A live unguarded HIT that cannot be guarded this way, and why.
#[derive(Debug, Clone, Serialize)]
pub struct CannotFix {
    pub hit_id: HitId,
    pub hit_type_id: HitTypeId,
    pub reason: String,
}

/// What `coverage --fix` would do: for each HIT type of live unguarded HITs,
/// a HIT type with the same properties plus the pool's requirement.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FixPlan {
    pub hit_types: Vec<PlannedType>,
    pub cannot: Vec<CannotFix>,
}

impl FixPlan {
    pub fn hits(&self) -> usize {
        self.hit_types.iter().map(|t| t.hit_ids.len()).sum()
    }
}

/// Plans the fix of every live unguarded HIT among `hits`, grouped by HIT
/// type (all HITs of one type share its properties, so one new type each).
pub fn plan_fix<'a>(hits: impl IntoIterator<Item = &'a Hit>, lists: &PoolLists) -> FixPlan {
    let mut plan = FixPlan::default();
    let mut by_type: BTreeMap<HitTypeId, PlannedType> = BTreeMap::new();
    for hit in hits {
        if !hit.status.is_offered() || !classify(&hit.requirements, lists).class.admits_excluded() {
            continue;
        }
        let cannot = |reason: &str| CannotFix {
            hit_id: hit.hit_id.clone(),
            hit_type_id: hit.hit_type_id.clone(),
            reason: reason.to_owned(),
        };
        if hit.properties.is_none() {
            plan.cannot.push(cannot(
                "MTurk did not list all of its properties (title, description, reward, assignment duration); add the requirement on the requester website",
            ));
            continue;
        }
        if hit.requirements.len() >= MAX_REQUIREMENTS {
            plan.cannot.push(cannot(
                "it already has 10 requirements, MTurk's most; remove one on the requester website, then run coverage --fix again",
            ));
            continue;
        }
        let t = by_type
            .entry(hit.hit_type_id.clone())
            .or_insert_with(|| PlannedType {
                hit_type_id: hit.hit_type_id.clone(),
                title: hit.title.clone(),
                hit_ids: Vec::new(),
                hits: Vec::new(),
            });
        t.hit_ids.push(hit.hit_id.clone());
        t.hits.push(hit.clone());
    }
    plan.hit_types = by_type.into_values().collect();
    plan
}

/// What fixing one HIT came to.
#[derive(Debug, Clone, Serialize)]
pub struct Fixed {
    pub hit_id: HitId,
    pub old_hit_type_id: HitTypeId,
    /// The new HIT type, once MTurk made it.
    pub new_hit_type_id: Option<HitTypeId>,
    /// The HIT now requires the pool's qualification.
    pub guarded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FixReport {
    pub hits: Vec<Fixed>,
    /// The new HIT types and what subscribing each came to.
    pub subscribed: Vec<subscribe::HitTypeOutcome>,
    /// HIT types the lab had subscribed already that HITs were moved into:
    /// their backfill is marked due again, for the moved HITs' earlier
    /// submissions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub marked_due: Vec<MarkedDue>,
}

/// A subscribed HIT type whose backfill a fix marked due again.
#[derive(Debug, Clone, Serialize)]
pub struct MarkedDue {
    pub hit_type_id: HitTypeId,
    /// The `due_generation` this fix wrote.
    #[serde(skip)]
    pub due_generation: u64,
}

impl FixReport {
    pub fn guarded(&self) -> usize {
        self.hits.iter().filter(|h| h.guarded).count()
    }

    pub fn failed(&self) -> usize {
        self.hits.iter().filter(|h| !h.guarded).count()
            + self.subscribed.iter().filter(|s| !s.subscribed).count()
    }
}

/// Carries out a plan: for each HIT type, `CreateHITType` with its
/// properties and requirements plus the pool's, `UpdateHITTypeOfHIT` for
/// each of its HITs, then the new type is subscribed (as made `by` the lab
/// or the watch, its backfill due: the moved HITs keep their submissions).
/// A new HIT type that turns out to be one the lab subscribed already (same
/// properties and requirements) keeps that subscription, with its backfill
/// marked due again for the same reason; one the lab unsubscribed stays so.
/// MTurk refusing one HIT type or HIT is its outcome; the error is the
/// ledger failing.
pub async fn fix(
    mturk: &Mturk,
    ledger: &Ledger,
    pool: &QualificationTypeId,
    plan: &FixPlan,
    queue_url: &str,
    by: SubscribedBy,
) -> Result<FixReport, LedgerError> {
    let mut report = FixReport::default();
    for planned in &plan.hit_types {
        let Some(first) = planned.hits.first() else {
            continue;
        };
        let Some(properties) = &first.properties else {
            continue;
        };
        let mut requirements = first.requirements.clone();
        requirements.push(pool_requirement(pool));
        let made = mturk.create_hit_type(properties, &requirements).await;
        let new_type = match made {
            Ok(t) => t,
            Err(e) => {
                for hit in &planned.hits {
                    report.hits.push(Fixed {
                        hit_id: hit.hit_id.clone(),
                        old_hit_type_id: planned.hit_type_id.clone(),
                        new_hit_type_id: None,
                        guarded: false,
                        error: Some(e.to_string()),
                    });
                }
                continue;
            }
        };
        // Recorded before the move: whatever fails after it, the HIT is
        // known as moved, and its history stays the lab's.
        ledger.record_moved_hits(&planned.hit_ids).await?;
        let mut moved = Vec::new();
        for hit in &planned.hits {
            let result = mturk.update_hit_type_of_hit(&hit.hit_id, &new_type).await;
            if result.is_ok() {
                moved.push(hit.hit_id.clone());
            }
            report.hits.push(Fixed {
                hit_id: hit.hit_id.clone(),
                old_hit_type_id: planned.hit_type_id.clone(),
                new_hit_type_id: Some(new_type.clone()),
                guarded: result.is_ok(),
                error: result.err().map(|e| e.to_string()),
            });
        }
        if !moved.is_empty() {
            // The lab's own subscription of that type, if any, stands; the
            // submissions the moved HITs bring along may have gone
            // unnotified under their old type.
            match ledger.subscription(&new_type).await? {
                None => report.subscribed.push(
                    subscribe::subscribe_covering(mturk, ledger, &new_type, queue_url, by).await?,
                ),
                Some(sub) if sub.active => {
                    if let Some(due_generation) = ledger.record_backfill_due(&new_type).await? {
                        report.marked_due.push(MarkedDue {
                            hit_type_id: new_type.clone(),
                            due_generation,
                        });
                    }
                }
                Some(_) => {}
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mturk::Locale;
    use proptest::prelude::*;

    fn pool() -> PoolLists {
        PoolLists::own(QualificationTypeId::parse("3POOLQUAL").unwrap())
    }

    fn req(qual: &str, comparator: &str) -> Requirement {
        Requirement {
            qualification_type_id: qual.into(),
            comparator: comparator.into(),
            ..Requirement::default()
        }
    }

    fn hit(status: &str, requirements: Vec<Requirement>) -> Hit {
        Hit {
            hit_id: HitId::parse("3HIT").unwrap(),
            hit_type_id: HitTypeId::parse("3TYPE").unwrap(),
            title: Some("A study".into()),
            status: status.into(),
            requirements,
            properties: Some(crate::mturk::HitProperties {
                title: "A study".into(),
                description: "d".into(),
                reward: "0.50".into(),
                assignment_duration_secs: 3600,
                auto_approval_delay_secs: None,
                keywords: None,
            }),
        }
    }

    #[test]
    fn the_pools_does_not_exist_is_ours_whatever_else_is_there() {
        let class = |reqs: Vec<Requirement>| classify(&reqs, &pool()).class;
        assert_eq!(class(vec![req("3POOLQUAL", "DoesNotExist")]), Class::Ours);
        assert_eq!(
            class(vec![
                req("3OTHERLIST", "DoesNotExist"),
                req("3POOLQUAL", "DoesNotExist")
            ]),
            Class::Ours
        );
        assert_eq!(
            class(vec![req("3OTHERLIST", "DoesNotExist")]),
            Class::OtherList
        );
        // Requiring the pool's qualification any other way keeps no one out.
        assert_eq!(class(vec![req("3POOLQUAL", "Exists")]), Class::Unguarded);
        let mut not_one = req("3POOLQUAL", "NotEqualTo");
        not_one.integer_values = vec![1];
        assert_eq!(class(vec![not_one]), Class::Unguarded);
        assert_eq!(class(vec![]), Class::Unguarded);
    }

    #[test]
    fn odd_values_are_sorted_and_counted() {
        let unknown = req("3POOLQUAL", "Resembles");
        let empty_in = req("3X", "In");
        let mut locale = req(LOCALE_QUALIFICATION, "EqualTo");
        locale.locale_values = vec![Locale {
            country: "US".into(),
            subdivision: None,
        }];
        let blank = req("", "DoesNotExist");
        let fine = req("3POOLQUAL", "DoesNotExist");
        let sorted = classify(
            &[unknown.clone(), empty_in, locale, blank, fine.clone()],
            &pool(),
        );
        assert_eq!(sorted.class, Class::Ours);
        assert_eq!(sorted.odd_requirements, 4);
        // An unknown comparator on the pool's qualification guards nothing we know of.
        assert_eq!(classify(&[unknown], &pool()).class, Class::Unguarded);
        assert_eq!(classify(&[fine], &pool()).odd_requirements, 0);
    }

    #[test]
    fn counts_live_unguarded_only_when_assignable() {
        let (_, counts) = sort_hits(
            vec![
                hit("Assignable", vec![]),
                hit("Reviewable", vec![]),
                hit("Assignable", vec![req("3POOLQUAL", "DoesNotExist")]),
                hit("Unassignable", vec![req("3OTHER", "DoesNotExist")]),
                hit("Disposed", vec![]),
                // Listed (it may have submissions), not offered.
                hit("Reviewing", vec![]),
            ],
            &pool(),
        );
        assert_eq!(
            counts,
            Counts {
                hits: 5,
                ours: 1,
                other_list: 1,
                carried: 0,
                unguarded: 3,
                live_unguarded: 1,
                odd_requirements: 0,
                hits_with_odd_requirements: 0,
            }
        );
    }

    #[test]
    fn a_fix_is_planned_for_live_unguarded_hits_that_can_take_the_requirement() {
        let full: Vec<Requirement> = (0..10).map(|i| req(&format!("3Q{i}"), "Exists")).collect();
        let mut no_properties = hit("Assignable", vec![]);
        no_properties.properties = None;
        let hits = [
            hit("Assignable", vec![]),
            hit("Reviewable", vec![]),
            hit("Assignable", vec![req("3POOLQUAL", "DoesNotExist")]),
            hit("Assignable", full),
            no_properties,
        ];
        let plan = plan_fix(&hits, &pool());
        assert_eq!(plan.hits(), 1);
        assert_eq!(plan.hit_types.len(), 1);
        assert_eq!(plan.cannot.len(), 2);
        assert!(plan.cannot[0].reason.contains("10 requirements"));
    }

    #[test]
    fn a_hit_guarded_only_by_a_carried_list_counts_as_unguarded_and_is_planned_for_a_fix() {
        let lists = PoolLists {
            carried: vec![QualificationTypeId::parse("3OLDLIST").unwrap()],
            ..pool()
        };
        let hits = [
            hit("Assignable", vec![req("3OLDLIST", "DoesNotExist")]),
            hit(
                "Assignable",
                vec![
                    req("3OLDLIST", "DoesNotExist"),
                    req("3POOLQUAL", "DoesNotExist"),
                ],
            ),
        ];
        let (sorted, counts) = sort_hits(hits.to_vec(), &lists);
        assert_eq!(sorted[0].1.class, Class::Carried);
        assert_eq!(sorted[1].1.class, Class::Ours);
        assert_eq!((counts.carried, counts.live_unguarded), (1, 1));
        let plan = plan_fix(&hits, &lists);
        assert_eq!(plan.hits(), 1, "{plan:?}");
    }

    fn any_requirement() -> impl Strategy<Value = Requirement> {
        let qual = prop_oneof![
            Just("3POOLQUAL".to_owned()),
            Just("3OTHERLIST".to_owned()),
            Just(LOCALE_QUALIFICATION.to_owned()),
            Just(String::new()),
            "[A-Z0-9]{1,30}",
        ];
        let comparator = prop_oneof![
            proptest::sample::select(Comparator::values()).prop_map(str::to_owned),
            ".{0,12}",
        ];
        (
            qual,
            comparator,
            proptest::collection::vec(any::<i32>(), 0..3),
            proptest::collection::vec("[A-Z]{2}", 0..2),
            proptest::option::of(".{0,30}"),
        )
            .prop_map(|(q, c, ints, countries, actions)| Requirement {
                qualification_type_id: q,
                comparator: c,
                integer_values: ints,
                locale_values: countries
                    .into_iter()
                    .map(|country| Locale {
                        country,
                        subdivision: None,
                    })
                    .collect(),
                actions_guarded: actions,
            })
    }

    proptest! {
        /// Whatever MTurk lists, a HIT gets exactly one class, Ours exactly
        /// when a DoesNotExist names the pool, and no more odd requirements
        /// than it has.
        #[test]
        fn every_hit_gets_one_class(reqs in proptest::collection::vec(any_requirement(), 0..12)) {
            let sorted = classify(&reqs, &pool());
            prop_assert!(sorted.odd_requirements <= reqs.len());
            let ours = reqs.iter().any(|r| r.comparator == "DoesNotExist" && r.qualification_type_id == "3POOLQUAL");
            let any_dne = reqs.iter().any(|r| r.comparator == "DoesNotExist");
            prop_assert_eq!(sorted.class == Class::Ours, ours);
            prop_assert_eq!(sorted.class == Class::Unguarded, !any_dne);
        }
    }
}
