//! A chat completion answer read in one pass of the structural scan (`gateway::scan`):
//! choice 0's message, finish reason and usage, what a translation writes back.

use std::borrow::Cow;

use crate::gateway::{UpstreamUsage, scan};

/// A chat completion answer, as the translations read it: choice 0's message and finish
/// reason, its text borrowed from the answer unless it holds an escape, and its usage.
pub(crate) struct ChatAnswer<'a> {
    /// Choice 0: the translations ask for one answer, and answer with one.
    pub choice: Option<ChatChoice<'a>>,
    usage: Option<UpstreamUsage>,
}

impl<'a> ChatAnswer<'a> {
    /// Reads a chat completion answer in one pass of the structural scan (`scan`), building
    /// only what a translation writes back; the rest (ids, other choices, log
    /// probabilities) is skipped, not parsed. Callgrind on the bench's 245-byte answer:
    /// 3.1 k instructions, where serde's typed parse of the same types took 6.5 k.
    ///
    /// It reads what that typed parse read (the property test in `answers_read_by_the_scan`
    /// holds it to it): a member read here given twice, a string member that is neither a
    /// string nor `null`, a list or object that is not one, a tool call without its
    /// function's name — not an answer (`None`). An answer whose usage does not read is
    /// still an answer (its counts are then estimated). Unlike serde, a list where an
    /// object belongs is refused (serde reads a struct from a list), and values skipped are
    /// checked for structure only (`scan`). Its text is checked to be UTF-8 once.
    pub(crate) fn parse(json: &'a [u8]) -> Option<Self> {
        let doc = std::str::from_utf8(json).ok()?;
        let s = doc.as_bytes();
        let (mut choices, mut usage) = (Once::default(), Once::default());
        let mut answer = Self {
            choice: None,
            usage: None,
        };
        let close = scan::object(s, 0, |key, at| match &*key.name() {
            b"choices" => {
                choices.first()?;
                // Choice 0 is read; the rest are skipped.
                scan::array(s, at, |at| match answer.choice {
                    Some(_) => scan::skip(s, at),
                    None => read_choice(doc, at).map(|(choice, end)| {
                        answer.choice = Some(choice);
                        end
                    }),
                })
            }
            b"usage" => {
                let end = scan::skip(s, at)?;
                // A usage given twice reads as none, like one that does not parse.
                answer.usage = usage
                    .first()
                    .and_then(|()| UpstreamUsage::read(s.get(at..end)?));
                Some(end)
            }
            _ => scan::skip(s, at),
        })?;
        scan::only_space_from(s, close).then_some(answer)
    }

    /// The usage the upstream reported, when it reported one that reads.
    pub(crate) fn usage(&self) -> Option<UpstreamUsage> {
        self.usage
    }
}

/// A member that may be given once: its second appearance is `None`.
#[derive(Default)]
struct Once(bool);

impl Once {
    fn first(&mut self) -> Option<()> {
        (!std::mem::replace(&mut self.0, true)).then_some(())
    }

    /// A string member's value (`null` is none) into `into`, the first time; where it ends.
    fn text<'a>(
        &mut self,
        doc: &'a str,
        at: usize,
        into: &mut Option<Cow<'a, str>>,
    ) -> Option<usize> {
        self.first()?;
        let (text, end) = text_at(doc, at)?;
        *into = text;
        Some(end)
    }

    /// A string member's value (not `null`) into `into`, the first time; where it ends.
    fn string<'a>(&mut self, doc: &'a str, at: usize, into: &mut Cow<'a, str>) -> Option<usize> {
        self.first()?;
        let (text, end) = scan::string_at(doc, at)?;
        *into = text;
        Some(end)
    }
}

/// A string member's value (`null` is none), and where it ends; `None` when it is neither.
fn text_at(doc: &str, at: usize) -> Option<(Option<Cow<'_, str>>, usize)> {
    if scan::null_at(doc.as_bytes(), at) {
        return Some((None, at + 4));
    }
    let (text, end) = scan::string_at(doc, at)?;
    Some((Some(text), end))
}

/// An answer's choice: its message and finish reason, and where it ends.
fn read_choice(doc: &str, at: usize) -> Option<(ChatChoice<'_>, usize)> {
    let s = doc.as_bytes();
    let (mut message, mut finish) = (Once::default(), Once::default());
    let mut choice = ChatChoice {
        message: ChatMessage::default(),
        finish_reason: None,
    };
    let end = scan::object(s, at, |key, at| match &*key.name() {
        b"message" => {
            message.first()?;
            let (read, end) = read_message(doc, at)?;
            choice.message = read;
            Some(end)
        }
        b"finish_reason" => finish.text(doc, at, &mut choice.finish_reason),
        _ => scan::skip(s, at),
    })?;
    Some((choice, end))
}

