//! Property-based fuzzing of the parsers in `stratus-types`: resource names
//! ([`LocationPath`], [`QueuePath`], [`TaskPath`]), the ListQueues filter, RFC 3339 timestamps
//! and human durations.
//!
//! Every parser is fed arbitrary text (no panic; errors are INVALID_ARGUMENT with a message),
//! names built from the real templates with fuzzed segments (accepted exactly when every
//! segment obeys its rule, checked against an independent reference), and generated valid
//! values (`parse(display(x)) == x`). Cases per property: `PROPTEST_CASES` (default 4,000).

use proptest::prelude::*;
use proptest::test_runner::Config;
use stratus_types::queue::QueueFilter;
use stratus_types::time::{format_rfc3339, parse_human_duration, parse_rfc3339};
use stratus_types::{Code, LocationPath, QueuePath, Status, TaskPath};

const DEFAULT_CASES: u32 = 4_000;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        // Failures are reported with their minimal input; nothing is written to the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// The characters each kind of ID may hold, spelled out independently of the parsers.
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn ok_chars(s: &str, extra: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| ALNUM.contains(c) || extra.contains(c))
}

/// The reference rule for a full name: `projects/P/locations/L[/queues/Q[/tasks/T]]`.
fn reference_valid(segs: &[String]) -> bool {
    let keys = ["projects", "locations", "queues", "tasks"];
    let rules: [(&str, usize); 4] = [(":.-", 100), ("-", 100), ("-", 100), ("_-", 500)];
    segs.len().is_multiple_of(2)
        && (4..=8).contains(&segs.len())
        && segs
            .chunks(2)
            .enumerate()
            .all(|(i, pair)| pair[0] == keys[i] && ok_chars(&pair[1], rules[i].0, rules[i].1))
}

/// A segment that is sometimes valid, sometimes not: the ID alphabet plus the characters
/// that matter to the parsers (`/`, `:`, `_`, `.`, spaces, unicode), and lengths around the
/// limits.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9-]{1,12}",
        2 => "[A-Za-z0-9_:. -]{0,12}",
        1 => "[a-z]{1,3}(/|//|/tasks/|/queues/)[a-z]{0,3}",
        1 => "\\PC{0,8}",
        1 => Just(String::new()),
        1 => (95usize..=105).prop_map(|n| "a".repeat(n)),
        1 => (495usize..=505).prop_map(|n| "b".repeat(n)),
        1 => prop::sample::select(vec!["projects", "locations", "queues", "tasks", "..", "."])
            .prop_map(str::to_string),
    ]
}

fn project_id() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9:.-]{1,30}", "[a-z]{100}"]
}

fn location_id() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9-]{1,30}", "[a-z0-9-]{100}"]
}

fn queue_id() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9-]{1,30}", "[A-Z0-9-]{100}"]
}

fn task_id() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_-]{1,40}", "[a-z_]{500}"]
}

fn assert_invalid(e: &Status, input: &str) {
    assert_eq!(e.code, Code::InvalidArgument, "{input:?}: {e:?}");
    assert!(!e.message.trim().is_empty(), "{input:?}: empty message");
}

