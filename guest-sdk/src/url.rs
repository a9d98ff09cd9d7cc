//! The small amount of URL handling a handler needs: splitting an absolute URL for an outgoing
//! request, and reading query parameters.

use crate::{Error, Result};

/// `https://example.com:8443/a/b?x=1` split into its request parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlParts {
    pub scheme: String,
    pub authority: String,
    pub path_with_query: String,
}

pub(crate) fn split_url(url: &str) -> Result<UrlParts> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::internal(format!("URL {url:?} has no scheme (https://...)")))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(Error::internal(format!(
            "URL {url:?} has scheme {scheme:?}; only http and https can be fetched"
        )));
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() || authority.contains('@') {
        return Err(Error::internal(format!(
            "URL {url:?} needs a host and cannot carry credentials"
        )));
    }
    let path_with_query = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(UrlParts {
        scheme,
        authority: authority.to_string(),
        path_with_query,
    })
}

/// Iterate `key=value` pairs of a query string, percent-decoded (`+` is a space).
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_absolute_urls() {
        assert_eq!(
            split_url("https://Origin.example.com:8443/a/b?x=1#frag").unwrap(),
            UrlParts {
                scheme: "https".into(),
                authority: "Origin.example.com:8443".into(),
                path_with_query: "/a/b?x=1".into(),
            }
        );
        assert_eq!(
            split_url("http://127.0.0.1:9").unwrap().path_with_query,
            "/"
        );
        assert_eq!(split_url("http://h?q=1").unwrap().path_with_query, "/?q=1");
    }

    #[test]
    fn rejects_what_cannot_be_fetched() {
        assert!(split_url("example.com/x").is_err());
        assert!(split_url("ftp://example.com/").is_err());
        assert!(split_url("https:///path").is_err());
        assert!(split_url("https://user:pw@example.com/").is_err());
    }

    #[test]
    fn decodes_query_pairs() {
        let pairs: Vec<_> = query_pairs("a=1&name=J%C3%BCrgen+K&flag&&bad=%zz%4").collect();
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "1".into()),
                ("name".into(), "Jürgen K".into()),
                ("flag".into(), String::new()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
    }
}
