//! Hostile-input tests: the parser and evaluator must return errors, never panic, hang or
//! overflow the stack, whatever a deployment contains.

use edgemodule_core::{Message, SystemProperty};

use super::{select, MessageSource, Route};

/// A small deterministic generator (xorshift), so failures reproduce without a rand seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "FROM /* INTO $upstream",
    "SELECT * FROM /messages/modules/sensor/outputs/temp WHERE $body.a.b[0] > 3.5e1 AND NOT is_defined(x) INTO BrokeredEndpoint(\"/modules/f/inputs/i\")",
    "FROM /messages/* WHERE (a = 'x\\'y' OR {$dt-subject} <> \"\\u00e9\") ?? -0x1F INTO $upstream",
    "FROM /twinChangeNotifications WHERE twin_change_includes(properties.reported.a) INTO $upstream",
    "FROM /messages/modules/m/* WHERE substring(concat(a, b, 'c'), 1, 2) || lower($messageId) = 'q' /* c */ INTO BrokeredEndpoint('/modules/m/inputs/x')",
];

/// Characters that exercise every lexer branch, including multi-byte ones.
const ALPHABET: &[char] = &[
    'a', 'Z', '_', '0', '9', 'x', 'e', '.', '$', '{', '}', '(', ')', '[', ']', '\'', '"', '\\', 'u', '/', '*', '-',
    '+', '%', '|', '?', '<', '>', '=', '!', ',', ' ', '\t', '\n', 'é', '😀', '\u{0}', ';',
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 if at < chars.len() => chars[at] = ALPHABET[rng.below(ALPHABET.len())],
            2 => chars.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

fn test_message() -> Message {
    let mut m = Message::new(r#"{"a":{"b":[40]}}"#)
        .with_content_type("application/json")
        .with_content_encoding("utf-8")
        .with_property("a", "x'y")
        .with_property("b", "2");
    m.set_system(SystemProperty::ConnectionModuleId, Some("m".into()));
    m
}

/// Parses and, if that worked, evaluates: either way it must simply return.
fn exercise(text: &str) {
    match Route::parse("r", text, None, None) {
        Ok(route) => {
            let msg = test_message();
            let source = MessageSource::Module { module: "m".into(), output: Some("o".into()) };
            let _ = route.matches(&source, &msg);
            let _ = select(std::slice::from_ref(&route), &source, &msg);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

#[test]
fn seeds_parse() {
    for seed in SEEDS {
        assert!(Route::parse("r", seed, None, None).is_ok(), "{seed}");
    }
}

#[test]
fn mutated_routes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..20_000 {
        let seed = SEEDS[i % SEEDS.len()];
        exercise(&mutate(&mut rng, seed));
    }
}

#[test]
fn random_strings_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let len = rng.below(60);
        let text: String = (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect();
        exercise(&text);
        exercise(&format!("FROM /* WHERE {text} INTO $upstream"));
    }
}

#[test]
fn every_prefix_of_the_seeds_is_handled() {
    for seed in SEEDS {
        for (i, _) in seed.char_indices() {
            exercise(&seed[..i]);
            exercise(&seed[i..]);
        }
    }
}

#[test]
fn pathological_inputs_are_rejected_quickly() {
    let big = 15 * 1024;
    let cases = [
        format!("FROM /* WHERE {}a{} INTO $upstream", "(".repeat(big / 2), ")".repeat(big / 2)),
        format!("FROM /* WHERE {}a INTO $upstream", "NOT ".repeat(big / 4)),
        format!("FROM /* WHERE {}1 INTO $upstream", "-".repeat(big)),
        format!("FROM /* WHERE a{} INTO $upstream", " + a".repeat(big / 4)),
        format!("FROM /* WHERE {}1 INTO $upstream", "abs(".repeat(big / 4)),
        format!("FROM /* WHERE a = '{}", "\\".repeat(big)),
        format!("FROM /* WHERE {} INTO $upstream", "/*".repeat(big / 2)),
        format!("FROM {} INTO $upstream", "/a".repeat(big / 2)),
        "FROM /* WHERE ".to_string() + &"{$".repeat(big / 2),
        "x".repeat(1 << 20),
    ];
    for text in &cases {
        let start = std::time::Instant::now();
        exercise(text);
        assert!(start.elapsed().as_secs() < 5, "too slow on input starting {:?}", &text[..40]);
    }
}

#[test]
fn deep_but_legal_conditions_evaluate() {
    // Right at the limits the evaluator's recursion must still be fine.
    let nested = format!("{}a = 'x\\'y'{}", "(".repeat(super::MAX_NESTING - 1), ")".repeat(super::MAX_NESTING - 1));
    let route = Route::parse("r", &format!("FROM /* WHERE {nested} INTO $upstream"), None, None).unwrap();
    assert!(route.matches(&MessageSource::Device, &test_message()));
    let chain = vec!["b = '2'"; super::MAX_TREE_DEPTH / 2].join(" AND ");
    let route = Route::parse("r", &format!("FROM /* WHERE {chain} INTO $upstream"), None, None).unwrap();
    assert!(route.matches(&MessageSource::Device, &test_message()));
}

#[test]
fn hostile_bodies_do_not_break_body_queries() {
    let route = Route::parse("r", "FROM /* WHERE $body.a.b[0] > 1 INTO $upstream", None, None).unwrap();
    let bodies: Vec<Vec<u8>> = vec![
        "[".repeat(100_000).into_bytes(),
        r#"{"a":"#.repeat(10_000).into_bytes(),
        vec![0xFF; 1000],
        Vec::new(),
        b"null".to_vec(),
    ];
    for body in bodies {
        for ce in ["utf-8", "utf-16", "utf-32"] {
            let msg = Message::new(body.clone()).with_content_type("application/json").with_content_encoding(ce);
            assert!(!route.matches(&MessageSource::Device, &msg));
        }
    }
}
