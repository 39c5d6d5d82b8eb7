//! Multipart uploads: parsing never panics, and a rebuilt form parses back to the same file.
#![no_main]

use instagen::gateway::multipart::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(form) = parse(Some("multipart/form-data; boundary=XyZ"), data) else {
        return;
    };
    let (body, content_type) = form.rewrite("m", None);
    let again = parse(Some(&content_type), &body).expect("a rebuilt form parses");
    assert_eq!(again.text("model"), Some("m"));
    assert_eq!(
        again.file().map(|f| f.data),
        form.file().map(|f| f.data),
        "the file survives"
    );
});
