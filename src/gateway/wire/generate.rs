//! Generators of JSON documents for the wire formats' property tests: members present or
//! not, given twice now and then, in any order; strings plain and escaped; values of the
//! wrong type.

use proptest::prelude::*;

pub(crate) fn object(members: Vec<(&'static str, String)>) -> String {
    let members: Vec<String> = members
        .into_iter()
        .map(|(key, value)| format!("\"{key}\":{value}"))
        .collect();
    format!("{{{}}}", members.join(","))
}

pub(crate) fn list(elements: Vec<String>) -> String {
    format!("[{}]", elements.join(","))
}

/// Strings, plain and escaped, as JSON.
pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""plain""#),
        Just(r#""""#),
        Just(r#""h\u00e9 \"q\" \\ \n""#),
        Just("\"caf\u{e9} ]}\""),
    ]
    .prop_map(String::from)
}

/// Values where an object or a string belongs that are neither (no list: serde reads a
/// struct from a list, the scan does not, and no upstream writes one).
pub(crate) fn not_object() -> impl Strategy<Value = String> {
    prop_oneof![Just("null"), Just("7"), Just("true"), Just(r#""s""#)].prop_map(String::from)
}

pub(crate) fn wrong() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null"),
        Just("-1"),
        Just("false"),
        Just("{}"),
        Just("[]"),
        Just(r#"[1,{"a":"]"}]"#),
    ]
    .prop_map(String::from)
}

pub(crate) fn text_or_wrong() -> impl Strategy<Value = String> {
    prop_oneof![12 => text(), 1 => wrong()]
}

pub(crate) fn or_not_object(
    object: impl Strategy<Value = String>,
) -> impl Strategy<Value = String> {
    prop_oneof![12 => object, 1 => not_object()]
}

/// A member, present or not.
pub(crate) type Member = BoxedStrategy<Option<(&'static str, String)>>;

/// A member present three times in four.
pub(crate) fn member(key: &'static str, value: impl Strategy<Value = String> + 'static) -> Member {
    prop::option::weighted(0.75, value.prop_map(move |v| (key, v))).boxed()
}

/// A member present one time in ten.
pub(crate) fn rare(key: &'static str, value: impl Strategy<Value = String> + 'static) -> Member {
    prop::option::weighted(0.1, value.prop_map(move |v| (key, v))).boxed()
}

/// An object of the members present, in some order, now and then one given twice.
pub(crate) fn members(each: Vec<Member>) -> impl Strategy<Value = String> {
    let twice = prop::option::weighted(0.08, any::<prop::sample::Index>());
    (each, twice, any::<prop::sample::Index>()).prop_map(|(present, twice, turn)| {
        let mut members: Vec<_> = present.into_iter().flatten().collect();
        if let (Some(i), false) = (twice, members.is_empty()) {
            let again = members[i.index(members.len())].clone();
            members.push(again);
        }
        if !members.is_empty() {
            let by = turn.index(members.len());
            members.rotate_left(by);
        }
        object(members)
    })
}