/// A choice's message: its content, reasoning (`reasoning_content` as vLLM, SGLang and
/// llama.cpp name it, or `reasoning`: one of the two) and tool calls.
fn read_message(doc: &str, at: usize) -> Option<(ChatMessage<'_>, usize)> {
    let s = doc.as_bytes();
    let (mut content, mut reasoning, mut calls) =
        (Once::default(), Once::default(), Once::default());
    let mut message = ChatMessage::default();
    let end = scan::object(s, at, |key, at| match &*key.name() {
        b"content" => content.text(doc, at, &mut message.content),
        b"reasoning_content" | b"reasoning" => {
            reasoning.text(doc, at, &mut message.reasoning_content)
        }
        b"tool_calls" => {
            calls.first()?;
            scan::array(s, at, |at| {
                let (call, end) = read_call(doc, at)?;
                message.tool_calls.push(call);
                Some(end)
            })
        }
        _ => scan::skip(s, at),
    })?;
    Some((message, end))
}

/// One tool call: its id (empty when not given) and its function's name and arguments
/// (empty when not given).
fn read_call(doc: &str, at: usize) -> Option<(ChatToolCall<'_>, usize)> {
    let s = doc.as_bytes();
    let (mut id, mut function) = (Once::default(), None);
    let mut call_id = Cow::Borrowed("");
    let end = scan::object(s, at, |key, at| match &*key.name() {
        b"id" => id.string(doc, at, &mut call_id),
        b"function" => {
            if function.is_some() {
                return None;
            }
            let (read, end) = read_function(doc, at)?;
            function = Some(read);
            Some(end)
        }
        _ => scan::skip(s, at),
    })?;
    let call = ChatToolCall {
        id: call_id,
        function: function?,
    };
    Some((call, end))
}

/// A tool call's function: its name (required) and arguments.
fn read_function(doc: &str, at: usize) -> Option<(ChatFunction<'_>, usize)> {
    let s = doc.as_bytes();
    let (mut name, mut arguments) = (Once::default(), Once::default());
    let mut function = ChatFunction {
        name: Cow::Borrowed(""),
        arguments: Cow::Borrowed(""),
    };
    let end = scan::object(s, at, |key, at| match &*key.name() {
        b"name" => name.string(doc, at, &mut function.name),
        b"arguments" => arguments.string(doc, at, &mut function.arguments),
        _ => scan::skip(s, at),
    })?;
    name.0.then_some((function, end))
}

pub(crate) struct ChatChoice<'a> {
    pub message: ChatMessage<'a>,
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Default)]
pub(crate) struct ChatMessage<'a> {
    pub content: Option<Cow<'a, str>>,
    pub reasoning_content: Option<Cow<'a, str>>,
    pub tool_calls: Vec<ChatToolCall<'a>>,
}

impl ChatMessage<'_> {
    /// Its reasoning and its text, each only when not empty: what an answer in the
    /// client's format writes a block for.
    pub(crate) fn reasoning_and_text(&self) -> (Option<&str>, Option<&str>) {
        fn nonempty(t: Option<&str>) -> Option<&str> {
            t.filter(|t| !t.is_empty())
        }
        (
            nonempty(self.reasoning_content.as_deref()),
            nonempty(self.content.as_deref()),
        )
    }
}

pub(crate) struct ChatToolCall<'a> {
    pub id: Cow<'a, str>,
    pub function: ChatFunction<'a>,
}

