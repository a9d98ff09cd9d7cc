//! An ordered, case-insensitive header list.

/// Headers that belong to one connection, not to the message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];

/// HTTP header fields. Names are stored lowercase; a name may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name` as text, if present and valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The first value of `name` as raw bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether `name` has at least one value, compared case-insensitively.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Set `name` to `value`, replacing every earlier value.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl Into<Vec<u8>>) {
        let name = name.as_ref();
        self.remove(name);
        self.append(name, value);
    }

    /// Add a value for `name`, keeping earlier ones.
    pub fn append(&mut self, name: impl AsRef<str>, value: impl Into<Vec<u8>>) {
        self.entries
            .push((name.as_ref().to_ascii_lowercase(), value.into()));
    }

    /// Remove every value of `name`; removing a name that is not there does nothing.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Every `(name, value)` pair in order, with lowercase names; a repeated name appears once per
    /// value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The number of values, counting each value of a repeated name.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drop connection-level (hop-by-hop) headers and `host`: they describe one connection and
    /// WASI refuses them in a request or response a handler builds.
    pub fn remove_hop_by_hop(&mut self) {
        self.entries
            .retain(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()));
    }

    pub(crate) fn from_entries(entries: Vec<(String, Vec<u8>)>) -> Self {
        let entries = entries
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        Headers { entries }
    }

    pub(crate) fn into_entries(self) -> Vec<(String, Vec<u8>)> {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_get_insert_append_remove() {
        let mut headers = Headers::new();
        headers.append("X-Tag", "a");
        headers.append("x-tag", "b");
        headers.append("Content-Type", "text/plain");
        assert_eq!(headers.get("x-TAG"), Some("a"));
        assert_eq!(
            headers.get_all("X-Tag").collect::<Vec<_>>(),
            vec![b"a".as_slice(), b"b".as_slice()]
        );
        headers.insert("X-TAG", "c");
        assert_eq!(headers.get_all("x-tag").count(), 1);
        assert_eq!(headers.get("x-tag"), Some("c"));
        headers.remove("content-type");
        assert!(!headers.contains("Content-Type"));
        assert_eq!(headers.len(), 1);
        assert_eq!(headers.iter().next(), Some(("x-tag", b"c".as_slice())));
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = Headers::new();
        headers.append("Connection", "keep-alive");
        headers.append("Transfer-Encoding", "chunked");
        headers.append("Host", "a.test");
        headers.append("X-Kept", "1");
        headers.remove_hop_by_hop();
        assert_eq!(
            headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            vec!["x-kept"]
        );
    }

    #[test]
    fn non_utf8_values_are_bytes_only() {
        let mut headers = Headers::new();
        headers.insert("x-bin", vec![0xff, 0xfe]);
        assert_eq!(headers.get("x-bin"), None);
        assert_eq!(headers.get_bytes("x-bin"), Some([0xff, 0xfe].as_slice()));
    }
}
