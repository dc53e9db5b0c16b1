//! Picks apart park-info documents with plain string search (the tests
//! should not trust sipark's writer to check sipark's writer).

/// One `<call>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub id: String,
    pub state: String,
    pub reason: Option<String>,
    pub parked_at: Option<String>,
    pub timeout: Option<String>,
    pub parked_uri: Option<String>,
    pub parked_display: Option<String>,
    pub parker_uri: Option<String>,
    pub parker_display: Option<String>,
    pub retrieve_uri: Option<String>,
}

/// A whole park-info document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkInfo {
    pub version: u64,
    pub extension: String,
    pub domain: String,
    pub calls: Vec<CallInfo>,
}

impl ParkInfo {
    /// Calls with `state="parked"`.
    pub fn parked(&self) -> Vec<&CallInfo> {
        self.calls.iter().filter(|c| c.state == "parked").collect()
    }

    /// Calls with `state="terminated"`.
    pub fn terminated(&self) -> Vec<&CallInfo> {
        self.calls.iter().filter(|c| c.state == "terminated").collect()
    }

    /// The call with this id.
    pub fn call(&self, id: &str) -> Option<&CallInfo> {
        self.calls.iter().find(|c| c.id == id)
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The text of the first `<name ...>` start tag in `s` (attributes only).
fn start_tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name} ");
    let i = s.find(&open)? + open.len();
    let end = s[i..].find('>')? + i;
    Some(&s[i..end])
}

/// The value of attribute `name` in a start tag's text.
pub fn attr(tag: &str, name: &str) -> Option<String> {
    let mut from = 0;
    let needle = format!("{name}=\"");
    while let Some(off) = tag[from..].find(&needle) {
        let i = from + off;
        // Must start an attribute name (not be the tail of a longer one).
        if i == 0 || tag.as_bytes()[i - 1].is_ascii_whitespace() {
            let v = i + needle.len();
            let end = tag[v..].find('"')? + v;
            return Some(unescape(&tag[v..end]));
        }
        from = i + needle.len();
    }
    None
}

/// Parses a park-info body; `None` if it is not one.
pub fn parse(body: &str) -> Option<ParkInfo> {
    let root = start_tag(body, "park-info")?;
    let version = attr(root, "version")?.parse().ok()?;
    let extension = attr(root, "extension")?;
    let domain = attr(root, "domain")?;
    let mut calls = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<call ") {
        let after = &rest[i..];
        let end = after.find("</call>").map_or(after.len(), |e| e + "</call>".len());
        let el = &after[..end];
        let tag = start_tag(el, "call")?;
        let parked = start_tag(el, "parked");
        let parker = start_tag(el, "parker");
        let retrieve = start_tag(el, "retrieve");
        calls.push(CallInfo {
            id: attr(tag, "id")?,
            state: attr(tag, "state")?,
            reason: attr(tag, "reason"),
            parked_at: attr(tag, "parked-at"),
            timeout: attr(tag, "timeout"),
            parked_uri: parked.and_then(|t| attr(t, "uri")),
            parked_display: parked.and_then(|t| attr(t, "display")),
            parker_uri: parker.and_then(|t| attr(t, "uri")),
            parker_display: parker.and_then(|t| attr(t, "display")),
            retrieve_uri: retrieve.and_then(|t| attr(t, "uri")),
        });
        rest = &after[end..];
    }
    Some(ParkInfo { version, extension, domain, calls })
}