pub(crate) struct ChatFunction<'a> {
    pub name: Cow<'a, str>,
    pub arguments: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answers_strings_are_borrowed_unless_escaped() {
        let json = br#"{"id":"x","choices":[{"message":{"content":"plain","reasoning":"why \"so\""},"finish_reason":"stop"}]}"#;
        let answer = ChatAnswer::parse(json).expect("an answer");
        let choice = answer.choice.as_ref().expect("choice 0");
        assert!(matches!(
            choice.message.content,
            Some(Cow::Borrowed("plain"))
        ));
        assert!(matches!(choice.finish_reason, Some(Cow::Borrowed("stop"))));
        assert_eq!(
            choice.message.reasoning_content.as_deref(),
            Some("why \"so\"")
        );
        let counted = ChatAnswer::parse(
            br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"extra":[1]}}"#,
        )
        .and_then(|a| a.usage())
        .expect("usage");
        assert_eq!(
            (counted.prompt_tokens, counted.completion_tokens),
            (Some(5), Some(7))
        );
        // A usage that does not read leaves the answer an answer, its counts to estimate.
        for usage in [
            r#""lots""#,
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":1.5}"#,
            "null",
        ] {
            let json =
                format!(r#"{{"choices":[{{"message":{{"content":"hi"}}}}],"usage":{usage}}}"#);
            let answer = ChatAnswer::parse(json.as_bytes()).expect("still an answer");
            assert!(answer.usage().is_none(), "{usage}");
            let choice = answer.choice.expect("choice 0");
            assert_eq!(choice.message.content.as_deref(), Some("hi"));
        }
        let none =
            ChatAnswer::parse(br#"{"choices":[{"message":{"content":null}}]}"#).expect("an answer");
        assert!(none.choice.expect("choice 0").message.content.is_none());
        // Choice 0 is read; the others are skipped, whatever they hold.
        let two = ChatAnswer::parse(
            br#"{"choices":[{"message":{"content":"a"}},{"message":7},[]],"usage":{"prompt_tokens":2}}"#,
        )
        .expect("an answer");
        assert_eq!(two.usage().and_then(|u| u.prompt_tokens), Some(2));
        assert_eq!(
            two.choice.expect("choice 0").message.content.as_deref(),
            Some("a")
        );
        let empty = ChatAnswer::parse(br#"{"choices":[]}"#).expect("an answer");
        assert!(empty.choice.is_none());
        assert!(ChatAnswer::parse(br#"{"choices":{}}"#).is_none());
    }
}

#[cfg(test)]
mod answers_read_by_the_scan {
    //! `ChatAnswer::parse` reads what serde's typed parse of the same types read (the
    //! reader it replaced, kept here as the oracle), on generated answers with members
    //! given twice, escaped keys, `null`s and values of the wrong type.

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;
    use crate::gateway::wire::borrowed;

    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, default, rename = "choices", deserialize_with = "first")]
        choice: Option<TypedChoice<'a>>,
        #[serde(default)]
        usage: Option<UpstreamUsage>,
    }

    #[derive(Deserialize)]
    struct TypedNoUsage<'a> {
        #[serde(borrow, default, rename = "choices", deserialize_with = "first")]
        choice: Option<TypedChoice<'a>>,
    }

    #[derive(Deserialize)]
    struct TypedChoice<'a> {
        #[serde(borrow, default)]
        message: TypedMessage<'a>,
        #[serde(borrow, default, deserialize_with = "borrowed")]
        finish_reason: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize, Default)]
    struct TypedMessage<'a> {
        #[serde(borrow, default, deserialize_with = "borrowed")]
        content: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "borrowed", alias = "reasoning")]
        reasoning_content: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        tool_calls: Vec<TypedCall<'a>>,
    }

    #[derive(Deserialize)]
    struct TypedCall<'a> {
        #[serde(borrow, default)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        function: TypedFunction<'a>,
    }

    #[derive(Deserialize)]
    struct TypedFunction<'a> {
        #[serde(borrow)]
        name: Cow<'a, str>,
        #[serde(borrow, default)]
        arguments: Cow<'a, str>,
    }

    /// The first element of a list typed, the rest skipped.
    fn first<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: serde::Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct First<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for First<T> {
            type Value = Option<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Option<T>, A::Error> {
                let first = seq.next_element()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(first)
            }
        }
        d.deserialize_seq(First(std::marker::PhantomData))
    }

    type Call = (String, String, String);
    type Choice = (Option<String>, Option<String>, Option<String>, Vec<Call>);
    type View = (Option<Choice>, Option<(Option<u64>, Option<u64>)>);

    /// What a translation takes from an answer, owned, to compare.
    fn view(choice: Option<ChatChoice<'_>>, usage: Option<UpstreamUsage>) -> View {
        let choice = choice.map(|c| {
            let calls = c.message.tool_calls.into_iter().map(|t| {
                let function = t.function;
                (t.id.into(), function.name.into(), function.arguments.into())
            });
            (
                c.message.content.map(String::from),
                c.message.reasoning_content.map(String::from),
                c.finish_reason.map(String::from),
                calls.collect(),
            )
        });
        (
            choice,
            usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        )
    }

    fn typed_view(json: &str) -> Option<View> {
        let (choice, usage) = match serde_json::from_str::<Typed<'_>>(json) {
            Ok(t) => (t.choice, t.usage),
            Err(_) => (
                serde_json::from_str::<TypedNoUsage<'_>>(json).ok()?.choice,
                None,
            ),
        };
        let choice = choice.map(|c| ChatChoice {
            message: ChatMessage {
                content: c.message.content,
                reasoning_content: c.message.reasoning_content,
                tool_calls: c
                    .message
                    .tool_calls
                    .into_iter()
                    .map(|t| ChatToolCall {
                        id: t.id,
                        function: ChatFunction {
                            name: t.function.name,
                            arguments: t.function.arguments,
                        },
                    })
                    .collect(),
            },
            finish_reason: c.finish_reason,
        });
        Some(view(choice, usage))
    }

    fn scanned_view(json: &str) -> Option<View> {
        let answer = ChatAnswer::parse(json.as_bytes())?;
        let usage = answer.usage();
        Some(view(answer.choice, usage))
    }

    /// An object of the members given, in order, duplicates kept.
    fn object(members: Vec<(&'static str, String)>) -> String {
        let members: Vec<String> = members
            .into_iter()
            .map(|(key, value)| format!("\"{key}\":{value}"))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    fn list(elements: Vec<String>) -> String {
        format!("[{}]", elements.join(","))
    }

    /// Strings, plain and escaped, as JSON.
    fn text() -> impl Strategy<Value = String> {
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
    fn not_object() -> impl Strategy<Value = String> {
        prop_oneof![Just("null"), Just("7"), Just("true"), Just(r#""s""#)].prop_map(String::from)
    }

    fn wrong() -> impl Strategy<Value = String> {
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

    fn text_or_wrong() -> impl Strategy<Value = String> {
        prop_oneof![12 => text(), 1 => wrong()]
    }

    fn or_not_object(object: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        prop_oneof![12 => object, 1 => not_object()]
    }

    /// A member, present or not.
    type Member = BoxedStrategy<Option<(&'static str, String)>>;

    /// A member present three times in four.
    fn member(key: &'static str, value: impl Strategy<Value = String> + 'static) -> Member {
        prop::option::weighted(0.75, value.prop_map(move |v| (key, v))).boxed()
    }

    /// A member present one time in ten.
    fn rare(key: &'static str, value: impl Strategy<Value = String> + 'static) -> Member {
        prop::option::weighted(0.1, value.prop_map(move |v| (key, v))).boxed()
    }

    /// An object of the members present, in some order, now and then one given twice.
    fn members(each: Vec<Member>) -> impl Strategy<Value = String> {
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

    fn function() -> impl Strategy<Value = String> {
        members(vec![
            member("name", text_or_wrong()),
            member("arguments", text_or_wrong()),
            member("x", wrong()),
        ])
    }

    fn call() -> impl Strategy<Value = String> {
        members(vec![
            member("id", text_or_wrong()),
            member("function", or_not_object(function())),
            member("type", text()),
        ])
    }

    fn message() -> impl Strategy<Value = String> {
        let calls = prop_oneof![
            8 => prop::collection::vec(or_not_object(call()), 0..3).prop_map(list),
            1 => wrong(),
        ];
        members(vec![
            member("content", text_or_wrong()),
            rare(r"cont\u0065nt", text()),
            rare("reasoning", text_or_wrong()),
            member("reasoning_content", text_or_wrong()),
            member("tool_calls", calls),
            member("role", text()),
        ])
    }

    fn choice() -> impl Strategy<Value = String> {
        members(vec![
            member("message", or_not_object(message())),
            member("finish_reason", text_or_wrong()),
            member("index", Just("0".to_owned())),
            member("logprobs", wrong()),
        ])
    }

    fn usage() -> impl Strategy<Value = String> {
        let count = || {
            prop_oneof![Just("5"), Just("0"), Just("-1"), Just("1.5"), Just("null")]
                .prop_map(String::from)
        };
        prop_oneof![
            8 => members(vec![
                member("prompt_tokens", count()),
                member("completion_tokens", count()),
                member("input_tokens", count()),
                member("total_tokens", wrong()),
            ]),
            1 => wrong(),
        ]
    }

    fn answer() -> impl Strategy<Value = String> {
        let choices = prop_oneof![
            10 => prop::collection::vec(or_not_object(choice()), 0..3).prop_map(list),
            1 => wrong(),
        ];
        let doc = members(vec![
            member("choices", choices),
            member("usage", usage()),
            rare(r"us\u0061ge", usage()),
            member("id", text()),
            member("object", wrong()),
        ]);
        let after = prop_oneof![12 => Just(""), 1 => Just(" \n"), 1 => Just(" x"), 1 => Just("}")];
        (doc, after).prop_map(|(doc, after)| doc + after)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn the_scan_reads_an_answer_as_the_typed_parse_did(json in answer()) {
            prop_assert_eq!(scanned_view(&json), typed_view(&json), "{}", json);
        }
    }

    #[test]
    fn the_generated_answers_include_ones_that_read() {
        let json = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
        let view = scanned_view(json).expect("an answer");
        assert_eq!(view, typed_view(json).expect("an answer"));
        let calls = vec![("c".to_owned(), "f".to_owned(), "{}".to_owned())];
        let choice = (
            Some("hi".to_owned()),
            None,
            Some("tool_calls".to_owned()),
            calls,
        );
        assert_eq!(view, (Some(choice), Some((Some(5), Some(2)))));
    }
}