/// Parses `s` with every name parser; returns which ones accepted it.
fn parse_all(s: &str) -> (bool, bool, bool) {
    let loc = LocationPath::parse(s, "parent");
    let queue = QueuePath::parse(s);
    let task = TaskPath::parse(s);
    assert_eq!(queue.is_ok(), QueuePath::try_parse(s).is_some(), "{s:?}");
    for e in [
        loc.as_ref().err(),
        queue.as_ref().err(),
        task.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        assert_invalid(e, s);
    }
    if let Ok(l) = &loc {
        assert_eq!(l.to_string(), s);
    }
    if let Ok(q) = &queue {
        assert_eq!(q.to_string(), s);
    }
    if let Ok(t) = &task {
        assert_eq!(t.to_string(), s);
    }
    (loc.is_ok(), queue.is_ok(), task.is_ok())
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text never panics a name parser, and anything accepted prints back as given.
    #[test]
    fn names_survive_arbitrary_text(s in "\\PC{0,200}") {
        parse_all(&s);
    }

    /// Arbitrary bytes read as (lossy) UTF-8, including control characters and NULs.
    #[test]
    fn names_survive_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..300)) {
        parse_all(&String::from_utf8_lossy(&b));
    }

    /// Names built from the real templates with fuzzed segments are accepted exactly when the
    /// reference rule says so.
    #[test]
    fn templated_names_match_the_reference(
        segs in prop::collection::vec(segment(), 2..10),
        keyed in any::<bool>(),
    ) {
        let keys = ["projects", "locations", "queues", "tasks", "extra"];
        // Half the cases keep the fixed words in place so the ID rules are what gets tested.
        let segs: Vec<String> = if keyed {
            segs.iter()
                .enumerate()
                .flat_map(|(i, s)| [keys[i.min(4)].to_string(), s.clone()])
                .take(segs.len() * 2)
                .collect()
        } else {
            segs
        };
        let name = segs.join("/");
        let parts: Vec<String> = name.split('/').map(str::to_string).collect();
        let (loc, queue, task) = parse_all(&name);
        let want = reference_valid(&parts);
        prop_assert_eq!(loc, want && parts.len() == 4, "location {:?}", name);
        prop_assert_eq!(queue, want && parts.len() == 6, "queue {:?}", name);
        prop_assert_eq!(task, want && parts.len() == 8, "task {:?}", name);
    }

    /// Valid names round-trip: `parse(display(x)) == x`.
    #[test]
    fn valid_names_round_trip(
        p in project_id(),
        l in location_id(),
        q in queue_id(),
        t in task_id(),
    ) {
        let loc = LocationPath { project: p, location: l };
        prop_assert_eq!(LocationPath::parse(&loc.to_string(), "parent").unwrap(), loc.clone());
        let queue = loc.queue(&q);
        prop_assert_eq!(QueuePath::parse(&queue.to_string()).unwrap(), queue.clone());
        let task = queue.task(&t);
        prop_assert_eq!(TaskPath::parse(&task.to_string()).unwrap(), task);
    }

    /// One edit (insert, delete or replace a character) of a valid task name is accepted
    /// exactly when the reference accepts the result.
    #[test]
    fn mutated_names_match_the_reference(
        p in project_id(),
        q in queue_id(),
        t in task_id(),
        pos in any::<prop::sample::Index>(),
        op in 0u8..3,
        c in prop_oneof![Just('/'), Just(':'), Just('_'), Just('.'), Just(' '), Just('%'), any::<char>()],
    ) {
        let name = format!("projects/{p}/locations/l/queues/{q}/tasks/{t}");
        let mut chars: Vec<char> = name.chars().collect();
        let i = pos.index(chars.len());
        match op {
            0 => chars.insert(i, c),
            1 => { chars.remove(i); }
            _ => chars[i] = c,
        }
        let s: String = chars.into_iter().collect();
        let parts: Vec<String> = s.split('/').map(str::to_string).collect();
        let (_, queue, task) = parse_all(&s);
        let want = reference_valid(&parts);
        prop_assert_eq!(task, want && parts.len() == 8, "task {:?}", s);
        prop_assert_eq!(queue, want && parts.len() == 6, "queue {:?}", s);
    }

    /// The ListQueues filter parser never panics; errors are INVALID_ARGUMENT.
    #[test]
    fn queue_filter_survives_arbitrary_text(
        s in prop_oneof![
            "\\PC{0,80}",
            "((state|name|State|x) ?(:|=|!=|==|<) ?\"?[A-Z_a-z0-9/-]{0,20}\"?( AND | and |AND)?){0,4}",
        ],
    ) {
        if let Err(e) = QueueFilter::parse(&s) {
            assert_invalid(&e, &s);
        }
    }

    /// Well-formed filters are accepted and keep every term.
    #[test]
    fn queue_filter_accepts_valid_terms(
        terms in prop::collection::vec(
            prop_oneof![
                (prop::sample::select(vec![":", "=", "!="]),
                 prop::sample::select(vec!["RUNNING", "PAUSED", "DISABLED", "1", "2"]))
                    .prop_map(|(op, v)| format!("state {op} {v}")),
                (prop::sample::select(vec![":", "=", "!="]), "[a-z0-9/-]{1,30}")
                    .prop_map(|(op, v)| format!("name{op}\"{v}\"")),
            ],
            1..5,
        ),
    ) {
        let s = terms.join(" AND ");
        let f = QueueFilter::parse(&s).unwrap_or_else(|e| panic!("{s:?}: {e:?}"));
        prop_assert_eq!(f.states.len() + f.names.len(), terms.len());
    }

    /// RFC 3339 parsing never panics, and every printable µs timestamp round-trips.
    #[test]
    fn rfc3339_round_trips(
        us in -62_135_596_800_000_000i64..253_402_300_799_999_999,
        junk in prop_oneof![
            "\\PC{0,40}",
            "[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}T[0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        ],
    ) {
        let _ = parse_rfc3339(&junk);
        let s = format_rfc3339(us);
        prop_assert_eq!(parse_rfc3339(&s), Some(us), "{}", s);
    }

    /// Human durations never panic, never go negative, and whole numbers of a unit scale
    /// exactly.
    #[test]
    fn human_durations(
        junk in prop_oneof!["\\PC{0,20}", "[0-9.]{0,30}(ms|s|m|h|d|x)?", "[0-9]{15,40}(ms|s|d)"],
        n in 0i64..1_000_000,
        unit in prop::sample::select(vec![("ms", 1_000i64), ("s", 1_000_000), ("m", 60_000_000), ("h", 3_600_000_000), ("d", 86_400_000_000)]),
    ) {
        if let Some(v) = parse_human_duration(&junk) {
            prop_assert!(v >= 0, "{junk:?} → {v}");
        }
        prop_assert_eq!(parse_human_duration(&format!("{n}{}", unit.0)), Some(n * unit.1));
    }
}
