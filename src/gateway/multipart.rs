//! `multipart/form-data` uploads (audio transcriptions), parsed and rebuilt in memory.
//!
//! The parts borrow the request body: an uploaded file is never copied to a temporary
//! file, and is copied once in memory only into the body sent upstream. Error messages
//! name fields, never values or file contents.

use std::borrow::Cow;

use bytes::Bytes;

use super::BodyError;

/// One part of a form.
pub struct Part<'a> {
    pub name: Cow<'a, str>,
    pub filename: Option<Cow<'a, str>>,
    pub content_type: Option<&'a str>,
    pub data: &'a [u8],
}

/// A parsed form: its parts, in order, borrowing the body.
pub struct Form<'a> {
    pub parts: Vec<Part<'a>>,
}

fn bad(message: impl Into<String>) -> BodyError {
    BodyError {
        message: message.into(),
        param: None,
    }
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<&str> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        match haystack[i..=haystack.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => return None,
            Some(p) => {
                i += p;
                if haystack[i..].starts_with(needle) {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// A `Content-Disposition` parameter (`name="…"`), unquoted.
fn disposition_param<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Parses a `multipart/form-data` body.
pub fn parse<'a>(content_type: Option<&str>, body: &'a [u8]) -> Result<Form<'a>, BodyError> {
    let boundary = content_type.and_then(boundary).ok_or_else(|| {
        bad("the request must be multipart/form-data with a boundary (send the file as a form upload)")
    })?;
    let delimiter = format!("--{boundary}");
    let mut rest = match find(body, delimiter.as_bytes()) {
        Some(i) => &body[i + delimiter.len()..],
        None => return Err(bad("the multipart body has no parts")),
    };
    let next_delimiter = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("the multipart body is malformed"))?;
        let head_end =
            find(rest, b"\r\n\r\n").ok_or_else(|| bad("a multipart part has no headers"))?;
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| bad("multipart part headers must be UTF-8"))?;
        let after = &rest[head_end + 4..];
        let end = find(after, next_delimiter.as_bytes())
            .ok_or_else(|| bad("the multipart body is truncated"))?;
        let (mut name, mut filename, mut content_type) = (None, None, None);
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(v, "name");
                filename = disposition_param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim());
            }
        }
        let name = name.ok_or_else(|| bad("a multipart part has no name"))?;
        parts.push(Part {
            name: Cow::Borrowed(name),
            filename: filename.map(Cow::Borrowed),
            content_type,
            data: &after[..end],
        });
        if parts.len() > 64 {
            return Err(bad("too many multipart parts (at most 64)"));
        }
        rest = &after[end + next_delimiter.len()..];
    }
    Ok(Form { parts })
}

impl<'a> Form<'a> {
    /// A text field's value.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        self.parts
            .iter()
            .rev()
            .find(|p| p.name == name && p.filename.is_none())
            .and_then(|p| std::str::from_utf8(p.data).ok())
    }

    /// The uploaded file, if any.
    pub fn file(&self) -> Option<&Part<'a>> {
        self.parts.iter().find(|p| p.name == "file")
    }

    /// The form for the upstream under a fresh boundary: `model` replaced, and for a third
    /// party only the fields in `allow`. Returns the body and its content type.
    pub fn rewrite(&self, upstream_model: &str, allow: Option<&[&str]>) -> (Bytes, String) {
        let boundary = format!("instagen-{:016x}", rand_u64());
        let size: usize = self.parts.iter().map(|p| p.data.len() + 160).sum();
        let mut out = Vec::with_capacity(size + upstream_model.len() + 200);
        let mut part = |name: &str, filename: Option<&str>, ctype: Option<&str>, data: &[u8]| {
            out.extend_from_slice(b"--");
            out.extend_from_slice(boundary.as_bytes());
            out.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
            out.extend_from_slice(name.replace('"', "%22").as_bytes());
            out.push(b'"');
            if let Some(f) = filename {
                out.extend_from_slice(b"; filename=\"");
                out.extend_from_slice(f.replace(['"', '\r', '\n'], "_").as_bytes());
                out.push(b'"');
            }
            if let Some(c) = ctype {
                out.extend_from_slice(b"\r\nContent-Type: ");
                out.extend_from_slice(c.as_bytes());
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        };
        part("model", None, None, upstream_model.as_bytes());
        for p in &self.parts {
            if p.name == "model" || allow.is_some_and(|a| !a.contains(&p.name.as_ref())) {
                continue;
            }
            // A third party gets no file name (it may say who the user is).
            let filename = match (&p.filename, allow) {
                (Some(_), Some(_)) => Some("audio"),
                (Some(f), None) => Some(f.as_ref()),
                (None, _) => None,
            };
            part(&p.name, filename, p.content_type, p.data);
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
        (
            Bytes::from(out),
            format!("multipart/form-data; boundary={boundary}"),
        )
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn body() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n",
        );
        b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"alice.wav\"\r\nContent-Type: audio/wav\r\n\r\n");
        b.extend_from_slice(&[0, 1, 2, b'\r', b'\n', b'-', b'-', 3]);
        b.extend_from_slice(b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n--XyZ--\r\n");
        b
    }

    #[test]
    fn forms_parse_with_binary_files_and_rebuild_minimised() {
        let body = body();
        let form = parse(Some(CT), &body).unwrap();
        assert_eq!(form.text("model"), Some("whisper"));
        let file = form.file().unwrap();
        assert_eq!(file.data, &[0, 1, 2, b'\r', b'\n', b'-', b'-', 3]);
        assert_eq!(file.content_type, Some("audio/wav"));

        let (out, ct) = form.rewrite("up-model", Some(&["file", "language"]));
        let again = parse(Some(&ct), &out).unwrap();
        assert_eq!(again.text("model"), Some("up-model"));
        assert_eq!(again.file().unwrap().data, file.data);
        assert_eq!(
            again.file().unwrap().filename.as_deref(),
            Some("audio"),
            "no user's file name"
        );
        assert!(again.text("user").is_none(), "dropped for a third party");

        let (out, ct) = form.rewrite("up-model", None);
        let again = parse(Some(&ct), &out).unwrap();
        assert_eq!(again.text("user"), Some("alice"));
    }

    #[test]
    fn malformed_forms_are_refused() {
        assert!(parse(Some("application/json"), b"{}").is_err());
        assert!(parse(Some(CT), b"no parts").is_err());
        assert!(
            parse(
                Some(CT),
                b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ntruncated"
            )
            .is_err()
        );
    }
}
