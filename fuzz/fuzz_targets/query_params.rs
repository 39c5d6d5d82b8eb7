//! Query parameters of the management API (dates, ranges, buckets, paging) and the date
//! parser on its own: any input is answered or refused with a field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ms) = instagen::time::parse_rfc3339(text) {
        let again = instagen::time::parse_rfc3339(&instagen::time::format_rfc3339(ms));
        assert!(again.is_ok() || ms < 0, "a parsed instant formats back to a parseable one");
    }
    if let Err(e) = instagen::api::manage::check_query_string(text) {
        assert!(e.status.is_client_error(), "{}", e.status);
        assert!(e.field.is_some(), "every refusal names its field");
    }
});
