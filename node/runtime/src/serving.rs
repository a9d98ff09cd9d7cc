//! What a component's build says about how it may be served. A JavaScript component built for
//! a fresh instance per request answers through StarlingMonkey's fetch event, which serves one
//! request per instance (a second call on a reused instance never answers). `outpost build`
//! marks such components with a custom section, and an app that asks to reuse instances is
//! refused with that component, at upload and at deploy, instead of hanging at its second
//! request.

use wasmparser::{Parser, Payload};

/// The custom section `outpost build` adds to a component that serves one request per instance.
pub(crate) const ONE_REQUEST_SECTION: &str = "outpost:one-request-per-instance";

/// `wasm` with the one-request-per-instance mark appended (a custom section at the end of the
/// outermost component).
pub fn mark_one_request_per_instance(wasm: &mut Vec<u8>) {
    let name = ONE_REQUEST_SECTION.as_bytes();
    let mut payload = leb128(name.len() as u64);
    payload.extend_from_slice(name);
    wasm.push(0); // a custom section
    wasm.extend(leb128(payload.len() as u64));
    wasm.extend(payload);
}

/// Whether the outermost component carries the one-request-per-instance mark.
pub(crate) fn serves_one_request_per_instance(wasm: &[u8]) -> bool {
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::CustomSection(section)) if depth == 0 => {
                if section.name() == ONE_REQUEST_SECTION {
                    return true;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Refuse reuse for a component that cannot serve it.
pub fn check_reuse(wasm: &[u8], reuse: bool) -> Result<(), String> {
    if reuse && serves_one_request_per_instance(wasm) {
        return Err(
            "the app asks for [instance] reuse but this component was built to serve one request \
             per instance (StarlingMonkey's fetch event); rebuild it with `outpost build` now that \
             outpost.toml has reuse = true"
                .into(),
        );
    }
    Ok(())
}

fn leb128(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_found_at_the_top_level_only() {
        let plain = wat::parse_str(
            "(component (core module (@custom \"outpost:one-request-per-instance\" \"\")))",
        )
        .unwrap();
        assert!(
            !serves_one_request_per_instance(&plain),
            "a nested module's section is not the mark"
        );
        assert!(check_reuse(&plain, true).is_ok());
        let mut marked = plain.clone();
        mark_one_request_per_instance(&mut marked);
        assert!(serves_one_request_per_instance(&marked));
        assert!(check_reuse(&marked, false).is_ok());
        let err = check_reuse(&marked, true).unwrap_err();
        assert!(err.contains("rebuild it with `outpost build`"), "{err}");
        // Still a valid component.
        wasmparser::Validator::new().validate_all(&marked).unwrap();
    }
}
